//! One TOML file describes a site. Unknown keys are errors; every error names
//! the line, the column and what to change.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The whole configuration of one box.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: Node,
    #[serde(default)]
    pub spool: Spool,
    #[serde(default)]
    pub forward: Forward,
    #[serde(default)]
    pub scanners: Vec<Scanner>,
    #[serde(default)]
    pub destinations: Vec<Destination>,
    #[serde(default)]
    pub triage: Triage,
    #[serde(default)]
    pub results: Results,
    #[serde(default)]
    pub panel: Panel,
    #[serde(default)]
    pub audit: Audit,
    /// Where this configuration came from (for the audit trail).
    #[serde(skip)]
    pub source: ConfigSource,
}

/// The file a configuration was read from and its SHA-256.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub path: String,
    pub sha256: String,
}

/// The audit trail (IHE ATNA style): a local file of RFC 5424 lines, and
/// optionally the hospital's audit repository over TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// `audit.log` in the spool folder when not given.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The file is rotated past this size; `keep_files` rotated ones stay.
    #[serde(default = "default_audit_file_mb")]
    pub max_file_mb: Bounded<1, 1024>,
    #[serde(default = "default_audit_keep")]
    pub keep_files: Bounded<1, 100>,
    /// AuditEnterpriseSiteID: the hospital, as its audit repository knows it.
    #[serde(default)]
    pub enterprise_site_id: Option<String>,
    #[serde(default)]
    pub syslog_tls: Option<AuditSyslog>,
}

/// An audit repository taking syslog over TLS (RFC 5425).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSyslog {
    /// host:port, e.g. "audit.hospital.example:6514".
    pub address: PeerAddress,
    /// PEM certificates of the CAs trusted to sign the repository's certificate.
    pub ca_file: PathBuf,
    /// The name its certificate carries, when not the address's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM certificate chain and key to present, when the repository asks.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

fn default_audit_file_mb() -> Bounded<1, 1024> {
    Bounded(16)
}

fn default_audit_keep() -> Bounded<1, 100> {
    Bounded(8)
}

impl Default for Audit {
    fn default() -> Self {
        Audit {
            enabled: true,
            file: None,
            max_file_mb: default_audit_file_mb(),
            keep_files: default_audit_keep(),
            enterprise_site_id: None,
            syslog_tls: None,
        }
    }
}

impl Audit {
    /// The audit file: the configured one, else `audit.log` in the spool folder.
    pub fn file_in(&self, spool_dir: &Path) -> PathBuf {
        self.file
            .clone()
            .unwrap_or_else(|| crate::audit::default_file(spool_dir))
    }
}

/// The technologist's panel (web page, live feed, /healthz, /metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Loopback by default: the console's browser runs on the box.
    #[serde(default = "default_panel_listen")]
    pub listen: SocketAddr,
    /// Who may log in (`firstlook-provision set-password` writes it);
    /// `panel-users` beside the configuration file when not given.
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    /// A logged-in user who does nothing this long is logged out.
    #[serde(default = "default_idle_logout")]
    pub idle_logout_minutes: Bounded<1, 720>,
    /// PEM certificate chain and private key: the panel speaks HTTPS with
    /// them, and must have them when it listens beyond loopback.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

fn default_idle_logout() -> Bounded<1, 720> {
    Bounded(15)
}

fn default_panel_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8088))
}

impl Default for Panel {
    fn default() -> Self {
        Panel {
            enabled: true,
            listen: default_panel_listen(),
            users_file: None,
            idle_logout_minutes: default_idle_logout(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// What the box writes back about each decision: a DICOM SR, a heatmap
/// image, and the priority of a study with an urgent finding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    #[serde(default)]
    pub mode: ResultsMode,
    /// Root of the UIDs of the instances the box writes (one per box,
    /// from the site's or the vendor's registered root); without it they
    /// are `2.25` UUID-derived UIDs.
    #[serde(default)]
    pub uid_root: Option<UidRoot>,
    /// Serial number reported as the device observer's; the host name
    /// when not given.
    #[serde(default)]
    pub device_serial: Option<String>,
    /// Studies with an urgent finding: their C-STOREs go with DIMSE
    /// priority HIGH, ahead of the queue, the report first.
    #[serde(default = "default_true")]
    pub urgent_priority: bool,
    /// An HL7 v2.5 ORU^R01 per report to a RIS over MLLP.
    #[serde(default)]
    pub hl7: Option<Hl7>,
}

/// The RIS that gets HL7 results.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7 {
    /// `host:port` of the RIS's MLLP listener.
    pub address: PeerAddress,
    #[serde(default = "default_hl7_sender")]
    pub sending_application: String,
    #[serde(default)]
    pub sending_facility: String,
    #[serde(default = "default_hl7_receiver")]
    pub receiving_application: String,
    #[serde(default)]
    pub receiving_facility: String,
    /// Connection and ACK timeout.
    #[serde(default = "default_hl7_timeout")]
    pub timeout_secs: Bounded<1, 600>,
    /// Send every report; by default only those with an urgent finding.
    #[serde(default)]
    pub all_reports: bool,
}

fn default_hl7_sender() -> String {
    "FIRSTLOOK".into()
}
fn default_hl7_receiver() -> String {
    "RIS".into()
}
fn default_hl7_timeout() -> Bounded<1, 600> {
    Bounded(10)
}

impl Default for Results {
    fn default() -> Self {
        Results {
            mode: ResultsMode::Full,
            uid_root: None,
            device_serial: None,
            urgent_priority: true,
            hl7: None,
        }
    }
}

/// Whether results leave the box.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultsMode {
    /// Written to the spool and forwarded to every destination.
    #[default]
    Full,
    /// Written to the spool only; nothing is sent.
    Shadow,
}

impl ResultsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultsMode::Full => "full",
            ResultsMode::Shadow => "shadow",
        }
    }
}

/// A UID root: digits and dots, no empty or zero-led component, short
/// enough that the UIDs made under it fit DICOM's 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UidRoot(String);

impl UidRoot {
    pub const MAX_LEN: usize = 36;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UidRoot {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let valid = !value.is_empty()
            && value.split('.').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| b.is_ascii_digit())
                    && (c == "0" || !c.starts_with('0'))
            });
        if !valid {
            return Err(format!(
                "uid_root \"{value}\" is not a UID root; use digits and dots, e.g. \"1.2.826.0.1.3680043.10.1234\""
            ));
        }
        if value.len() > Self::MAX_LEN {
            return Err(format!(
                "uid_root \"{value}\" has {} characters; at most {} leave room for the parts firstlook adds within DICOM's 64",
                value.len(),
                Self::MAX_LEN
            ));
        }
        Ok(UidRoot(value))
    }
}

/// The model beside the spine: what runs, where, and how series are gathered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triage {
    /// Off: images are only kept and forwarded.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A signed bundle file; without it the embedded demo bundle is used.
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    /// Public keys (one-line files from `firstlook-provision bundle keygen`)
    /// whose bundles are trusted; without any, only the demo vendor key,
    /// which cannot sign a bundle for clinical use.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    #[serde(default)]
    pub engine: EngineChoice,
    /// Threads each model runs on, where the engine can use several
    /// (onnxruntime); tract runs on one.
    #[serde(default = "default_engine_threads")]
    pub engine_threads: Bounded<1, 64>,
    /// Inference threads; each holds its own copy of the model.
    #[serde(default = "default_triage_workers")]
    pub workers: Bounded<1, 64>,
    /// Instances read ahead from the spool for the workers.
    #[serde(default = "default_triage_queue")]
    pub queue: Bounded<1, 10_000>,
    /// A series without a known slice count is judged this long after its last slice.
    #[serde(default = "default_series_idle")]
    pub series_idle_secs: Bounded<1, 3600>,
}

/// Which inference backend runs the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// The best backend this build and machine have.
    #[default]
    Auto,
    Tract,
    Onnxruntime,
    Tensorrt,
}

impl EngineChoice {
    /// The name used in the configuration, in decisions and on status.
    pub fn as_str(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Tract => "tract",
            EngineChoice::Onnxruntime => "onnxruntime",
            EngineChoice::Tensorrt => "tensorrt",
        }
    }
}

impl std::str::FromStr for EngineChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            EngineChoice::Auto,
            EngineChoice::Tract,
            EngineChoice::Onnxruntime,
            EngineChoice::Tensorrt,
        ]
        .into_iter()
        .find(|e| e.as_str() == s)
        .ok_or_else(|| format!("{s:?}: use auto, tract, onnxruntime or tensorrt"))
    }
}

fn default_true() -> bool {
    true
}
fn default_engine_threads() -> Bounded<1, 64> {
    Bounded(1)
}
fn default_triage_workers() -> Bounded<1, 64> {
    Bounded(1)
}
fn default_triage_queue() -> Bounded<1, 10_000> {
    Bounded(32)
}
fn default_series_idle() -> Bounded<1, 3600> {
    Bounded(10)
}

impl Default for Triage {
    fn default() -> Self {
        Triage {
            enabled: true,
            bundle: None,
            trusted_keys: Vec::new(),
            engine: EngineChoice::Auto,
            engine_threads: default_engine_threads(),
            workers: default_triage_workers(),
            queue: default_triage_queue(),
            series_idle_secs: default_series_idle(),
        }
    }
}

impl Triage {
    pub fn series_idle(&self) -> Duration {
        Duration::from_secs(self.series_idle_secs.get())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub ae_title: AeTitle,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    pub spool_dir: PathBuf,
    #[serde(default = "default_max_associations")]
    pub max_associations: Bounded<1, 1024>,
    /// Largest P-DATA PDU we accept; announced in A-ASSOCIATE-AC.
    #[serde(default = "default_max_pdu")]
    pub max_pdu_length: Bounded<4096, 4_194_304>,
    /// ARTIM: how long a new connection may take to send its A-ASSOCIATE-RQ,
    /// and how long we wait for the peer to close after a release.
    #[serde(default = "default_artim")]
    pub artim_timeout_secs: Bounded<1, 600>,
    /// How long an established association may sit idle between PDUs.
    #[serde(default = "default_dimse_timeout")]
    pub dimse_timeout_secs: Bounded<1, 3600>,
    /// Started as root, firstlookd binds its ports, gives the spool to
    /// this user and becomes it.
    #[serde(default)]
    pub run_as: Option<String>,
    /// DICOM over TLS on a port of its own, beside `listen`.
    #[serde(default)]
    pub tls: Option<NodeTls>,
    /// `firstlookd run` may write beneath the spool (and the audit file's
    /// folder) only, enforced by the kernel (Landlock).
    #[serde(default = "default_true")]
    pub confine_writes: bool,
}

/// The DICOM TLS listener (PS3.15 BCP 195 profile).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    /// e.g. "0.0.0.0:2762", the port registered for DICOM over TLS.
    pub listen: SocketAddr,
    /// PEM certificate chain and private key this node presents.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM certificates of CAs: when given, a peer must present a
    /// certificate one of them signed, or its connection is closed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// How to reach a peer over TLS: whom to trust and what to present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClient {
    /// PEM certificates of the CAs trusted to sign the peer's certificate.
    pub ca_file: PathBuf,
    /// The name its certificate carries, when not the address's host.
    #[serde(default)]
    pub server_name: Option<String>,
    /// PEM certificate chain and key to present, when the peer asks.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

impl TlsClient {
    pub fn files(&self) -> crate::tls::ClientFiles<'_> {
        crate::tls::ClientFiles {
            ca_file: &self.ca_file,
            client_cert: self.client_cert.as_deref(),
            client_key: self.client_key.as_deref(),
        }
    }

    fn resolve_paths(&mut self, beside: impl Fn(&Path) -> PathBuf) {
        self.ca_file = beside(&self.ca_file);
        self.client_cert = self.client_cert.as_deref().map(&beside);
        self.client_key = self.client_key.as_deref().map(&beside);
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spool {
    /// Above this share of the spool filesystem in use, new associations are
    /// refused and C-STOREs answered 0xA700.
    #[serde(default = "default_high_watermark")]
    pub high_watermark_percent: Bounded<1, 99>,
    /// Ingest resumes once use falls back under this share.
    #[serde(default = "default_low_watermark")]
    pub low_watermark_percent: Bounded<1, 99>,
    /// How long an instance is kept after every destination acknowledged it
    /// (with triage on, also until it is decided on and reported).
    #[serde(default = "default_retention")]
    pub retention_hours: Bounded<0, 87_600>,
    /// A segment file is closed and a new one started past this size.
    #[serde(default = "default_segment_mb")]
    pub segment_max_mb: Bounded<1, 4096>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    #[serde(default = "default_retry_initial")]
    pub retry_initial_secs: Bounded<1, 3600>,
    #[serde(default = "default_retry_max")]
    pub retry_max_secs: Bounded<1, 86_400>,
    /// After this long failing transiently, an instance is dead-lettered.
    #[serde(default = "default_give_up")]
    pub give_up_after_hours: Bounded<1, 8760>,
    /// Instances sent on one association before it is released.
    #[serde(default = "default_batch")]
    pub batch_size: Bounded<1, 10_000>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: Bounded<1, 600>,
    /// How long to wait for a C-STORE-RSP before the association is aborted.
    #[serde(default = "default_dimse_timeout")]
    pub dimse_timeout_secs: Bounded<1, 3600>,
}

/// A modality allowed to send to us.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scanner {
    /// Calling AE title; `"*"` accepts any title from the listed hosts.
    pub ae_title: AeTitlePattern,
    pub hosts: Vec<HostPattern>,
    /// Accepted only over DICOM TLS (`[node.tls]`).
    #[serde(default)]
    pub require_tls: bool,
}

/// A PACS (or any Storage SCP) that receives every instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub name: DestinationName,
    pub ae_title: AeTitle,
    pub address: PeerAddress,
    /// Calling AE title we present; defaults to `node.ae_title`.
    #[serde(default)]
    pub calling_ae_title: Option<AeTitle>,
    #[serde(default = "default_max_pdu")]
    pub max_pdu_length: Bounded<4096, 4_194_304>,
    /// DICOM over TLS to this destination.
    #[serde(default)]
    pub tls: Option<TlsClient>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 11112))
}
fn default_max_associations() -> Bounded<1, 1024> {
    Bounded(16)
}
fn default_max_pdu() -> Bounded<4096, 4_194_304> {
    Bounded(262_144)
}
fn default_artim() -> Bounded<1, 600> {
    Bounded(30)
}
fn default_dimse_timeout() -> Bounded<1, 3600> {
    Bounded(120)
}
fn default_high_watermark() -> Bounded<1, 99> {
    Bounded(90)
}
fn default_low_watermark() -> Bounded<1, 99> {
    Bounded(85)
}
fn default_retention() -> Bounded<0, 87_600> {
    Bounded(24)
}
fn default_segment_mb() -> Bounded<1, 4096> {
    Bounded(64)
}
fn default_retry_initial() -> Bounded<1, 3600> {
    Bounded(2)
}
fn default_retry_max() -> Bounded<1, 86_400> {
    Bounded(300)
}
fn default_give_up() -> Bounded<1, 8760> {
    Bounded(72)
}
fn default_batch() -> Bounded<1, 10_000> {
    Bounded(200)
}
fn default_connect_timeout() -> Bounded<1, 600> {
    Bounded(10)
}

impl Default for Spool {
    fn default() -> Self {
        Spool {
            high_watermark_percent: default_high_watermark(),
            low_watermark_percent: default_low_watermark(),
            retention_hours: default_retention(),
            segment_max_mb: default_segment_mb(),
        }
    }
}

impl Default for Forward {
    fn default() -> Self {
        Forward {
            retry_initial_secs: default_retry_initial(),
            retry_max_secs: default_retry_max(),
            give_up_after_hours: default_give_up(),
            batch_size: default_batch(),
            connect_timeout_secs: default_connect_timeout(),
            dimse_timeout_secs: default_dimse_timeout(),
        }
    }
}

impl Node {
    pub fn artim_timeout(&self) -> Duration {
        Duration::from_secs(self.artim_timeout_secs.get())
    }
    pub fn dimse_timeout(&self) -> Duration {
        Duration::from_secs(self.dimse_timeout_secs.get())
    }
}

impl Forward {
    pub fn retry_initial(&self) -> Duration {
        Duration::from_secs(self.retry_initial_secs.get())
    }
    pub fn retry_max(&self) -> Duration {
        Duration::from_secs(self.retry_max_secs.get())
    }
    pub fn give_up_after(&self) -> Duration {
        Duration::from_secs(self.give_up_after_hours.get() * 3600)
    }
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs.get())
    }
    pub fn dimse_timeout(&self) -> Duration {
        Duration::from_secs(self.dimse_timeout_secs.get())
    }
}

impl Spool {
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours.get() * 3600)
    }
    pub fn segment_max_bytes(&self) -> u64 {
        self.segment_max_mb.get() * 1024 * 1024
    }
}

impl Destination {
    pub fn calling_ae<'a>(&'a self, node: &'a Node) -> &'a str {
        self.calling_ae_title
            .as_ref()
            .map_or(node.ae_title.as_str(), AeTitle::as_str)
    }

    /// The TLS client for this destination, when it is reached over TLS.
    pub fn tls_client(&self) -> Result<Option<crate::tls::Client>, crate::tls::TlsError> {
        self.tls
            .as_ref()
            .map(|t| {
                let name = t.server_name.as_deref().unwrap_or(self.address.host());
                crate::tls::Client::new(
                    t.files(),
                    name,
                    "the destination's TLS settings are unusable",
                )
            })
            .transpose()
    }
}

/// An integer that must lie in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    pub fn new(value: u64) -> Option<Self> {
        (MIN..=MAX).contains(&value).then_some(Bounded(value))
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

impl<const MIN: u64, const MAX: u64> TryFrom<i64> for Bounded<MIN, MAX> {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        u64::try_from(value)
            .ok()
            .and_then(Self::new)
            .ok_or_else(|| {
                format!("{value} is out of range; use a whole number from {MIN} to {MAX}")
            })
    }
}

/// A DICOM AE title: 1 to 16 characters of the default repertoire, no backslash,
/// not all spaces.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AeTitle(String);

impl AeTitle {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AeTitle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AeTitle {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(
                "an AE title cannot be empty; use 1 to 16 characters, e.g. \"FIRSTLOOK\"".into(),
            );
        }
        if trimmed.len() > 16 {
            return Err(format!(
                "AE title \"{trimmed}\" has {} characters; DICOM allows at most 16, e.g. \"{}\"",
                trimmed.len(),
                &trimmed[..16]
            ));
        }
        if let Some(c) = trimmed
            .chars()
            .find(|c| !c.is_ascii() || c.is_ascii_control() || *c == '\\')
        {
            return Err(format!(
                "AE title \"{trimmed}\" contains {c:?}; use printable ASCII without backslash"
            ));
        }
        Ok(AeTitle(trimmed.to_string()))
    }
}

/// A calling AE title to accept, or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AeTitlePattern {
    Any,
    Exact(AeTitle),
}

impl AeTitlePattern {
    pub fn matches(&self, calling: &str) -> bool {
        match self {
            AeTitlePattern::Any => true,
            AeTitlePattern::Exact(ae) => ae.as_str() == calling.trim(),
        }
    }
}

impl TryFrom<String> for AeTitlePattern {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.trim() == "*" {
            Ok(AeTitlePattern::Any)
        } else {
            AeTitle::try_from(value).map(AeTitlePattern::Exact)
        }
    }
}

/// An address or CIDR network a scanner may connect from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HostPattern(IpNet);

impl HostPattern {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let v = value.trim();
        if let Ok(net) = v.parse::<IpNet>() {
            return Ok(HostPattern(net.trunc()));
        }
        if let Ok(ip) = v.parse::<IpAddr>() {
            return Ok(HostPattern(IpNet::from(ip)));
        }
        Err(format!(
            "\"{v}\" is not an IP address or network; write e.g. \"10.1.2.7\" or \"10.1.2.0/24\" (host names are not accepted: a scanner is identified by its address)"
        ))
    }
}

/// `host:port` of a peer; the host may be a name, resolved at each connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct PeerAddress(String);

impl PeerAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        let host = self.0.rsplit_once(':').map_or(self.0.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PeerAddress {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let v = value.trim();
        let ok = v.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        });
        if ok {
            Ok(PeerAddress(v.to_string()))
        } else {
            Err(format!(
                "\"{v}\" is not host:port; write e.g. \"10.1.2.50:104\" or \"pacs.example.org:11112\""
            ))
        }
    }
}

/// A destination's name: used in the spool and in status output.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct DestinationName(String);

impl DestinationName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DestinationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DestinationName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if ok {
            Ok(DestinationName(value))
        } else {
            Err(format!(
                "destination name \"{value}\" must be 1 to 64 letters, digits, '-', '_' or '.', e.g. \"pacs-main\""
            ))
        }
    }
}

/// Why a configuration was refused. The message names the place and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid, with the place and the fix.
    #[error("{origin}:{line}:{column}: {message}\n  fix: {fix}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        message: String,
        fix: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text, &path.display().to_string())?;
        config.resolve_paths(path.parent().unwrap_or(Path::new(".")));
        config.source = ConfigSource {
            path: std::fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_path_buf())
                .display()
                .to_string(),
            sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())),
        };
        Ok(config)
    }

    /// Paths in the file are relative to the file's folder; the panel's
    /// users file defaults to one beside it.
    fn resolve_paths(&mut self, dir: &Path) {
        let beside = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                dir.join(p)
            }
        };
        let panel = &mut self.panel;
        panel.users_file =
            Some(beside(panel.users_file.as_deref().unwrap_or(Path::new(
                crate::panel::users::DEFAULT_FILE_NAME,
            ))));
        panel.tls_cert = panel.tls_cert.as_deref().map(beside);
        panel.tls_key = panel.tls_key.as_deref().map(beside);
        let audit = &mut self.audit;
        audit.file = audit.file.as_deref().map(beside);
        if let Some(s) = &mut audit.syslog_tls {
            s.ca_file = beside(&s.ca_file);
            s.client_cert = s.client_cert.as_deref().map(beside);
            s.client_key = s.client_key.as_deref().map(beside);
        }
        if let Some(t) = &mut self.node.tls {
            t.cert = beside(&t.cert);
            t.key = beside(&t.key);
            t.client_ca = t.client_ca.as_deref().map(beside);
        }
        for d in &mut self.destinations {
            if let Some(t) = &mut d.tls {
                t.resolve_paths(beside);
            }
        }
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e.message().trim().to_string();
            let fix = fix_for(&message);
            invalid_at(text, origin, offset, message, fix)
        })?;
        config.validate(text, origin)?;
        Ok(config)
    }

    /// An error about the `[triage]` model (a bundle that cannot be read or
    /// verified), placed at `bundle`, else at `trusted_keys`, of `text`.
    pub fn triage_error(
        &self,
        text: &str,
        origin: &str,
        message: String,
        fix: &str,
    ) -> ConfigError {
        triage_error_at(text, origin, |t| t.bundle.or(t.trusted_keys), message, fix)
    }

    /// An error about `[triage] engine`, placed at that key of `text`.
    pub fn engine_error(
        &self,
        text: &str,
        origin: &str,
        message: String,
        fix: &str,
    ) -> ConfigError {
        triage_error_at(text, origin, |t| t.engine, message, fix)
    }

    /// Loads the certificates and keys the file names (DICOM TLS, the
    /// destinations', the panel's) as `firstlookd` would at start; an
    /// unusable one is an error at its key. Paths must be resolved.
    pub fn check_tls(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let places: Places = toml::from_str(text).unwrap_or_default();
        let at =
            |place: Option<&toml::Spanned<toml::Value>>, e: crate::tls::TlsError, fix: &str| {
                let offset = place.map_or(0, |v| v.span().start);
                invalid_at(text, origin, offset, e.to_string(), fix.to_string())
            };
        if let Some(t) = &self.node.tls {
            if let Err(e) = crate::tls::acceptor(
                &t.cert,
                &t.key,
                t.client_ca.as_deref(),
                "the certificate and key do not make a TLS server",
            ) {
                let p = places.node.as_ref().and_then(|n| n.tls.as_ref());
                return Err(at(
                    p.and_then(|p| p.cert.as_ref()),
                    e,
                    "point cert and key at this box's PEM certificate chain and private key, and client_ca at the PEM certificates of the CAs that sign the scanners' certificates",
                ));
            }
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if let Err(e) = d.tls_client() {
                let p = places.destinations.get(i).and_then(|p| p.tls.as_ref());
                return Err(at(
                    p.and_then(|p| p.ca_file.as_ref()),
                    e,
                    "point ca_file at the PEM certificates of the CA that signed the destination's certificate, and client_cert and client_key at this box's",
                ));
            }
        }
        if let (Some(cert), Some(key)) = (&self.panel.tls_cert, &self.panel.tls_key) {
            if let Err(e) = crate::tls::acceptor(
                cert,
                key,
                None,
                "the certificate and key do not make a TLS server",
            ) {
                let p = places.panel.as_ref().and_then(|p| p.tls_cert.as_ref());
                return Err(at(
                    p,
                    e,
                    "point tls_cert and tls_key at the panel's PEM certificate chain and private key",
                ));
            }
        }
        Ok(())
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        // The same text again, keeping where each checked value sits.
        let places: Places = toml::from_str(text).unwrap_or_default();
        let at = |span: Option<std::ops::Range<usize>>, message: String, fix: &str| {
            invalid_at(
                text,
                origin,
                span.map_or(0, |s| s.start),
                message,
                fix.to_string(),
            )
        };
        let spool = &self.spool;
        if spool.low_watermark_percent.get() >= spool.high_watermark_percent.get() {
            return Err(at(
                places.spool.and_then(|s| s.low_watermark_percent).map(|v| v.span()),
                format!(
                    "low_watermark_percent ({}) must be below high_watermark_percent ({})",
                    spool.low_watermark_percent.get(),
                    spool.high_watermark_percent.get()
                ),
                "set low_watermark_percent a few points under high_watermark_percent, e.g. 85 and 90",
            ));
        }
        if self.forward.retry_initial_secs.get() > self.forward.retry_max_secs.get() {
            return Err(at(
                places
                    .forward
                    .and_then(|f| f.retry_initial_secs)
                    .map(|v| v.span()),
                "retry_initial_secs is larger than retry_max_secs".into(),
                "make retry_initial_secs at most retry_max_secs, e.g. 2 and 300",
            ));
        }
        let panel = &self.panel;
        let panel_places = places.panel.unwrap_or_default();
        if panel.tls_cert.is_some() != panel.tls_key.is_some() {
            return Err(at(
                panel_places
                    .tls_cert
                    .or(panel_places.tls_key)
                    .map(|v| v.span()),
                "tls_cert and tls_key go together".into(),
                "give both the certificate chain and its private key (PEM files), or neither",
            ));
        }
        if panel.enabled && !panel.listen.ip().is_loopback() && panel.tls_cert.is_none() {
            return Err(at(
                panel_places.listen.map(|v| v.span()),
                format!(
                    "the panel would serve patient data unencrypted on {}",
                    panel.listen
                ),
                "set tls_cert and tls_key under [panel] (a provisioned certificate), or listen on 127.0.0.1",
            ));
        }
        let client_pair = |cert: &Option<PathBuf>,
                           key: &Option<PathBuf>,
                           p: Option<&ClientCertPlaces>| {
            if cert.is_some() == key.is_some() {
                return Ok(());
            }
            Err(at(
                p.and_then(|p| p.client_cert.as_ref().or(p.client_key.as_ref()))
                    .map(|v| v.span()),
                "client_cert and client_key go together".into(),
                "give both the client certificate chain and its private key (PEM files), or neither",
            ))
        };
        if let Some(s) = &self.audit.syslog_tls {
            let p = places.audit.as_ref().and_then(|a| a.syslog_tls.as_ref());
            client_pair(&s.client_cert, &s.client_key, p)?;
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if let Some(t) = &d.tls {
                let p = places.destinations.get(i).and_then(|p| p.tls.as_ref());
                client_pair(&t.client_cert, &t.client_key, p)?;
            }
        }
        if let Some(t) = &self.node.tls {
            if t.listen == self.node.listen {
                return Err(at(
                    places
                        .node
                        .as_ref()
                        .and_then(|n| n.tls.as_ref())
                        .and_then(|t| t.listen.as_ref())
                        .map(|v| v.span()),
                    format!(
                        "the TLS listener and the plain one are both on {}",
                        t.listen
                    ),
                    "give [node.tls] a port of its own, e.g. listen = \"0.0.0.0:2762\"",
                ));
            }
        }
        for (i, s) in self.scanners.iter().enumerate() {
            if s.require_tls && self.node.tls.is_none() {
                return Err(at(
                    places
                        .scanners
                        .get(i)
                        .and_then(|p| p.require_tls.as_ref())
                        .map(|v| v.span()),
                    "this scanner may only connect over TLS, but there is no TLS listener".into(),
                    "add a [node.tls] table (listen, cert, key), or remove require_tls",
                ));
            }
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if self.destinations[..i].iter().any(|o| o.name == d.name) {
                return Err(at(
                    places
                        .destinations
                        .get(i)
                        .and_then(|p| p.name.as_ref())
                        .map(|v| v.span()),
                    format!("destination name \"{}\" is used twice", d.name),
                    "give each [[destinations]] entry its own name",
                ));
            }
        }
        for (i, s) in self.scanners.iter().enumerate() {
            if s.hosts.is_empty() {
                return Err(at(
                    places
                        .scanners
                        .get(i)
                        .and_then(|p| p.hosts.as_ref())
                        .map(|v| v.span()),
                    "this [[scanners]] entry has an empty hosts list, so nobody could use it"
                        .into(),
                    "list the scanner's address, e.g. hosts = [\"10.1.2.7\"]",
                ));
            }
        }
        Ok(())
    }

    /// The defaults `firstlookd` runs on without `--config`: loopback only,
    /// any calling AE from this machine, no destinations.
    pub fn embedded_defaults() -> Config {
        let spool_dir = std::env::var_os("XDG_STATE_HOME")
            .map(|p| PathBuf::from(p).join("firstlook").join("spool"))
            .unwrap_or_else(|| PathBuf::from("firstlook-spool"));
        Config {
            node: Node {
                ae_title: AeTitle("FIRSTLOOK".into()),
                listen: default_listen(),
                spool_dir,
                max_associations: default_max_associations(),
                max_pdu_length: default_max_pdu(),
                artim_timeout_secs: default_artim(),
                dimse_timeout_secs: default_dimse_timeout(),
                run_as: None,
                tls: None,
                confine_writes: true,
            },
            spool: Spool::default(),
            forward: Forward::default(),
            scanners: vec![Scanner {
                ae_title: AeTitlePattern::Any,
                hosts: vec![
                    HostPattern(IpNet::from(IpAddr::from([127, 0, 0, 1]))),
                    HostPattern(IpNet::from(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))),
                ],
                require_tls: false,
            }],
            destinations: Vec::new(),
            triage: Triage::default(),
            results: Results::default(),
            panel: Panel::default(),
            audit: Audit::default(),
            source: ConfigSource {
                path: "(embedded defaults)".into(),
                sha256: String::new(),
            },
        }
    }

    /// Is a peer with this calling AE title at this address, connected over
    /// TLS or not, allowed to send?
    pub fn scanner_allowed(&self, calling_ae: &str, ip: IpAddr, over_tls: bool) -> ScannerCheck {
        let known = |s: &&Scanner| s.hosts.iter().any(|h| h.contains(ip));
        let mut entries = self
            .scanners
            .iter()
            .filter(known)
            .filter(|s| s.ae_title.matches(calling_ae))
            .peekable();
        if entries.peek().is_none() {
            return if self.scanners.iter().any(|s| known(&s)) {
                ScannerCheck::UnknownCallingAe
            } else {
                ScannerCheck::UnknownHost
            };
        }
        // One entry asking for TLS is enough: another (a wildcard, say)
        // must not let the same scanner in the clear.
        if !over_tls && entries.any(|s| s.require_tls) {
            ScannerCheck::TlsRequired
        } else {
            ScannerCheck::Allowed
        }
    }
}

/// An error placed at the `[triage]` key `pick` chooses.
fn triage_error_at(
    text: &str,
    origin: &str,
    pick: impl FnOnce(TriagePlaces) -> Option<toml::Spanned<toml::Value>>,
    message: String,
    fix: &str,
) -> ConfigError {
    let places: Places = toml::from_str(text).unwrap_or_default();
    let span = places.triage.and_then(pick).map(|v| v.span());
    invalid_at(
        text,
        origin,
        span.map_or(0, |s| s.start),
        message,
        fix.to_string(),
    )
}

/// Where the values checked across fields sit in the file.
#[derive(Debug, Default, Deserialize)]
struct Places {
    node: Option<NodePlaces>,
    spool: Option<SpoolPlaces>,
    triage: Option<TriagePlaces>,
    forward: Option<ForwardPlaces>,
    #[serde(default)]
    scanners: Vec<ScannerPlaces>,
    #[serde(default)]
    destinations: Vec<DestinationPlaces>,
    panel: Option<PanelPlaces>,
    audit: Option<AuditPlaces>,
}

#[derive(Debug, Default, Deserialize)]
struct NodePlaces {
    tls: Option<NodeTlsPlaces>,
}

#[derive(Debug, Default, Deserialize)]
struct NodeTlsPlaces {
    listen: Option<toml::Spanned<toml::Value>>,
    cert: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
struct AuditPlaces {
    syslog_tls: Option<ClientCertPlaces>,
}

#[derive(Debug, Default, Deserialize)]
struct ClientCertPlaces {
    ca_file: Option<toml::Spanned<toml::Value>>,
    client_cert: Option<toml::Spanned<toml::Value>>,
    client_key: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
struct PanelPlaces {
    listen: Option<toml::Spanned<toml::Value>>,
    tls_cert: Option<toml::Spanned<toml::Value>>,
    tls_key: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
struct SpoolPlaces {
    low_watermark_percent: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
struct TriagePlaces {
    bundle: Option<toml::Spanned<toml::Value>>,
    trusted_keys: Option<toml::Spanned<toml::Value>>,
    engine: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
struct ForwardPlaces {
    retry_initial_secs: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
struct ScannerPlaces {
    hosts: Option<toml::Spanned<toml::Value>>,
    require_tls: Option<toml::Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
struct DestinationPlaces {
    name: Option<toml::Spanned<toml::Value>>,
    tls: Option<ClientCertPlaces>,
}

/// Outcome of matching a peer against `[[scanners]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScannerCheck {
    Allowed,
    UnknownCallingAe,
    UnknownHost,
    /// Known, but only over DICOM TLS.
    TlsRequired,
}

fn fix_for(message: &str) -> String {
    if message.starts_with("unknown field") {
        "remove this key or correct its spelling to one of the expected keys listed above".into()
    } else if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.split('`').next().unwrap_or("");
        format!("add `{key} = ...` to this table (see README's configuration example)")
    } else if message.starts_with("unknown variant") {
        "use one of the values listed in the message".into()
    } else if message.contains("invalid type") {
        "give the value the expected type: quote strings, no quotes around numbers".into()
    } else if message.contains("invalid socket address") {
        "write the listen address as ip:port, e.g. \"0.0.0.0:104\"".into()
    } else if message.contains("expected") || message.contains("invalid") {
        "check the TOML syntax on this line: key = value, strings in double quotes".into()
    } else {
        "see the message above for the accepted values".into()
    }
}

fn invalid_at(
    text: &str,
    origin: &str,
    offset: usize,
    message: String,
    fix: String,
) -> ConfigError {
    let (line, column) = line_column(text, offset);
    ConfigError::Invalid {
        origin: origin.to_string(),
        line,
        column,
        message,
        fix,
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;

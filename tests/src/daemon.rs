//! `firstlookd` under test: its configuration file, the process, and
//! `firstlookd status --json`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::paths::{firstlookd_bin, free_port};
use crate::process::{read_lossy, run_cmd, tail, Proc};
use crate::tls::Pki;
use crate::wait::{port_open, wait_until};
use crate::NODE_AE;

/// A `[[destinations]]` entry.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub name: String,
    pub ae_title: String,
    pub port: u16,
    pub max_pdu_length: Option<u32>,
    /// More lines of the entry (e.g. a `tls = {...}` inline table).
    pub lines: String,
}

impl DestinationConfig {
    pub fn new(name: &str, ae_title: &str, port: u16) -> Self {
        DestinationConfig {
            name: name.into(),
            ae_title: ae_title.into(),
            port,
            max_pdu_length: None,
            lines: String::new(),
        }
    }

    /// Reached over TLS: trusts `ca`, presents `cert` and `key` when asked.
    pub fn tls(mut self, ca: &Path, client: Option<(&Path, &Path)>) -> Self {
        let mut t = format!("ca_file = \"{}\"", ca.display());
        if let Some((cert, key)) = client {
            t.push_str(&format!(
                ", client_cert = \"{}\", client_key = \"{}\"",
                cert.display(),
                key.display()
            ));
        }
        self.lines.push_str(&format!("tls = {{ {t} }}\n"));
        self
    }
}

/// What goes in the TOML file a test daemon runs with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub port: u16,
    /// The panel's HTTP port (loopback).
    pub panel_port: u16,
    pub max_associations: u32,
    pub scanners: Vec<(String, Vec<String>)>,
    pub destinations: Vec<DestinationConfig>,
    pub batch_size: u32,
    pub retry_initial_secs: u32,
    pub retry_max_secs: u32,
    /// `[forward] connect_timeout_secs` and `dimse_timeout_secs`.
    pub forward_timeouts_secs: (u32, u32),
    pub high_watermark_percent: u32,
    pub low_watermark_percent: u32,
    /// Lines of the `[triage]` table; empty keeps its defaults.
    pub triage: String,
    /// Lines of the `[results]` table: shadow unless a test asks (results
    /// stay on the box, so destinations see only what scanners sent).
    pub results: String,
    /// More lines of the `[panel]` table (after `listen`).
    pub panel: String,
    /// More lines of the `[node]` table.
    pub node: String,
    /// Appended to the file as is (further tables).
    pub extra: String,
    /// Environment variables for the daemon process.
    pub env: Vec<(String, String)>,
}

impl DaemonConfig {
    /// A daemon on a free port, with no scanners and no destinations yet.
    pub fn new() -> Self {
        DaemonConfig {
            port: free_port(),
            panel_port: free_port(),
            max_associations: 16,
            scanners: Vec::new(),
            destinations: Vec::new(),
            batch_size: 200,
            retry_initial_secs: 1,
            retry_max_secs: 2,
            forward_timeouts_secs: (5, 60),
            high_watermark_percent: 98,
            low_watermark_percent: 95,
            triage: String::new(),
            results: "mode = \"shadow\"\n".into(),
            panel: String::new(),
            node: String::new(),
            extra: String::new(),
            env: Vec::new(),
        }
    }

    /// The common set-up: CT01 may send from loopback, and everything goes
    /// to one PACS (`pacs`, AE title `PACS`) on `port`.
    pub fn ct01_to_pacs(port: u16) -> Self {
        Self::new()
            .scanner("CT01", &["127.0.0.1"])
            .destination(DestinationConfig::new("pacs", "PACS", port))
    }

    pub fn scanner(mut self, ae_title: &str, hosts: &[&str]) -> Self {
        self.scanners.push((
            ae_title.into(),
            hosts.iter().map(|h| h.to_string()).collect(),
        ));
        self
    }

    /// DICOM over TLS on `port` with `pki`'s server certificate; with
    /// `client_ca`, peers must present a certificate it signed.
    pub fn dicom_tls(mut self, port: u16, pki: &Pki, client_ca: Option<&Path>) -> Self {
        let mut t = format!(
            "listen = \"127.0.0.1:{port}\", cert = \"{}\", key = \"{}\"",
            pki.server_cert.display(),
            pki.server_key.display()
        );
        if let Some(ca) = client_ca {
            t.push_str(&format!(", client_ca = \"{}\"", ca.display()));
        }
        self.node.push_str(&format!("tls = {{ {t} }}\n"));
        self
    }

    /// A `[[scanners]]` entry accepted only over DICOM TLS.
    pub fn scanner_over_tls_only(mut self, ae_title: &str, hosts: &[&str]) -> Self {
        let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
        self.extra.push_str(&format!(
            "\n[[scanners]]\nae_title = \"{ae_title}\"\nhosts = [{}]\nrequire_tls = true\n",
            hosts.join(", ")
        ));
        self
    }

    pub fn destination(mut self, d: DestinationConfig) -> Self {
        self.destinations.push(d);
        self
    }

    /// `[forward] retry_initial_secs` and `retry_max_secs`.
    pub fn retry_secs(mut self, initial: u32, max: u32) -> Self {
        self.retry_initial_secs = initial;
        self.retry_max_secs = max;
        self
    }

    /// Sets an environment variable for the daemon process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Adds `line` (e.g. `bundle = "..."`) to the `[triage]` table.
    pub fn triage(mut self, line: &str) -> Self {
        self.triage.push_str(line);
        self.triage.push('\n');
        self
    }

    /// Replaces the `[results]` table's lines.
    pub fn results(mut self, lines: &str) -> Self {
        self.results = format!("{lines}\n");
        self
    }

    pub fn to_toml(&self, spool_dir: &Path) -> String {
        let mut s = format!(
            "[node]\nae_title = \"{NODE_AE}\"\nlisten = \"127.0.0.1:{}\"\nspool_dir = \"{}\"\n\
             max_associations = {}\nartim_timeout_secs = 30\ndimse_timeout_secs = 120\n{}\n\
             [spool]\nhigh_watermark_percent = {}\nlow_watermark_percent = {}\nretention_hours = 24\n\n\
             [forward]\nretry_initial_secs = {}\nretry_max_secs = {}\ngive_up_after_hours = 72\n\
             batch_size = {}\nconnect_timeout_secs = {}\ndimse_timeout_secs = {}\n",
            self.port,
            spool_dir.display(),
            self.max_associations,
            self.node,
            self.high_watermark_percent,
            self.low_watermark_percent,
            self.retry_initial_secs,
            self.retry_max_secs,
            self.batch_size,
            self.forward_timeouts_secs.0,
            self.forward_timeouts_secs.1
        );
        for (ae, hosts) in &self.scanners {
            let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
            s.push_str(&format!(
                "\n[[scanners]]\nae_title = \"{ae}\"\nhosts = [{}]\n",
                hosts.join(", ")
            ));
        }
        for d in &self.destinations {
            s.push_str(&format!(
                "\n[[destinations]]\nname = \"{}\"\nae_title = \"{}\"\naddress = \"127.0.0.1:{}\"\n",
                d.name, d.ae_title, d.port
            ));
            if let Some(n) = d.max_pdu_length {
                s.push_str(&format!("max_pdu_length = {n}\n"));
            }
            s.push_str(&d.lines);
        }
        if !self.triage.is_empty() {
            s.push_str(&format!("\n[triage]\n{}", self.triage));
        }
        s.push_str(&format!("\n[results]\n{}", self.results));
        s.push_str(&format!(
            "\n[panel]\nlisten = \"127.0.0.1:{}\"\n{}",
            self.panel_port, self.panel
        ));
        s.push_str(&self.extra);
        s
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// `firstlookd status --json`, read with the daemon's own types.
pub use firstlook::status::{DeadLetter, DestinationStatus, StatusReport as Status};

/// Conveniences over the daemon's status report for assertions.
pub trait StatusExt {
    /// The queue of one destination; panics with the whole report if absent.
    fn destination(&self, name: &str) -> &DestinationStatus;
    /// The report in one line, for assertion messages.
    fn summary(&self) -> String;
}

impl StatusExt for Status {
    fn destination(&self, name: &str) -> &DestinationStatus {
        self.destinations
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no destination {name} in status: {self:?}"))
    }

    fn summary(&self) -> String {
        self.to_string().replace('\n', "; ")
    }
}

/// A running `firstlookd --config FILE run` (FIRSTLOOK_LOG=info), killed at drop.
pub struct Daemon {
    pub port: u16,
    pub panel_port: u16,
    pub dir: PathBuf,
    pub spool_dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl Daemon {
    /// Writes the configuration under `dir`, starts the daemon and waits until
    /// it is ready.
    pub fn start(dir: &Path, config: &DaemonConfig) -> Daemon {
        let spool_dir = dir.join("spool");
        let config_path = dir.join("firstlook.toml");
        std::fs::write(&config_path, config.to_toml(&spool_dir)).expect("write config");
        let mut d = Daemon {
            port: config.port,
            panel_port: config.panel_port,
            dir: dir.to_path_buf(),
            spool_dir,
            config_path,
            log_path: dir.join("firstlookd.log"),
            env: config.env.clone(),
            proc: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let ready_before = self.spawn_process();
        let port = self.port;
        wait_until(Duration::from_secs(20), "firstlookd to be ready", |_| {
            self.proc.as_mut().expect("proc").assert_running();
            let ready = self.log_text().matches("firstlookd ready").count() > ready_before;
            (ready && port_open(port)).then_some(())
        });
    }

    /// Starts the process; returns how many times the log said ready before.
    fn spawn_process(&mut self) -> usize {
        let ready_before = self.log_text().matches("firstlookd ready").count();
        let mut cmd = Command::new(firstlookd_bin());
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("run")
            .env("FIRSTLOOK_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        self.proc = Some(Proc::spawn("firstlookd", &mut cmd, &self.log_path));
        ready_before
    }

    /// SIGTERM, and waits for the daemon to shut down by itself.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.sigterm();
        self.proc
            .take()
            .expect("daemon running")
            .wait_exit(Duration::from_secs(60))
            .expect("firstlookd exits within 60 s of SIGTERM")
    }

    /// SIGTERM, without waiting.
    pub fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(&mut self) {
        let proc = self.proc.as_mut().expect("daemon running");
        let pid = proc.pid().expect("pid") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill -9 firstlookd");
        let status = proc.wait_exit(Duration::from_secs(10));
        assert!(status.is_some(), "firstlookd survived SIGKILL");
        self.proc.take().expect("proc").kill();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .and_then(|mut f| {
                use std::io::Write;
                writeln!(
                    f,
                    "===== test harness: firstlookd killed with SIGKILL ====="
                )
            })
            .expect("annotate log");
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.proc
            .as_ref()
            .and_then(Proc::pid)
            .expect("daemon running")
    }

    /// `http://127.0.0.1:PORT`, the panel's address.
    pub fn panel_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.panel_port)
    }

    /// `firstlook-provision set-password --config FILE USER`, as a field
    /// engineer sets it (the daemon reads it at the next login).
    pub fn set_panel_password(&self, user: &str, password: &str) {
        use std::io::Write;
        let mut child = Command::new(crate::paths::release_bin("firstlook-provision"))
            .args(["set-password", "--password-stdin", "--config"])
            .arg(&self.config_path)
            .arg(user)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("firstlook-provision");
        writeln!(child.stdin.take().expect("stdin"), "{password}").expect("password");
        let out = child.wait_with_output().expect("set-password");
        assert!(
            out.status.success(),
            "set-password failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the daemon again without waiting for it to be ready (to kill
    /// it while it recovers its spool).
    pub fn restart_unready(&mut self) {
        assert!(self.proc.is_none(), "restart a daemon that is running");
        self.spawn_process();
    }

    /// Starts the daemon again with the same configuration and spool.
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "restart a daemon that is running");
        self.spawn();
    }

    /// Panics with the log if the daemon has died.
    pub fn assert_running(&mut self) {
        self.proc
            .as_mut()
            .expect("daemon not started")
            .assert_running();
    }

    pub fn log_text(&self) -> String {
        read_lossy(&self.log_path)
    }

    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path, n)
    }

    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    /// Waits until triage has judged `units` images or series and has nothing
    /// queued; returns that status.
    pub fn wait_decided(&mut self, units: u64, timeout: Duration) -> Status {
        wait_until(
            timeout,
            format!("{units} images or series decided, nothing queued for triage"),
            |last| {
                self.assert_running();
                let s = self.status();
                *last = s.summary();
                let t = s.triage.as_ref()?;
                (t.decided_units >= units && t.queue == 0).then_some(s)
            },
        )
    }

    /// `firstlookd status --spool DIR --json`.
    pub fn status(&self) -> Status {
        let out = run_cmd(
            Command::new(firstlookd_bin())
                .arg("status")
                .arg("--spool")
                .arg(&self.spool_dir)
                .arg("--json"),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "firstlookd status failed:\n{out}");
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!("firstlookd status --json is not the expected JSON: {e}\n{out}")
        })
    }

    /// Waits until the spool holds `instances` instances and no destination
    /// has anything pending; returns that status.
    pub fn wait_settled(&mut self, instances: u64, timeout: Duration) -> Status {
        wait_until(
            timeout,
            format!("{instances} instances in the spool and nothing pending"),
            |last| {
                self.assert_running();
                let s = self.status();
                *last = s.summary();
                let done = s.instances == instances
                    && !s.destinations.is_empty()
                    && s.destinations.iter().all(|d| d.pending == 0);
                done.then_some(s)
            },
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if self.spool_dir.exists() {
                if let Ok(out) = Command::new(firstlookd_bin())
                    .arg("status")
                    .arg("--spool")
                    .arg(&self.spool_dir)
                    .output()
                {
                    eprintln!(
                        "===== firstlookd status at failure =====\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            if self.proc.is_none() {
                eprintln!(
                    "===== firstlookd log (not running), last lines =====\n{}",
                    self.log_tail(120)
                );
            }
        }
    }
}

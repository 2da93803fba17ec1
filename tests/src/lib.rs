//! Harness shared by the end-to-end tests: the `firstlookd` process, real
//! peers (DCMTK `storescp`, Orthanc, pynetdicom scripts), scratch folders,
//! free ports, waiting with deadlines, and Part-10 file comparison.
//!
//! Every process is owned by a guard that kills it on drop; when a test is
//! panicking, the guards print the tail of each process's log so the failure
//! carries its context.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

pub use firstlook_phantom::{write_study, Finding, Kind, StudySpec};

/// DCMTK tools, by absolute path: pynetdicom installs console scripts with
/// the same names that shadow them on PATH.
pub const STORESCU: &str = "/usr/bin/storescu";
pub const STORESCP: &str = "/usr/bin/storescp";
pub const ECHOSCU: &str = "/usr/bin/echoscu";
pub const DCMSEND: &str = "/usr/bin/dcmsend";
pub const DCMCJPEG: &str = "/usr/bin/dcmcjpeg";
pub const DCMCRLE: &str = "/usr/bin/dcmcrle";
pub const DCMCONV: &str = "/usr/bin/dcmconv";
pub const ORTHANC: &str = "/usr/sbin/Orthanc";

pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
pub const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
pub const DEFLATED_EXPLICIT_LE: &str = "1.2.840.10008.1.2.1.99";

/// The daemon's AE title in every test.
pub const NODE_AE: &str = "FIRSTLOOK";

// ---------------------------------------------------------------------------
// Paths, ports, folders

/// `target/release/firstlookd`, found from the test executable.
pub fn firstlookd_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    for dir in exe.ancestors().skip(1) {
        for candidate in [
            dir.join("firstlookd"),
            dir.join("release").join("firstlookd"),
        ] {
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "firstlookd not found above {}: build it with cargo build --release --bins",
        exe.display()
    );
}

/// A script of `tests/py/`.
pub fn py_script(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("py").join(name);
    assert!(p.is_file(), "missing test script {}", p.display());
    p
}

/// A TCP port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A scratch folder for one test: removed at drop, except when the test is
/// failing (its path is then printed) or `FIRSTLOOK_E2E_KEEP` is set.
pub struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("scratch folder").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if std::thread::panicking() || std::env::var_os("FIRSTLOOK_E2E_KEEP").is_some() {
                let kept = dir.keep();
                eprintln!("scratch folder kept: {}", kept.display());
            }
        }
    }
}

/// A fresh scratch folder named after the test.
pub fn scratch(test: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("firstlook-e2e-{test}-"))
        .tempdir()
        .expect("create a scratch folder");
    Scratch(Some(dir))
}

/// Writes a phantom study into `dir` and returns its files, parsed.
pub fn phantom(spec: &StudySpec, dir: &Path) -> Vec<DicomFile> {
    write_study(spec, dir)
        .unwrap_or_else(|e| panic!("phantom {spec:?}: {e}"))
        .iter()
        .map(|p| DicomFile::read(p))
        .collect()
}

// ---------------------------------------------------------------------------
// Waiting and commands

/// Polls `f` every 100 ms until it returns `Some`, or panics after `timeout`
/// with `what` and the last observation `f` left in `last`.
pub fn wait_until<T>(
    timeout: Duration,
    what: impl fmt::Display,
    mut f: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        if let Some(v) = f(&mut last) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            last_lines(&self.stdout, 60),
            last_lines(&self.stderr, 60)
        )
    }
}

/// Runs a command to completion with a deadline (killed and panicking past
/// it); stdout and stderr are captured through files, so nothing blocks.
pub fn run_cmd(cmd: &mut Command, timeout: Duration) -> CmdOutput {
    let out = tempfile::tempfile().expect("tempfile");
    let err = tempfile::tempfile().expect("tempfile");
    let described = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |mut f: File| {
        use std::io::Seek;
        let mut s = String::new();
        f.rewind().expect("rewind");
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).expect("read output");
        s.push_str(&String::from_utf8_lossy(&bytes));
        s
    };
    let (stdout, stderr) = (read(out), read(err));
    match status {
        Some(status) => CmdOutput {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{described} ran past {timeout:?} and was killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
            last_lines(&stdout, 60),
            last_lines(&stderr, 60)
        ),
    }
}

/// A DCMTK (or other) tool with `TCP_NODELAY=1`.
pub fn tool(path: &str) -> Command {
    let mut c = Command::new(path);
    c.env("TCP_NODELAY", "1");
    c
}

/// `python3 -u tests/py/<script>`.
pub fn python(script: &str) -> Command {
    let mut c = Command::new("python3");
    c.arg("-u").arg(py_script(script));
    c.env("PYTHONUNBUFFERED", "1");
    c
}

/// A pydicom bundled test file, by name.
pub fn pydicom_test_file(name: &str) -> PathBuf {
    let out = run_cmd(
        Command::new("python3").arg("-c").arg(format!(
            "from pydicom.data import get_testdata_file; print(get_testdata_file({name:?}))"
        )),
        Duration::from_secs(60),
    );
    let path = PathBuf::from(out.stdout.trim());
    assert!(
        out.status.success() && path.is_file(),
        "pydicom test file {name} not found:\n{out}"
    );
    path
}

/// The last `n` lines of a text.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a file ("" if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    last_lines(&read_lossy(path), n)
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// A child process killed (SIGKILL) when dropped; its log tail is printed if
/// the test is failing.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let f = log_file(log);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Proc {
            name: name.to_string(),
            log: log.to_path_buf(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Panics, with the log, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!(
                    "{} exited unexpectedly ({status}); its log:\n{}",
                    self.name,
                    tail(&self.log, 80)
                );
            }
        }
    }

    pub fn has_exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().expect("try_wait"))
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.has_exited() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        read_lossy(&self.log)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== {} log ({}), last lines =====\n{}\n===== end of {} log =====",
                self.name,
                self.log.display(),
                tail(&self.log, 120),
                self.name
            );
        }
    }
}

// ---------------------------------------------------------------------------
// firstlookd

/// A `[[destinations]]` entry.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub name: String,
    pub ae_title: String,
    pub port: u16,
    pub max_pdu_length: Option<u32>,
}

impl DestinationConfig {
    pub fn new(name: &str, ae_title: &str, port: u16) -> Self {
        DestinationConfig {
            name: name.into(),
            ae_title: ae_title.into(),
            port,
            max_pdu_length: None,
        }
    }
}

/// What goes in the TOML file a test daemon runs with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub port: u16,
    pub max_associations: u32,
    pub scanners: Vec<(String, Vec<String>)>,
    pub destinations: Vec<DestinationConfig>,
    pub batch_size: u32,
    pub high_watermark_percent: u32,
    pub low_watermark_percent: u32,
}

impl DaemonConfig {
    /// A daemon on a free port, with no scanners and no destinations yet.
    pub fn new() -> Self {
        DaemonConfig {
            port: free_port(),
            max_associations: 16,
            scanners: Vec::new(),
            destinations: Vec::new(),
            batch_size: 200,
            high_watermark_percent: 98,
            low_watermark_percent: 95,
        }
    }

    pub fn scanner(mut self, ae_title: &str, hosts: &[&str]) -> Self {
        self.scanners.push((
            ae_title.into(),
            hosts.iter().map(|h| h.to_string()).collect(),
        ));
        self
    }

    pub fn destination(mut self, d: DestinationConfig) -> Self {
        self.destinations.push(d);
        self
    }

    pub fn to_toml(&self, spool_dir: &Path) -> String {
        let mut s = format!(
            "[node]\nae_title = \"{NODE_AE}\"\nlisten = \"127.0.0.1:{}\"\nspool_dir = \"{}\"\n\
             max_associations = {}\nartim_timeout_secs = 30\ndimse_timeout_secs = 120\n\n\
             [spool]\nhigh_watermark_percent = {}\nlow_watermark_percent = {}\nretention_hours = 24\n\n\
             [forward]\nretry_initial_secs = 1\nretry_max_secs = 2\ngive_up_after_hours = 72\n\
             batch_size = {}\nconnect_timeout_secs = 5\ndimse_timeout_secs = 60\n",
            self.port,
            spool_dir.display(),
            self.max_associations,
            self.high_watermark_percent,
            self.low_watermark_percent,
            self.batch_size
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
        }
        s
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self::new()
    }
}

/// `firstlookd status --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub spool_dir: String,
    pub instances: u64,
    pub spool_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_available_bytes: u64,
    pub destinations: Vec<DestinationStatus>,
    pub dead_letters: Vec<DeadLetter>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DestinationStatus {
    pub name: String,
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub oldest_pending_secs: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeadLetter {
    pub destination: String,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub status: Option<u16>,
    pub reason: String,
    pub attempts: u32,
}

impl Status {
    pub fn destination(&self, name: &str) -> &DestinationStatus {
        self.destinations
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no destination {name} in status: {self:?}"))
    }

    pub fn summary(&self) -> String {
        let dests: Vec<String> = self
            .destinations
            .iter()
            .map(|d| {
                format!(
                    "{}: pending {} delivered {} dead {} last_error {:?}",
                    d.name, d.pending, d.delivered, d.dead, d.last_error
                )
            })
            .collect();
        format!(
            "instances {}; {}; dead letters {:?}",
            self.instances,
            dests.join("; "),
            self.dead_letters
        )
    }
}

/// A running `firstlookd --config FILE run` (FIRSTLOOK_LOG=info), killed at drop.
pub struct Daemon {
    pub port: u16,
    pub dir: PathBuf,
    pub spool_dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
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
            dir: dir.to_path_buf(),
            spool_dir,
            config_path,
            log_path: dir.join("firstlookd.log"),
            proc: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let ready_before = self.log_text().matches("firstlookd ready").count();
        let mut cmd = Command::new(firstlookd_bin());
        cmd.arg("--config")
            .arg(&self.config_path)
            .arg("run")
            .env("FIRSTLOOK_LOG", "info")
            .env("NO_COLOR", "1");
        self.proc = Some(Proc::spawn("firstlookd", &mut cmd, &self.log_path));
        let port = self.port;
        wait_until(Duration::from_secs(20), "firstlookd to be ready", |_| {
            self.proc.as_mut().expect("proc").assert_running();
            let ready = self.log_text().matches("firstlookd ready").count() > ready_before;
            (ready && port_open(port)).then_some(())
        });
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

// ---------------------------------------------------------------------------
// DICOM files

/// A Part-10 file: identifiers from its meta group, and its data set bytes.
#[derive(Debug, Clone)]
pub struct DicomFile {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub dataset: Vec<u8>,
}

impl DicomFile {
    /// Reads a Part-10 file; panics with the path if it is not one.
    pub fn read(path: &Path) -> DicomFile {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Self::parse(path, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<DicomFile, String> {
        if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
            return Err("no DICM prefix: not a Part-10 file".into());
        }
        let mut pos = 132;
        let mut meta = BTreeMap::new();
        while pos + 8 <= bytes.len() {
            let group = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
            if group != 0x0002 {
                break;
            }
            let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
            let vr = &bytes[pos + 4..pos + 6];
            let (len, head) = if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT" | b"UC" | b"UR")
            {
                let l = bytes.get(pos + 8..pos + 12).ok_or("meta group truncated")?;
                (
                    u32::from_le_bytes(l.try_into().expect("4 bytes")) as usize,
                    12,
                )
            } else {
                (
                    u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]]) as usize,
                    8,
                )
            };
            let value = bytes
                .get(pos + head..pos + head + len)
                .ok_or("meta element runs past the end")?;
            meta.insert(
                element,
                String::from_utf8_lossy(value)
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            );
            pos += head + len;
        }
        // Cross-check with the daemon's own reader where a group length exists.
        if let Some(offset) = firstlook::spool::part10::dataset_offset(bytes) {
            if offset != pos {
                return Err(format!(
                    "meta group length says the data set starts at {offset}, the elements end at {pos}"
                ));
            }
        }
        let get = |e: u16| {
            meta.get(&e)
                .cloned()
                .ok_or_else(|| format!("meta element (0002,{e:04X}) missing"))
        };
        Ok(DicomFile {
            path: path.to_path_buf(),
            sop_class_uid: get(0x0002)?,
            sop_instance_uid: get(0x0003)?,
            transfer_syntax: get(0x0010)?,
            dataset: bytes[pos..].to_vec(),
        })
    }

    /// Every Part-10 file in `dir` (not recursing; hidden files skipped).
    pub fn read_dir(dir: &Path) -> Vec<DicomFile> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        files.sort();
        files.iter().map(|p| DicomFile::read(p)).collect()
    }
}

/// How many times each SOP Instance UID was received, for those received
/// more than once.
pub fn duplicates(received: &[DicomFile]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in received {
        *counts.entry(r.sop_instance_uid.clone()).or_default() += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

/// Unique SOP Instance UIDs.
pub fn uids(files: &[DicomFile]) -> BTreeSet<String> {
    files.iter().map(|f| f.sop_instance_uid.clone()).collect()
}

/// Checks that every sent instance was received with the same SOP class and
/// transfer syntax and a byte-identical data set (every copy, if several);
/// returns the problems found, one line each.
pub fn compare_delivery(sent: &[DicomFile], received: &[DicomFile]) -> Vec<String> {
    let mut problems = Vec::new();
    for s in sent {
        let copies: Vec<&DicomFile> = received
            .iter()
            .filter(|r| r.sop_instance_uid == s.sop_instance_uid)
            .collect();
        if copies.is_empty() {
            problems.push(format!(
                "{} ({}) never arrived",
                s.sop_instance_uid,
                s.path.display()
            ));
        }
        for r in copies {
            if r.transfer_syntax != s.transfer_syntax {
                problems.push(format!(
                    "{}: transfer syntax {} arrived, {} was sent",
                    s.sop_instance_uid, r.transfer_syntax, s.transfer_syntax
                ));
            }
            if r.sop_class_uid != s.sop_class_uid {
                problems.push(format!(
                    "{}: SOP class {} arrived, {} was sent",
                    s.sop_instance_uid, r.sop_class_uid, s.sop_class_uid
                ));
            }
            if r.dataset != s.dataset {
                let first = r
                    .dataset
                    .iter()
                    .zip(&s.dataset)
                    .position(|(a, b)| a != b)
                    .unwrap_or(r.dataset.len().min(s.dataset.len()));
                problems.push(format!(
                    "{}: data set differs ({} bytes arrived in {}, {} sent from {}; first difference at byte {first})",
                    s.sop_instance_uid,
                    r.dataset.len(),
                    r.path.display(),
                    s.dataset.len(),
                    s.path.display()
                ));
            }
        }
    }
    problems
}

/// Panics listing every problem of [`compare_delivery`].
pub fn assert_delivered_identical(sent: &[DicomFile], received: &[DicomFile]) {
    let problems = compare_delivery(sent, received);
    assert!(
        problems.is_empty(),
        "{} of {} sent instances did not arrive intact ({} files received):\n{}",
        problems.len(),
        sent.len(),
        received.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Peers acting as PACS

/// DCMTK `storescp` as a PACS: accepts every transfer syntax (`+xa`),
/// promiscuous (`-pm`), writes data sets bit-preserved (`+B`) under unique
/// file names (`+uf`) so duplicates are visible.
pub struct StoreScp {
    pub port: u16,
    pub ae_title: String,
    pub out_dir: PathBuf,
    proc: Proc,
}

impl StoreScp {
    pub fn start(dir: &Path, port: u16, extra_args: &[&str]) -> StoreScp {
        let out_dir = dir.join("storescp-received");
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        let mut cmd = tool(STORESCP);
        cmd.args(["--aetitle", "PACS", "+xa", "-pm", "+B", "+uf", "-od"])
            .arg(&out_dir)
            .args(extra_args)
            .arg(port.to_string());
        let mut proc = Proc::spawn("storescp", &mut cmd, &dir.join("storescp.log"));
        wait_until(
            Duration::from_secs(20),
            "storescp to answer C-ECHO",
            |last| {
                proc.assert_running();
                let out = run_cmd(
                    tool(ECHOSCU).args(["-aec", "PACS", "127.0.0.1", &port.to_string()]),
                    Duration::from_secs(10),
                );
                *last = out.to_string();
                out.status.success().then_some(())
            },
        );
        StoreScp {
            port,
            ae_title: "PACS".into(),
            out_dir,
            proc,
        }
    }

    /// Every file written so far.
    pub fn received(&mut self) -> Vec<DicomFile> {
        self.proc.assert_running();
        DicomFile::read_dir(&self.out_dir)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// `tests/py/pacs_scp.py`: a pynetdicom PACS that refuses chosen instances.
pub struct PyPacs {
    pub port: u16,
    pub ae_title: String,
    pub out_dir: PathBuf,
    proc: Proc,
}

impl PyPacs {
    /// `refuse`: (SOP Instance UID, status) pairs answered with that status.
    pub fn start(dir: &Path, port: u16, refuse: &[(&str, u16)]) -> PyPacs {
        let out_dir = dir.join("pypacs-received");
        std::fs::create_dir_all(&out_dir).expect("mkdir");
        let mut cmd = python("pacs_scp.py");
        cmd.arg(port.to_string()).arg("PACS").arg(&out_dir);
        for (uid, status) in refuse {
            cmd.arg("--refuse").arg(format!("{uid}={status:04X}"));
        }
        let mut proc = Proc::spawn("pacs_scp.py", &mut cmd, &dir.join("pypacs.log"));
        wait_until(Duration::from_secs(30), "pacs_scp.py to listen", |last| {
            proc.assert_running();
            *last = tail(&proc.log, 5);
            (proc.log_text().contains("ready") && port_open(port)).then_some(())
        });
        PyPacs {
            port,
            ae_title: "PACS".into(),
            out_dir,
            proc,
        }
    }

    pub fn received(&mut self) -> Vec<DicomFile> {
        self.proc.assert_running();
        DicomFile::read_dir(&self.out_dir)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }
}

/// Orthanc as a PACS, with its own storage and a REST API on loopback.
pub struct Orthanc {
    pub dicom_port: u16,
    pub http_port: u16,
    pub ae_title: String,
    proc: Proc,
}

impl Orthanc {
    pub fn start(dir: &Path) -> Orthanc {
        let dicom_port = free_port();
        let http_port = free_port();
        let storage = dir.join("orthanc-storage");
        std::fs::create_dir_all(&storage).expect("mkdir");
        let config = serde_json::json!({
            "Name": "firstlook-e2e",
            "StorageDirectory": storage,
            "IndexDirectory": storage,
            "DicomAet": "ORTHANC",
            "DicomPort": dicom_port,
            "HttpPort": http_port,
            "HttpServerEnabled": true,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": false,
            "DicomAlwaysAllowStore": true,
            "DicomAlwaysAllowEcho": true,
            "DicomCheckModalityHost": false,
            "StorageCompression": false,
            "Plugins": [],
            "ConcurrentJobs": 1,
            "DicomScpTimeout": 60,
        });
        let config_path = dir.join("orthanc.json");
        std::fs::write(
            &config_path,
            serde_json::to_string_pretty(&config).expect("json"),
        )
        .expect("write orthanc.json");
        let mut cmd = tool(ORTHANC);
        cmd.arg(&config_path);
        let mut proc = Proc::spawn("Orthanc", &mut cmd, &dir.join("orthanc.log"));
        let url = format!("http://127.0.0.1:{http_port}/system");
        wait_until(Duration::from_secs(30), "Orthanc's REST API", |last| {
            proc.assert_running();
            let out = run_cmd(
                Command::new("curl").args(["-s", "-f", &url]),
                Duration::from_secs(10),
            );
            *last = out.to_string();
            (out.status.success() && port_open(dicom_port)).then_some(())
        });
        Orthanc {
            dicom_port,
            http_port,
            ae_title: "ORTHANC".into(),
            proc,
        }
    }

    /// GET a REST path, parsed as JSON.
    pub fn get(&mut self, path: &str) -> serde_json::Value {
        self.proc.assert_running();
        let url = format!("http://127.0.0.1:{}{path}", self.http_port);
        let out = run_cmd(
            Command::new("curl").args(["-s", "-f", &url]),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "GET {url} failed:\n{out}");
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {}", out.stdout))
    }

    /// SOP Instance UIDs of every stored instance.
    pub fn sop_instance_uids(&mut self) -> Vec<String> {
        let v = self.get("/instances?expand");
        v.as_array()
            .unwrap_or_else(|| panic!("/instances?expand is not an array: {v}"))
            .iter()
            .map(|i| {
                i["MainDicomTags"]["SOPInstanceUID"]
                    .as_str()
                    .unwrap_or_else(|| panic!("instance without SOPInstanceUID: {i}"))
                    .to_string()
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Scanners

/// Sends with DCMTK `storescu -v` from calling AE `calling`; returns the output
/// (not asserting success).
pub fn storescu(port: u16, calling: &str, args: &[&str], files: &[&Path]) -> CmdOutput {
    let mut cmd = tool(STORESCU);
    cmd.args(["-v", "-aet", calling, "-aec", NODE_AE])
        .args(args)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files);
    run_cmd(&mut cmd, Duration::from_secs(120))
}

/// The files storescu reported as stored with success, in order, from its
/// `-v` log ("Sending file: X" followed by "Received Store Response (Success)").
pub fn storescu_successes(log: &str) -> Vec<PathBuf> {
    let mut current: Option<PathBuf> = None;
    let mut ok = Vec::new();
    for line in log.lines() {
        if let Some(f) = line.split("Sending file: ").nth(1) {
            current = Some(PathBuf::from(f.trim()));
        } else if line.contains("Received Store Response (Success)") {
            if let Some(f) = current.take() {
                ok.push(f);
            }
        }
    }
    ok
}

/// Sends files or folders with `tests/py/send_pynetdicom.py`; returns the
/// SOP Instance UIDs reported stored, and the whole output.
pub fn pynetdicom_send(
    port: u16,
    calling: &str,
    max_pdu: Option<u32>,
    paths: &[&Path],
) -> (Vec<String>, CmdOutput) {
    let mut cmd = python("send_pynetdicom.py");
    cmd.arg("127.0.0.1")
        .arg(port.to_string())
        .arg(calling)
        .arg(NODE_AE);
    if let Some(n) = max_pdu {
        cmd.arg("--max-pdu").arg(n.to_string());
    }
    cmd.args(paths);
    let out = run_cmd(&mut cmd, Duration::from_secs(120));
    let stored = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("STORED "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    (stored, out)
}

/// One result line of `tests/py/raw_dimse.py`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawResult {
    pub uid: Option<String>,
    pub status: Option<u16>,
    pub comment: Option<String>,
    pub end: Option<String>,
}

/// A step of a raw_dimse.py plan.
#[derive(Debug, Clone, Default)]
pub struct RawStep {
    pub file: PathBuf,
    pub cmd_frag: usize,
    pub data_frag: usize,
    pub pdvs_per_pdu: usize,
    pub mutate: Option<&'static str>,
}

/// Runs `tests/py/raw_dimse.py` with `steps` on one association.
pub fn raw_dimse(
    dir: &Path,
    port: u16,
    calling: &str,
    steps: &[RawStep],
) -> (Vec<RawResult>, CmdOutput) {
    let plan: Vec<serde_json::Value> = steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "file": s.file,
                "cmd_frag": s.cmd_frag,
                "data_frag": s.data_frag,
                "pdvs_per_pdu": s.pdvs_per_pdu.max(1),
                "mutate": s.mutate,
            })
        })
        .collect();
    let plan_path = dir.join(format!("plan-{}.json", free_port()));
    std::fs::write(&plan_path, serde_json::to_string(&plan).expect("json")).expect("write plan");
    let out = run_cmd(
        python("raw_dimse.py")
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(calling)
            .arg(NODE_AE)
            .arg(&plan_path),
        Duration::from_secs(120),
    );
    let results = out
        .stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("raw_dimse.py printed {l:?}: {e}\n{out}"))
        })
        .collect();
    (results, out)
}

/// Outcome of `tests/py/assoc_probe.py`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Probe {
    pub outcome: String,
    pub result: Option<u8>,
    pub source: Option<u8>,
    pub reason: Option<u8>,
    pub echo_status: Option<u16>,
}

/// Tries one association with pynetdicom and reports how it ended.
pub fn probe_association(port: u16, calling: &str, called: &str) -> Probe {
    let out = run_cmd(
        python("assoc_probe.py")
            .arg("127.0.0.1")
            .arg(port.to_string())
            .arg(calling)
            .arg(called),
        Duration::from_secs(60),
    );
    let line = out
        .stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("assoc_probe.py printed no result:\n{out}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("assoc_probe.py: {e}:\n{out}"))
}

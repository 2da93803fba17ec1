//! Peers acting as scanners: DCMTK `storescu`, and the pynetdicom scripts
//! `send_pynetdicom.py`, `raw_dimse.py` and `assoc_probe.py`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::paths::free_port;
use crate::process::{last_lines, python, run_cmd, tool, CmdOutput};
use crate::{ECHOSCU, NODE_AE, STORESCU};

/// Sends with DCMTK `storescu -v` from calling AE `calling`; returns the output
/// (not asserting success).
/// DCMTK echoscu (C-ECHO) from `calling` to `called` on loopback.
pub fn echoscu(port: u16, calling: &str, called: &str) -> CmdOutput {
    run_cmd(
        tool(ECHOSCU)
            .args(["-v", "-aet", calling, "-aec", called, "127.0.0.1"])
            .arg(port.to_string()),
        Duration::from_secs(30),
    )
}

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

/// When each C-STORE response arrived (ms since the epoch), read from
/// storescu's `-v` log as it is written; panics unless all succeeded.
pub fn storescu_timed(port: u16, calling: &str, files: &[&Path]) -> Vec<u64> {
    use std::io::BufRead;
    let mut child = tool(STORESCU)
        .args(["-v", "-aet", calling, "-aec", NODE_AE])
        .arg("127.0.0.1")
        .arg(port.to_string())
        .args(files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("storescu");
    let (tx, rx) = std::sync::mpsc::channel::<(u64, String)>();
    let readers: Vec<_> = [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ]
    .into_iter()
    .map(|r| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
                let _ = tx.send((epoch_ms(), line));
            }
        })
    })
    .collect();
    drop(tx);
    let mut log = String::new();
    let mut times = Vec::new();
    for (at, line) in rx.iter() {
        if line.contains("Received Store Response (Success)") {
            times.push(at);
        }
        log.push_str(&line);
        log.push('\n');
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().expect("storescu exit");
    assert!(
        status.success() && times.len() == files.len(),
        "storescu stored {} of {}:\n{}",
        times.len(),
        files.len(),
        last_lines(&log, 40)
    );
    times
}

/// Now, in ms since the epoch (the browser's `Date.now()` clock).
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

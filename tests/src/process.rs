//! Child processes: commands run to completion with a deadline, and
//! long-running processes owned by guards that kill them on drop and print
//! their log tails when a test is failing.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::paths::py_script;

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

    /// stdout and stderr, one after the other.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
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

/// The last `n` lines of a text.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of a file ("" if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    last_lines(&read_lossy(path), n)
}

pub(crate) fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

pub(crate) fn log_file(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
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

/// The values of one field of `/proc/<pid>/status` (e.g. `Uid:`, `VmHWM:`).
pub fn proc_status(pid: u32, field: &str) -> Vec<String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

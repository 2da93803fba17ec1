//! Headless Debian chromium, driven by `tests/browser/driver.mjs`
//! (playwright-core): one JSON command per line, one JSON answer per line.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

/// `tests/browser/`, where `npm ci` put playwright-core.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// One page in one headless chromium; killed at drop.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<String>,
}

impl Browser {
    pub fn start() -> Browser {
        let dir = browser_dir();
        assert!(
            dir.join("node_modules/playwright-core").is_dir(),
            "playwright-core is not installed in {}: run scripts/install-test-deps",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("driver.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (Node.js) runs the browser driver");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Browser {
            child,
            stdin,
            answers,
        }
    }

    /// Sends one command; its value, or the driver's error.
    pub fn try_cmd(&mut self, c: Value) -> Result<Value, String> {
        let timeout = c
            .get("timeout_ms")
            .and_then(Value::as_u64)
            .unwrap_or(10_000);
        writeln!(self.stdin, "{c}").map_err(|e| format!("the driver is gone: {e}"))?;
        let line = self
            .answers
            .recv_timeout(Duration::from_millis(timeout) + Duration::from_secs(30))
            .map_err(|_| format!("no answer from the browser driver to {c}"))?;
        let v: Value = serde_json::from_str(&line).map_err(|e| format!("{e}: {line}"))?;
        if v["ok"] == json!(true) {
            Ok(v["value"].clone())
        } else {
            Err(v["error"].as_str().unwrap_or("?").to_string())
        }
    }

    /// Sends one command; panics (with the page's console) if it fails.
    pub fn cmd(&mut self, c: Value) -> Value {
        match self.try_cmd(c.clone()) {
            Ok(v) => v,
            Err(e) => {
                let console = self.try_cmd(json!({"cmd": "console"})).unwrap_or_default();
                panic!("browser command {c} failed: {e}\npage console: {console}")
            }
        }
    }

    pub fn goto(&mut self, url: &str) {
        self.cmd(json!({"cmd": "goto", "url": url}));
    }

    pub fn fill(&mut self, selector: &str, value: &str) {
        self.cmd(json!({"cmd": "fill", "selector": selector, "value": value}));
    }

    pub fn click(&mut self, selector: &str) {
        self.cmd(json!({"cmd": "click", "selector": selector}));
    }

    pub fn select(&mut self, selector: &str, value: &str) {
        self.cmd(json!({"cmd": "select", "selector": selector, "value": value}));
    }

    pub fn wait_visible(&mut self, selector: &str, timeout: Duration) {
        self.cmd(
            json!({"cmd": "wait", "selector": selector, "timeout_ms": timeout.as_millis() as u64}),
        );
    }

    /// Runs `function` (JS source) on `arg` in the page.
    pub fn eval(&mut self, function: &str, arg: Value) -> Value {
        self.cmd(json!({"cmd": "eval", "expression": function, "arg": arg}))
    }

    /// Waits until `function(arg)` is truthy in the page; its value.
    pub fn wait_for(&mut self, function: &str, arg: Value, timeout: Duration) -> Value {
        self.cmd(
            json!({"cmd": "wait_function", "expression": function, "arg": arg,
                        "timeout_ms": timeout.as_millis() as u64}),
        )
    }

    /// The page, or the first element matching `selector`, as PNG.
    pub fn screenshot(&mut self, path: &Path, selector: Option<&str>) {
        let mut c = json!({"cmd": "screenshot", "path": path});
        if let Some(s) = selector {
            c["selector"] = json!(s);
        }
        self.cmd(c);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"cmd": "quit"}));
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! systemd's side of `Type=notify`, for tests: a Unix datagram socket named
//! in the daemon's `NOTIFY_SOCKET`, keeping every line with the time it came.

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One notification line, and (for `READY=1`) whether `probe_port` accepted
/// a connection the moment it arrived.
#[derive(Debug, Clone)]
pub struct Notification {
    pub at: Instant,
    pub line: String,
    pub port_accepted: Option<bool>,
}

pub struct NotifySocket {
    pub path: PathBuf,
    seen: Arc<Mutex<Vec<Notification>>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifySocket {
    /// Binds `dir/notify.sock`; on `READY=1` it connects to `probe_port`.
    pub fn bind(dir: &Path, probe_port: u16) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
            move || {
                let mut buf = vec![0u8; 65536];
                while !done.load(Ordering::Relaxed) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let at = Instant::now();
                    for line in String::from_utf8_lossy(&buf[..n]).lines() {
                        let port_accepted = (line == "READY=1").then(|| {
                            TcpStream::connect_timeout(
                                &([127, 0, 0, 1], probe_port).into(),
                                Duration::from_millis(200),
                            )
                            .is_ok()
                        });
                        seen.lock().unwrap().push(Notification {
                            at,
                            line: line.to_string(),
                            port_accepted,
                        });
                    }
                }
            }
        });
        NotifySocket {
            path,
            seen,
            done,
            thread: Some(thread),
        }
    }

    pub fn all(&self) -> Vec<Notification> {
        self.seen.lock().unwrap().clone()
    }

    /// When each line equal to `line` came.
    pub fn times(&self, line: &str) -> Vec<Instant> {
        self.all()
            .into_iter()
            .filter(|n| n.line == line)
            .map(|n| n.at)
            .collect()
    }

    /// The first line starting with `prefix`, waiting up to `timeout`.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> Notification {
        crate::wait_until(timeout, format!("a notification {prefix}…"), |last| {
            let all = self.all();
            *last = format!("{:?}", all.iter().map(|n| &n.line).collect::<Vec<_>>());
            all.into_iter().find(|n| n.line.starts_with(prefix))
        })
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

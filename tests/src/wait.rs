//! Waiting with deadlines: polling until a condition holds, and whether a
//! port accepts connections yet.

use std::fmt;
use std::net::TcpStream;
use std::time::{Duration, Instant};

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

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

//! Failpoints for the fault-injection tests. They exist only in builds with
//! the `failpoints` feature (README's test command); without it `hit` is
//! `None` and compiles away. Only code in the same process can arm them,
//! or, for a test that runs the binary, `FIRSTLOOK_FAILPOINTS` read at its
//! start.

/// What an armed failpoint does when reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with this errno (ENOSPC, EIO, ...).
    Errno(i32),
    /// Half the bytes are written, then the write fails.
    ShortWrite,
    /// SQLite answers with this primary result code (SQLITE_BUSY, SQLITE_FULL).
    Sqlite(i32),
    /// The step never returns (a lost wake-up, a deadlock).
    Hang,
}

impl Fault {
    pub fn io_error(self) -> std::io::Error {
        match self {
            Fault::Errno(e) => std::io::Error::from_raw_os_error(e),
            Fault::ShortWrite => {
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short write (failpoint)")
            }
            Fault::Sqlite(code) => {
                std::io::Error::other(format!("SQLite error {code} (failpoint)"))
            }
            Fault::Hang => std::io::Error::other("hang (failpoint)"),
        }
    }

    pub fn sqlite_error(self) -> rusqlite::Error {
        let code = match self {
            Fault::Sqlite(code) => code,
            _ => rusqlite::ffi::SQLITE_IOERR,
        };
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some("failpoint".into()))
    }
}

#[cfg(feature = "failpoints")]
mod armed {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard};

    use super::Fault;

    static ANY: AtomicBool = AtomicBool::new(false);
    static ARMED: Mutex<Vec<(&'static str, Fault, u32)>> = Mutex::new(Vec::new());
    /// Tests that arm failpoints run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    /// Disarms every failpoint when dropped.
    pub struct Disarm {
        _serial: MutexGuard<'static, ()>,
    }

    impl Disarm {
        /// Arms `name` (too) to fail its next `times` passes with `fault`.
        pub fn and(self, name: &'static str, fault: Fault, times: u32) -> Disarm {
            ARMED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((name, fault, times));
            ANY.store(true, Ordering::SeqCst);
            self
        }

        /// Passes of `name` still to fail (0 once every armed one was reached).
        pub fn left(&self, name: &str) -> u32 {
            ARMED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(n, _, _)| *n == name)
                .map(|(_, _, t)| t)
                .sum()
        }
    }

    impl Drop for Disarm {
        fn drop(&mut self) {
            ARMED.lock().unwrap_or_else(|e| e.into_inner()).clear();
            ANY.store(false, Ordering::SeqCst);
        }
    }

    /// Arms `name` to fail its next `times` passes with `fault`.
    pub fn arm(name: &'static str, fault: Fault, times: u32) -> Disarm {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        Disarm { _serial: serial }.and(name, fault, times)
    }

    /// Arms what `FIRSTLOOK_FAILPOINTS` names, `name=hang` separated by
    /// commas, for the rest of the process; returns the names armed.
    pub fn arm_from_env() -> Result<Vec<String>, String> {
        let Ok(spec) = std::env::var("FIRSTLOOK_FAILPOINTS") else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for item in spec.split(',').filter(|i| !i.is_empty()) {
            let (name, fault) = item
                .split_once('=')
                .ok_or_else(|| format!("FIRSTLOOK_FAILPOINTS: {item}: expected name=hang"))?;
            if fault != "hang" {
                return Err(format!(
                    "FIRSTLOOK_FAILPOINTS: {item}: only `hang` can be armed from outside"
                ));
            }
            let name: &'static str = Box::leak(name.to_string().into_boxed_str());
            ARMED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((name, Fault::Hang, u32::MAX));
            ANY.store(true, Ordering::SeqCst);
            names.push(name.to_string());
        }
        Ok(names)
    }

    pub fn hit(name: &str) -> Option<Fault> {
        if !ANY.load(Ordering::Relaxed) {
            return None;
        }
        let mut armed = ARMED.lock().unwrap_or_else(|e| e.into_inner());
        let (_, fault, times) = armed.iter_mut().find(|(n, _, t)| *n == name && *t > 0)?;
        *times -= 1;
        tracing::warn!(message = "failpoint hit", name, fault = ?fault);
        Some(*fault)
    }
}

#[cfg(feature = "failpoints")]
pub use armed::{arm, arm_from_env, hit, Disarm};

/// Never fails: this build has no failpoints.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> Option<Fault> {
    None
}

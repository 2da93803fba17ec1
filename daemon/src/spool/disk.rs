//! Disk watermarks with hysteresis: refuse above the high mark, resume
//! below the low mark.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Space on the spool's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub total_bytes: u64,
    /// Blocks not free to anyone (`f_blocks - f_bfree`).
    pub used_bytes: u64,
    pub available_bytes: u64,
}

impl DiskUsage {
    /// Used share of what the daemon could ever write, as `df` prints it:
    /// blocks reserved for root count neither as used nor as available.
    pub fn used_percent(&self) -> f64 {
        let usable = self.used_bytes.saturating_add(self.available_bytes);
        if usable == 0 {
            return 100.0;
        }
        100.0 * self.used_bytes as f64 / usable as f64
    }
}

pub fn usage(path: &Path) -> std::io::Result<DiskUsage> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let frag = st.fragment_size() as u64;
    Ok(DiskUsage {
        total_bytes: st.blocks() as u64 * frag,
        used_bytes: (st.blocks() as u64).saturating_sub(st.blocks_free() as u64) * frag,
        // f_bavail: what an unprivileged writer may still use.
        available_bytes: st.blocks_available() as u64 * frag,
    })
}

/// Decides whether ingest must refuse, from successive readings.
#[derive(Debug)]
pub struct Watermarks {
    path: PathBuf,
    high: f64,
    low: f64,
    refusing: AtomicBool,
}

impl Watermarks {
    pub fn new(path: PathBuf, high_percent: u64, low_percent: u64) -> Self {
        Watermarks {
            path,
            high: high_percent as f64,
            low: low_percent as f64,
            refusing: AtomicBool::new(false),
        }
    }

    /// Pure decision: given the state so far and a reading, refuse or not.
    pub fn decide(refusing: bool, used_percent: f64, high: f64, low: f64) -> bool {
        if refusing {
            used_percent >= low
        } else {
            used_percent >= high
        }
    }

    /// Takes a reading and updates the state; a failed reading refuses.
    pub fn check(&self) -> bool {
        let was = self.refusing.load(Ordering::Relaxed);
        let now = match usage(&self.path) {
            Ok(u) => Self::decide(was, u.used_percent(), self.high, self.low),
            Err(_) => true,
        };
        if now != was {
            if now {
                tracing::warn!(
                    message = "spool disk past the high watermark: refusing new images",
                    high_percent = self.high
                );
            } else {
                tracing::info!(
                    message = "spool disk back under the low watermark: accepting images",
                    low_percent = self.low
                );
            }
            self.refusing.store(now, Ordering::Relaxed);
        }
        now
    }

    pub fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_between_low_and_high() {
        let table = [
            (false, 50.0, false),
            (false, 89.9, false),
            (false, 90.0, true),
            (true, 89.0, true),
            (true, 85.0, true),
            (true, 84.9, false),
            (false, 99.0, true),
        ];
        for (was, used, expect) in table {
            assert_eq!(
                Watermarks::decide(was, used, 90.0, 85.0),
                expect,
                "{was} {used}"
            );
        }
    }

    #[test]
    fn reading_a_real_filesystem_works() {
        let u = usage(Path::new(".")).unwrap();
        assert!(u.total_bytes > 0 && u.available_bytes <= u.total_bytes);
        assert!(u.used_bytes <= u.total_bytes);
        assert!((0.0..=100.0).contains(&u.used_percent()));
    }

    #[test]
    fn root_reserve_counts_as_neither_used_nor_available() {
        // 100 blocks, 10 reserved for root, 45 used, 45 available: half full, as df says.
        let u = DiskUsage {
            total_bytes: 100,
            used_bytes: 45,
            available_bytes: 45,
        };
        assert_eq!(u.used_percent(), 50.0);
        let full = DiskUsage {
            total_bytes: 100,
            used_bytes: 90,
            available_bytes: 0,
        };
        assert_eq!(full.used_percent(), 100.0);
    }
}

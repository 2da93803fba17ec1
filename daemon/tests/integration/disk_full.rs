//! A spool on a small file system: past the high watermark C-STOREs get
//! 0xA700 and new associations are refused; nothing acknowledged is lost;
//! once space is freed ingest resumes by itself. Needs root (it mounts a
//! tmpfs), as the test command does for its packages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use firstlook::forward::scu::ScuError;
use firstlook::status;

use crate::common::{start_daemon, CtSeries};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system at `dir` with a ballast file until nothing fits,
/// then gives `leave` bytes back. (Measuring the free space first and
/// writing that much races with the daemon reserving its next segment.)
fn fill_leaving(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![1u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    f.set_len(written.saturating_sub(leave)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_with_a700_loses_nothing_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("small"), "24m");
    let ballast = fs.0.join("ballast");
    std::fs::write(&ballast, vec![1u8; 10 * 1024 * 1024]).unwrap();
    let spool = fs.0.join("spool");
    let d = start_daemon(&spool, 80, 60).await;

    let series = CtSeries::new(31, 40);
    let mut scu = series.connect(&d).await.unwrap();
    let mut acknowledged = 0;
    let mut refused = None;
    for i in 0..series.instances.len() {
        let (status, comment) = series.store(&mut scu, i).await;
        if status == 0 {
            acknowledged += 1;
        } else {
            refused = Some((status, comment));
            break;
        }
    }
    scu.release().await;
    let (status, comment) = refused.expect("a 24 MiB file system filled up without a refusal");
    assert_eq!(status, 0xA700, "{comment:?}");
    assert!(acknowledged > 0);
    assert_eq!(
        status::report(&spool).unwrap().instances,
        acknowledged,
        "every acknowledged instance is held, nothing else"
    );

    // While full, new associations are refused as a transient local limit.
    tokio::time::sleep(Duration::from_millis(600)).await;
    match series.connect(&d).await {
        Err(ScuError::Rejected { permanent, reason }) => {
            assert!(!permanent);
            assert_eq!(reason, "local limit exceeded");
        }
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("association accepted on a full disk"),
    }

    // Space comes back: ingest resumes without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut scu = loop {
        match series.connect(&d).await {
            Ok(scu) => break scu,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused after space was freed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (status, _) = series.store(&mut scu, acknowledged as usize).await;
    assert_eq!(status, 0);
    scu.release().await;
    d.stop().await;
    assert_eq!(status::report(&spool).unwrap().instances, acknowledged + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_fails_is_answered_a700_never_success() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("small"), "8m");
    let spool = fs.0.join("spool");
    // The watermark is set so high that only the write itself can fail.
    let d = start_daemon(&spool, 99, 98).await;
    let series = CtSeries::new(32, 12);
    let mut scu = series.connect(&d).await.unwrap();

    let (status, _) = series.store(&mut scu, 0).await;
    assert_eq!(status, 0);

    // Leave less room than one image on the file system; what the segment
    // already reserved is still usable, so keep sending until a write fails.
    let ballast = fill_leaving(&fs.0, 200 * 1024);
    let mut acknowledged = 1;
    let mut next = 1;
    let refused = loop {
        assert!(next < 11, "the file system never filled up");
        let (status, comment) = series.store(&mut scu, next).await;
        next += 1;
        if status == 0 {
            acknowledged += 1;
        } else {
            break (status, comment);
        }
    };
    assert_eq!(
        refused.0, 0xA700,
        "a write that failed was answered {refused:?}"
    );
    assert_ne!(
        refused.1.as_deref(),
        Some("spool disk past its high watermark"),
        "the refusal must come from the failed write itself"
    );

    // Room again: the same association goes on storing.
    std::fs::remove_file(&ballast).unwrap();
    let (status, comment) = series.store(&mut scu, next).await;
    assert_eq!(status, 0, "{comment:?}");
    scu.release().await;
    d.stop().await;
    let held = status::report(&spool).unwrap();
    assert_eq!(
        held.instances,
        acknowledged + 1,
        "exactly the acknowledged instances are held"
    );
}

//! A spool on a small file system: past the high watermark C-STOREs get
//! 0xA700 and new associations are refused; nothing acknowledged is lost;
//! once space is freed ingest resumes by itself. Needs root (it mounts a
//! tmpfs), as the test command does for its packages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use firstlook::config::Config;
use firstlook::daemon::Daemon;
use firstlook::dimse::Priority;
use firstlook::forward::scu::{ScuError, ScuOptions, StoreScu};
use firstlook::spool::part10;
use firstlook::status;
use firstlook_phantom::{Kind, StudySpec};

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

fn scu_options(d: &Daemon) -> ScuOptions {
    ScuOptions {
        address: d.listen_addr.to_string(),
        calling_ae: "CT01".into(),
        called_ae: "FIRSTLOOK".into(),
        max_pdu: 65536,
        connect_timeout: Duration::from_secs(5),
        dimse_timeout: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_with_a700_loses_nothing_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("small"), "24m");
    let ballast = fs.0.join("ballast");
    std::fs::write(&ballast, vec![1u8; 10 * 1024 * 1024]).unwrap();
    let spool = fs.0.join("spool");
    let text = format!(
        "[node]\nae_title = \"FIRSTLOOK\"\nlisten = \"127.0.0.1:0\"\nspool_dir = \"{}\"\n\
         [spool]\nhigh_watermark_percent = 80\nlow_watermark_percent = 60\n\
         [[scanners]]\nae_title = \"CT01\"\nhosts = [\"127.0.0.1\"]\n",
        spool.display()
    );
    let d = Daemon::start(Config::parse(&text, "test.toml").unwrap())
        .await
        .unwrap();

    let instances =
        firstlook_phantom::generate(&StudySpec::new(Kind::Ct, 31).with_count(40)).unwrap();
    let class = instances[0].sop_class_uid.clone();
    let ts = instances[0].transfer_syntax_uid.clone();
    let contexts = [(class.clone(), vec![ts.clone()])];
    let (mut scu, _) = StoreScu::connect(&scu_options(&d), &contexts)
        .await
        .unwrap();
    let (ctx, _) = scu.context_for(&class, &[ts.as_str()]).unwrap();
    let mut acknowledged = 0;
    let mut refused = None;
    for i in &instances {
        let at = part10::dataset_offset(&i.file_bytes).unwrap();
        let (status, comment) = scu
            .store(
                ctx,
                &class,
                &i.sop_instance_uid,
                &i.file_bytes[at..],
                Priority::Medium,
            )
            .await
            .unwrap();
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
    match StoreScu::connect(&scu_options(&d), &contexts).await {
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
        match StoreScu::connect(&scu_options(&d), &contexts).await {
            Ok((scu, _)) => break scu,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "still refused after space was freed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let next = &instances[acknowledged as usize];
    let at = part10::dataset_offset(&next.file_bytes).unwrap();
    let (status, _) = scu
        .store(
            ctx,
            &class,
            &next.sop_instance_uid,
            &next.file_bytes[at..],
            Priority::Medium,
        )
        .await
        .unwrap();
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
    let text = format!(
        "[node]\nae_title = \"FIRSTLOOK\"\nlisten = \"127.0.0.1:0\"\nspool_dir = \"{}\"\n\
         [spool]\nhigh_watermark_percent = 99\nlow_watermark_percent = 98\n\
         [[scanners]]\nae_title = \"CT01\"\nhosts = [\"127.0.0.1\"]\n",
        spool.display()
    );
    let d = Daemon::start(Config::parse(&text, "test.toml").unwrap())
        .await
        .unwrap();
    let instances =
        firstlook_phantom::generate(&StudySpec::new(Kind::Ct, 32).with_count(12)).unwrap();
    let class = instances[0].sop_class_uid.clone();
    let ts = instances[0].transfer_syntax_uid.clone();
    let contexts = [(class.clone(), vec![ts.clone()])];
    let (mut scu, _) = StoreScu::connect(&scu_options(&d), &contexts)
        .await
        .unwrap();
    let (ctx, _) = scu.context_for(&class, &[ts.as_str()]).unwrap();
    let dataset = |i: usize| {
        let inst = &instances[i];
        let at = part10::dataset_offset(&inst.file_bytes).unwrap();
        (
            inst.sop_instance_uid.clone(),
            inst.file_bytes[at..].to_vec(),
        )
    };

    let (uid, data) = dataset(0);
    let (status, _) = scu
        .store(ctx, &class, &uid, &data, Priority::Medium)
        .await
        .unwrap();
    assert_eq!(status, 0);

    // Leave less room than one image on the file system; what the segment
    // already reserved is still usable, so keep sending until a write fails.
    let free = firstlook::spool::usage(&fs.0).unwrap().available_bytes;
    let ballast = fs.0.join("ballast");
    std::fs::write(
        &ballast,
        vec![1u8; (free as usize).saturating_sub(200 * 1024)],
    )
    .unwrap();
    let mut acknowledged = 1;
    let mut next = 1;
    let refused = loop {
        assert!(next < 11, "the file system never filled up");
        let (uid, data) = dataset(next);
        next += 1;
        let (status, comment) = scu
            .store(ctx, &class, &uid, &data, Priority::Medium)
            .await
            .unwrap();
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
    let (uid, data) = dataset(next);
    let (status, comment) = scu
        .store(ctx, &class, &uid, &data, Priority::Medium)
        .await
        .unwrap();
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

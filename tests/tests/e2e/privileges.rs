//! Least privilege: started as root to bind a privileged DICOM port,
//! firstlookd gives its spool to `node.run_as`, becomes that user, and goes
//! on receiving, judging and forwarding.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use firstlook_e2e::*;

/// A privileged port nobody listens on (binding it needs root).
fn privileged_port() -> u16 {
    (700..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port under 1024")
}

fn ids(pid: u32, field: &str) -> Vec<u32> {
    proc_status(pid, field)
        .iter()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[test]
fn started_as_root_it_binds_port_under_1024_then_runs_as_nobody() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test starts firstlookd as root: run the suite as root (CI does, as scripts/test says)"
    );
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let dir = scratch("privileges");
    // Only the spool is the daemon's: its parents need only be traversable.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let mut cfg = DaemonConfig::ct01_to_pacs(pacs.port);
    cfg.port = privileged_port();
    cfg.node = "run_as = \"nobody\"\n".into();
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let pid = daemon.pid();
    assert_eq!(
        ids(pid, "Uid:"),
        vec![nobody.uid.as_raw(); 4],
        "real, effective, saved, fs uid"
    );
    assert_eq!(ids(pid, "Gid:"), vec![nobody.gid.as_raw(); 4]);
    assert_eq!(ids(pid, "Groups:"), vec![nobody.gid.as_raw()]);

    let files = phantom(
        &StudySpec::new(Kind::Ct, 4401)
            .with_count(3)
            .with_size(64, 64),
        &dir.path().join("ct"),
    );
    let out = storescu(
        daemon.port,
        "CT01",
        &["+sd"],
        &[dir.path().join("ct").as_path()],
    );
    assert!(out.status.success(), "{out}");
    daemon.wait_settled(3, Duration::from_secs(60));
    assert_delivered_identical(&files, &pacs.received());
    for entry in std::fs::read_dir(daemon.spool_dir()).unwrap() {
        let entry = entry.unwrap();
        assert_eq!(
            entry.metadata().unwrap().uid(),
            nobody.uid.as_raw(),
            "{} belongs to the daemon's user",
            entry.path().display()
        );
    }
    let log = daemon.log_text();
    assert!(
        log.contains("running as an unprivileged user"),
        "{}",
        daemon.log_tail(20)
    );
    // Writes are confined to the spool by the kernel (Landlock), which
    // also means no new privileges through exec.
    assert!(
        log.contains("filesystem writes confined"),
        "{}",
        daemon.log_tail(20)
    );
    assert_eq!(proc_status(pid, "NoNewPrivs:"), vec!["1".to_string()]);
}

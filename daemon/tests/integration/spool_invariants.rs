//! The spool's invariants, exercised through a real daemon on loopback with
//! our own SCU (interop with other stacks is proven in tests/ against DCMTK,
//! Orthanc and pynetdicom).

use std::path::Path;
use std::time::Duration;

use firstlook::config::{Bounded, Config};
use firstlook::daemon::Daemon;
use firstlook::dimse::Priority;
use firstlook::forward::scu::{ScuError, ScuOptions, StoreScu};
use firstlook::spool::part10;
use firstlook::status;
use firstlook_phantom::{Instance, Kind, StudySpec};

fn config(spool: &Path, extra: &str) -> Config {
    let text = format!(
        r#"
[node]
ae_title = "FIRSTLOOK"
listen = "127.0.0.1:0"
spool_dir = "{}"

[[scanners]]
ae_title = "*"
hosts = ["127.0.0.1"]

# The spine alone: no triage, so no results of the box's own in the spool.
[triage]
enabled = false
{extra}
"#,
        spool.display()
    );
    let mut c = Config::parse(&text, "test.toml").expect("test config");
    if !extra.contains("watermark") {
        // These tests are about the spool, not about how full the host's disk is.
        c.spool.high_watermark_percent = Bounded::new(99).unwrap();
        c.spool.low_watermark_percent = Bounded::new(98).unwrap();
    }
    c
}

fn ct(seed: u64, n: usize) -> Vec<Instance> {
    firstlook_phantom::generate(
        &StudySpec::new(Kind::Ct, seed)
            .with_count(n)
            .with_size(64, 64),
    )
    .unwrap()
}

fn dataset(i: &Instance) -> &[u8] {
    &i.file_bytes[part10::dataset_offset(&i.file_bytes).unwrap()..]
}

async fn connect(d: &Daemon, instances: &[Instance]) -> Result<StoreScu, ScuError> {
    let opts = ScuOptions {
        address: d.listen_addr.to_string(),
        calling_ae: "TESTSCU".into(),
        called_ae: "FIRSTLOOK".into(),
        max_pdu: 16384,
        connect_timeout: Duration::from_secs(5),
        dimse_timeout: Duration::from_secs(30),
        tls: None,
    };
    let i = &instances[0];
    StoreScu::connect(
        &opts,
        &[(i.sop_class_uid.clone(), vec![i.transfer_syntax_uid.clone()])],
    )
    .await
    .map(|(s, _)| s)
}

async fn send(scu: &mut StoreScu, i: &Instance, bytes: &[u8]) -> (u16, Option<String>) {
    let (ctx, _) = scu
        .context_for(&i.sop_class_uid, &[i.transfer_syntax_uid.as_str()])
        .unwrap();
    scu.store(
        ctx,
        &i.sop_class_uid,
        &i.sop_instance_uid,
        bytes,
        Priority::Medium,
    )
    .await
    .unwrap()
}

async fn send_all(d: &Daemon, instances: &[Instance]) {
    let mut scu = connect(d, instances).await.unwrap();
    for i in instances {
        assert_eq!(send(&mut scu, i, dataset(i)).await.0, 0x0000);
    }
    scu.release().await;
}

fn segment_files(spool: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(spool.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Bytes up to the last non-zero one in every segment (spares are zeros).
fn used_bytes(spool: &Path) -> usize {
    segment_files(spool)
        .iter()
        .map(|p| {
            let b = std::fs::read(p).unwrap();
            b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_instances_survive_losing_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let instances = ct(1, 5);
    let d = Daemon::start(config(&spool, "")).await.unwrap();
    send_all(&d, &instances).await;
    d.stop().await;
    // Stopped means the index connection has closed: its last checkpoint
    // done and its WAL removed. One still closing would remove the WAL of the
    // next daemon's new index by name, leaving readers a short read.
    assert!(
        !spool.join("index.sqlite-wal").exists(),
        "the index is still open after stop"
    );
    for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(spool.join(name));
    }
    let d = Daemon::start(config(&spool, "")).await.unwrap();
    assert_eq!(d.recovery.reindexed, 5, "{:?}", d.recovery);
    assert_eq!(status::report(&spool).unwrap().instances, 5);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_record_is_ignored_and_the_segment_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let d = Daemon::start(config(&spool, "")).await.unwrap();
    send_all(&d, &ct(2, 3)).await;
    d.stop().await;
    // The segment holding the records (a spare made ahead of need is all zeros).
    let seg = segment_files(&spool)
        .into_iter()
        .find(|p| std::fs::read(p).unwrap().iter().any(|&b| b != 0))
        .unwrap();
    let intact = std::fs::read(&seg).unwrap();
    // A crash in the middle of the next record: its head and part of its body
    // landed after the last complete one, before the preallocated zeros.
    let end = intact.iter().rposition(|&b| b != 0).unwrap() + 1;
    let mut torn = intact.clone();
    torn[end..end + 3000].copy_from_slice(&intact[..3000]);
    std::fs::write(&seg, &torn).unwrap();

    let d = Daemon::start(config(&spool, "")).await.unwrap();
    assert!(d.recovery.torn_bytes > 2000, "{:?}", d.recovery);
    assert_eq!(status::report(&spool).unwrap().instances, 3);
    send_all(&d, &ct(3, 2)).await;
    d.stop().await;
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        torn,
        "recovery must not touch a segment's bytes"
    );
    assert_eq!(status::report(&spool).unwrap().instances, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bytes_twice_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let d = Daemon::start(config(&spool, "")).await.unwrap();
    let instances = ct(4, 3);
    send_all(&d, &instances).await;
    let size_before = used_bytes(&spool);
    send_all(&d, &instances).await;
    d.stop().await;
    let size_after = used_bytes(&spool);
    assert_eq!(status::report(&spool).unwrap().instances, 3);
    assert_eq!(
        size_before, size_after,
        "a duplicate must not leave a second copy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_bytes_under_one_uid_keep_both_and_forward_only_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    // The sink is down while both versions arrive, so forwarding cannot
    // race the second one. Its port is held meanwhile by a listener that
    // never answers (attempts time out after a second), so that no other
    // test's peer can take it and accept the first version.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let spool = dir.path().join("spool");
    let dest = format!(
        "[forward]\nretry_initial_secs = 1\nretry_max_secs = 1\nconnect_timeout_secs = 1\ndimse_timeout_secs = 1\n[[destinations]]\nname = \"sink\"\nae_title = \"SINK\"\naddress = \"127.0.0.1:{port}\"\n"
    );
    let instances = ct(5, 1);
    let i = &instances[0];
    let mut changed = dataset(i).to_vec();
    let last = changed.len() - 1;
    changed[last] ^= 0xFF;

    let d = Daemon::start(config(&spool, &dest)).await.unwrap();
    let mut scu = connect(&d, &instances).await.unwrap();
    assert_eq!(send(&mut scu, i, dataset(i)).await.0, 0);
    assert_eq!(send(&mut scu, i, &changed).await.0, 0);
    scu.release().await;
    assert_eq!(status::report(&spool).unwrap().instances, 2);

    let sink_spool = dir.path().join("sink");
    let mut sink_cfg = config(&sink_spool, "");
    sink_cfg.node.ae_title = "SINK".to_string().try_into().unwrap();
    sink_cfg.node.listen = format!("127.0.0.1:{port}").parse().unwrap();
    drop(holder);
    let sink = Daemon::start(sink_cfg).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = status::report(&spool).unwrap();
        if r.destinations.first().is_some_and(|q| q.pending == 0) {
            assert_eq!(r.destinations[0].delivered, 1, "{r}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not forwarded: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
    assert_eq!(status::report(&sink_spool).unwrap().instances, 1);
    sink.stop().await;
    let held: Vec<u8> = segment_files(&sink_spool)
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect();
    let tail = &changed[changed.len() - 64..];
    assert!(
        held.windows(tail.len()).any(|w| w == tail),
        "the sink holds the older version"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_segments_are_deleted_after_retention() {
    let dir = tempfile::tempdir().unwrap();
    let sink_spool = dir.path().join("sink");
    let mut sink_cfg = config(&sink_spool, "");
    sink_cfg.node.ae_title = "SINK".to_string().try_into().unwrap();
    let sink = Daemon::start(sink_cfg).await.unwrap();
    let spool = dir.path().join("spool");
    let dest = format!(
        "[spool]\nretention_hours = 0\n[[destinations]]\nname = \"sink\"\nae_title = \"SINK\"\naddress = \"{}\"\n",
        sink.listen_addr
    );
    let d = Daemon::start(config(&spool, &dest)).await.unwrap();
    send_all(&d, &ct(6, 4)).await;
    d.stop().await;
    // Restarted, the old segment is closed to writes and can go once delivered.
    let d = Daemon::start(config(&spool, &dest)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while status::report(&spool).unwrap().destinations[0].pending > 0 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let with_records = |files: &[std::path::PathBuf]| {
        files
            .iter()
            .filter(|p| std::fs::read(p).unwrap().iter().any(|&b| b != 0))
            .count()
    };
    assert_eq!(with_records(&segment_files(&spool)), 1);
    let retired = d.spool.retire_delivered(Duration::ZERO).await.unwrap();
    assert!(retired >= 1);
    assert_eq!(
        with_records(&segment_files(&spool)),
        0,
        "the delivered segment is still there"
    );
    assert_eq!(status::report(&spool).unwrap().instances, 0);
    d.stop().await;
    sink.stop().await;
}

/// A destination taken out of the configuration (a PACS being moved, say)
/// does not lose its backlog: set aside, kept for the retention from that
/// start, and sent once a destination of that name is configured again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_taken_out_keeps_its_backlog_and_gets_it_when_it_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let to = |address: &str| {
        format!("[[destinations]]\nname = \"pacs\"\nae_title = \"SINK\"\naddress = \"{address}\"\n")
    };
    // Nothing listens there: everything stays pending.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let d = Daemon::start(config(&spool, &to(&closed))).await.unwrap();
    send_all(&d, &ct(12, 3)).await;
    d.stop().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let d = Daemon::start(config(&spool, "")).await.unwrap();
    assert_eq!(d.recovery.orphaned, 3);
    let report = status::report(&spool).unwrap();
    assert_eq!(report.destinations[0].set_aside, 3);
    assert!(report.to_string().contains("set aside 3"), "{report}");
    // Received more than two seconds ago, set aside just now.
    d.spool
        .retire_delivered(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(status::report(&spool).unwrap().instances, 3);
    d.stop().await;

    let sink_spool = dir.path().join("sink");
    let mut sink_cfg = config(&sink_spool, "");
    sink_cfg.node.ae_title = "SINK".to_string().try_into().unwrap();
    let sink = Daemon::start(sink_cfg).await.unwrap();
    let d = Daemon::start(config(&spool, &to(&sink.listen_addr.to_string())))
        .await
        .unwrap();
    assert_eq!(d.recovery.resumed, 3);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while status::report(&spool).unwrap().destinations[0].delivered < 3 {
        assert!(std::time::Instant::now() < deadline, "backlog not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
    sink.stop().await;
    assert_eq!(status::report(&sink_spool).unwrap().instances, 3);
}

/// Triage results, the triage feed's cursor and results written for an
/// image name it by its instance id, and keep that id after a retired
/// segment's instances are forgotten: an id given out again would make a
/// new image look already triaged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_ids_are_never_given_out_again_after_retirement() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let ids = |spool: &Path| -> Vec<i64> {
        let conn = firstlook::spool::open_read_only(&firstlook::spool::index_path(spool)).unwrap();
        let mut stmt = conn
            .prepare("SELECT id FROM instances ORDER BY id")
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    let keep = "[spool]\nretention_hours = 0\n";
    let d = Daemon::start(config(&spool, keep)).await.unwrap();
    send_all(&d, &ct(8, 3)).await;
    d.stop().await;
    let before = ids(&spool);
    assert_eq!(before.len(), 3);
    // Restarted, the old segment is closed to writes and, with nothing owed
    // to any destination, retired: its instances are forgotten.
    let d = Daemon::start(config(&spool, keep)).await.unwrap();
    assert!(d.spool.retire_delivered(Duration::ZERO).await.unwrap() >= 1);
    assert!(ids(&spool).is_empty());
    send_all(&d, &ct(9, 2)).await;
    let after = ids(&spool);
    d.stop().await;
    assert_eq!(after.len(), 2);
    assert!(
        after[0] > *before.last().unwrap(),
        "ids {after:?} given out again after {before:?}"
    );
    // And across a restart, with the table empty again.
    let d = Daemon::start(config(&spool, keep)).await.unwrap();
    assert!(d.spool.retire_delivered(Duration::ZERO).await.unwrap() >= 1);
    send_all(&d, &ct(10, 1)).await;
    let last = ids(&spool);
    d.stop().await;
    assert_eq!(last.len(), 1);
    assert!(
        last[0] > after[1],
        "id {last:?} given out again after {after:?}"
    );
}

/// A daemon with triage on and retention 0, restarted on a spool where the
/// first two slices of a four-slice CT series lie in a segment closed to
/// writes, owed to no destination, the series still open; `extra`
/// configures the restarted daemon. Returns it, the series and a counter of
/// rows in the index.
async fn open_series_on_a_closed_segment(
    spool: &Path,
    extra: &str,
) -> (Daemon, Vec<Instance>, impl Fn(&str) -> i64) {
    let cfg = |extra: &str| {
        let mut c = config(spool, &format!("[spool]\nretention_hours = 0\n{extra}"));
        c.triage.enabled = true;
        // The series stays open until its last slice comes.
        c.triage.series_idle_secs = Bounded::new(3600).unwrap();
        c
    };
    let series = firstlook_phantom::generate(&StudySpec::new(Kind::Ct, 11).with_count(4)).unwrap();
    let d = Daemon::start(cfg("")).await.unwrap();
    send_all(&d, &series[..2]).await;
    d.stop().await;
    let index = firstlook::spool::index_path(spool);
    let count = move |sql: &str| -> i64 {
        let conn = firstlook::spool::open_read_only(&index).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    (Daemon::start(cfg(extra)).await.unwrap(), series, count)
}

/// Whatever the retention, an image stays until triage has decided on it
/// and the decision is reported: retired before, it would never be
/// triaged, or its report would lack the image its heatmap is drawn from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_stay_until_triage_has_decided_and_reported_whatever_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let (d, series, count) = open_series_on_a_closed_segment(&spool, "").await;
    d.spool.retire_delivered(Duration::ZERO).await.unwrap();
    assert_eq!(
        count("SELECT count(*) FROM instances"),
        2,
        "retired undecided"
    );
    send_all(&d, &series[2..]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count("SELECT count(*) FROM results") == 0 {
        assert!(std::time::Instant::now() < deadline, "no report");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count("SELECT count(*) FROM results WHERE state = 'written'"),
        1
    );
    assert!(d.spool.retire_delivered(Duration::ZERO).await.unwrap() >= 1);
    let first = &series[0].sop_instance_uid;
    assert_eq!(
        count(&format!(
            "SELECT count(*) FROM instances WHERE sop_instance_uid = '{first}'"
        )),
        0,
        "decided and reported, the first slices' segment went"
    );
    d.stop().await;
}

/// Past the high watermark the scanners are refused; what triage still
/// wanted then goes rather than keep them out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_lets_go_of_what_triage_still_wanted() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let full = "high_watermark_percent = 2\nlow_watermark_percent = 1\n";
    let (d, _, count) = open_series_on_a_closed_segment(&spool, full).await;
    if !d.spool.watermarks().refusing() {
        // An almost empty filesystem cannot show this.
        assert!(firstlook::spool::usage(&spool).unwrap().used_percent() < 2.0);
        d.stop().await;
        return;
    }
    assert_eq!(count("SELECT count(*) FROM instances"), 2);
    assert!(d.spool.retire_delivered(Duration::ZERO).await.unwrap() >= 1);
    assert_eq!(count("SELECT count(*) FROM instances"), 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_data_set_gets_c000_and_the_association_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let d = Daemon::start(config(&spool, "")).await.unwrap();
    let instances = ct(7, 2);
    let mut scu = connect(&d, &instances).await.unwrap();
    let good = dataset(&instances[0]);
    let mut truncated = good[..good.len() - 100].to_vec();
    truncated.truncate(truncated.len());
    let (status, comment) = send(&mut scu, &instances[0], &truncated).await;
    assert_eq!(status & 0xF000, 0xC000, "status {status:04X}");
    assert!(comment.unwrap_or_default().contains("malformed"));
    let garbage = vec![0x55u8; 1000];
    assert_eq!(
        send(&mut scu, &instances[0], &garbage).await.0 & 0xF000,
        0xC000
    );
    assert_eq!(
        send(&mut scu, &instances[1], dataset(&instances[1]))
            .await
            .0,
        0
    );
    scu.release().await;
    d.stop().await;
    assert_eq!(status::report(&spool).unwrap().instances, 1);
}

/// A scanner that labels native pixels as JPEG Lossless would have them
/// stored, and sent to PACS, under a syntax that misdescribes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_pixels_sent_as_jpeg_are_refused_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let d = Daemon::start(config(&spool, "")).await.unwrap();
    let native = ct(10, 1);
    let mut labelled = native[0].clone();
    labelled.transfer_syntax_uid = "1.2.840.10008.1.2.4.70".into();
    let mut scu = connect(&d, std::slice::from_ref(&labelled)).await.unwrap();
    let (status, comment) = send(&mut scu, &labelled, dataset(&native[0])).await;
    assert_eq!(status, 0xC000, "{comment:?}");
    assert!(
        comment
            .as_deref()
            .unwrap_or("")
            .contains("native Pixel Data"),
        "{comment:?}"
    );
    scu.release().await;
    d.stop().await;
    assert_eq!(status::report(&spool).unwrap().instances, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_set_that_is_not_the_announced_instance_gets_a900() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let d = Daemon::start(config(&spool, "")).await.unwrap();
    let instances = ct(8, 2);
    let mut scu = connect(&d, &instances).await.unwrap();
    // Command names instance 0, data set is instance 1.
    let (status, _) = send(&mut scu, &instances[0], dataset(&instances[1])).await;
    assert_eq!(status, 0xA900);
    scu.release().await;
    d.stop().await;
    assert_eq!(status::report(&spool).unwrap().instances, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_past_the_high_watermark_refuses_associations() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let d = Daemon::start(config(
        &spool,
        "[spool]\nhigh_watermark_percent = 2\nlow_watermark_percent = 1\n",
    ))
    .await
    .unwrap();
    if firstlook::spool::usage(&spool).unwrap().used_percent() < 2.0 {
        // An almost empty filesystem cannot show this; nothing to prove here.
        d.stop().await;
        return;
    }
    match connect(&d, &ct(9, 1)).await {
        Err(ScuError::Rejected { permanent, reason }) => {
            assert!(!permanent);
            assert_eq!(reason, "local limit exceeded");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("association accepted on a full disk"),
    }
    d.stop().await;
}

//! Faults injected inside the spool and the forwarder (failpoints, in test
//! builds only): a write that runs out of space or stops short, an fsync
//! that fails, an index commit that finds SQLite busy or full, a delivery
//! that cannot be recorded, a triage result that cannot be stored. Each
//! C-STORE it touches is refused, never acknowledged; the association and
//! the daemon go on; nothing acknowledged is lost, after a restart too; a
//! delivery not recorded is sent again; a triage result is stored later.
#![cfg(feature = "failpoints")]

use std::path::Path;
use std::time::{Duration, Instant};

use firstlook::failpoints::{arm, Fault};
use firstlook::status;

use crate::common::{start_with, CtSeries};

const NO_TRIAGE: &str = "[triage]\nenabled = false\n[panel]\nenabled = false\n";

/// Stores instance 0, then instance 1 with `name` armed once, then 2, then
/// 1 again; the armed store must be refused with 0xA7xx and the others
/// acknowledged, and exactly the acknowledged ones held, across a restart.
async fn refused_once_then_stored(name: &'static str, fault: Fault, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let d = start_with(&spool, NO_TRIAGE).await;
    let series = CtSeries::new(seed, 3);
    let mut scu = series.connect(&d).await.unwrap();
    assert_eq!(series.store(&mut scu, 0).await.0, 0);

    let armed = arm(name, fault, 1);
    let (status, comment) = series.store(&mut scu, 1).await;
    assert_eq!(armed.left(name), 0, "{name} was reached");
    drop(armed);
    assert_eq!(
        status & 0xFF00,
        0xA700,
        "{name} {fault:?}: answered {status:#06x} {comment:?}"
    );

    for i in [2, 1] {
        let (status, comment) = series.store(&mut scu, i).await;
        assert_eq!(status, 0, "{name} {fault:?}: instance {i}: {comment:?}");
    }
    scu.release().await;
    d.stop().await;
    assert_eq!(status::report(&spool).unwrap().instances, 3);

    // Recovery finds the same three, no more: the refused write left
    // nothing that passes for a record.
    let d = start_with(&spool, NO_TRIAGE).await;
    assert_eq!(d.recovery.reindexed, 0, "{name} {fault:?}");
    d.stop().await;
    assert_eq!(status::report(&spool).unwrap().instances, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_out_of_space_is_refused() {
    refused_once_then_stored("spool-append", Fault::Errno(nix::libc::ENOSPC), 41).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_write_is_refused() {
    refused_once_then_stored("spool-append", Fault::ShortWrite, 42).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_refused() {
    refused_once_then_stored("spool-fsync", Fault::Errno(nix::libc::EIO), 43).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_commit_finding_sqlite_busy_is_refused() {
    let busy = rusqlite::ffi::SQLITE_BUSY;
    refused_once_then_stored("index-commit", Fault::Sqlite(busy), 44).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_commit_finding_sqlite_full_is_refused() {
    let full = rusqlite::ffi::SQLITE_FULL;
    refused_once_then_stored("index-commit", Fault::Sqlite(full), 45).await;
}

async fn wait_delivered(spool: &Path, n: u64) -> status::StatusReport {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let report = status::report(spool).unwrap();
        let d = &report.destinations[0];
        if d.delivered == n && d.pending == 0 {
            return report;
        }
        assert!(Instant::now() < deadline, "not delivered in 60 s: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_cannot_be_recorded_is_sent_again_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let sink_spool = dir.path().join("sink");
    let sink = start_with(
        &sink_spool,
        &format!("{NO_TRIAGE}[[scanners]]\nae_title = \"FIRSTLOOK\"\nhosts = [\"127.0.0.1\"]\n"),
    )
    .await;
    let spool = dir.path().join("spool");
    let d = start_with(
        &spool,
        &format!(
            "{NO_TRIAGE}[[destinations]]\nname = \"sink\"\nae_title = \"FIRSTLOOK\"\naddress = \"{}\"\n",
            sink.listen_addr
        ),
    )
    .await;

    let armed = arm(
        "forward-record",
        Fault::Sqlite(rusqlite::ffi::SQLITE_BUSY),
        2,
    );
    let series = CtSeries::new(46, 5);
    let mut scu = series.connect(&d).await.unwrap();
    for i in 0..5 {
        assert_eq!(series.store(&mut scu, i).await.0, 0);
    }
    scu.release().await;
    let report = wait_delivered(&spool, 5).await;
    assert_eq!(armed.left("forward-record"), 0, "both failures happened");
    drop(armed);
    assert_eq!(report.destinations[0].dead, 0);
    d.stop().await;
    sink.stop().await;
    assert_eq!(
        status::report(&sink_spool).unwrap().instances,
        5,
        "all five at the sink (the resent ones once: identical bytes are not stored twice)"
    );
}

/// A triage result or decision the index cannot take (SQLite busy or full)
/// is stored once it can: dropped, the decision would never be announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triage_decision_that_cannot_be_stored_is_stored_when_the_index_can() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let d = start_with(&spool, "[panel]\nenabled = false\n").await;
    let mut decisions = d.subscribe_decisions();
    let armed = arm(
        "triage-record",
        Fault::Sqlite(rusqlite::ffi::SQLITE_FULL),
        3,
    );
    let series = CtSeries::new(47, 2);
    let mut scu = series.connect(&d).await.unwrap();
    for i in 0..2 {
        assert_eq!(series.store(&mut scu, i).await.0, 0);
    }
    scu.release().await;
    let event = tokio::time::timeout(Duration::from_secs(60), decisions.recv())
        .await
        .expect("a decision within 60 s")
        .unwrap();
    assert_eq!(
        armed.left("triage-record"),
        0,
        "all three failures happened"
    );
    drop(armed);
    let mut inputs = event.decision.inputs.clone();
    inputs.sort();
    let mut sent: Vec<String> = series
        .instances
        .iter()
        .map(|i| i.sop_instance_uid.clone())
        .collect();
    sent.sort();
    assert_eq!(inputs, sent, "the decision rests on both slices");
    d.stop().await;
    let conn = firstlook::spool::open_read_only(&firstlook::spool::index_path(&spool)).unwrap();
    let (results, decided): (i64, i64) = conn
        .query_row(
            "SELECT count(*), sum(decided) FROM triage_results",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((results, decided), (2, 2));
    let stored: i64 = conn
        .query_row(
            "SELECT count(*) FROM decisions WHERE id = ?1",
            [event.id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1);
}

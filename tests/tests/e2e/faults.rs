//! Faults: the PACS down, the daemon killed with SIGKILL mid-transfer, the
//! PACS refusing instances permanently, and the PACS breaking the
//! association on one instance again and again; dead letters requeued or
//! discarded by the operator.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use firstlook_e2e::*;

/// How long the PACS stays down in `pacs_down_at_start_is_caught_up_once_it_is_up`.
const PACS_DOWN_FOR: Duration = Duration::from_secs(30);

/// The PACS is down when the daemon starts and the scanner sends; it comes up
/// 30 s later. Everything is then delivered, the spool holds each instance
/// once, and the PACS receives each SOP Instance UID exactly once.
#[test]
fn pacs_down_at_start_is_caught_up_once_it_is_up() {
    let dir = scratch("pacs-down");
    let pacs_port = free_port();
    let cfg = DaemonConfig::ct01_to_pacs(pacs_port);
    let started = Instant::now();
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 3001).with_count(20),
        &dir.path().join("ct"),
    );
    let ct_dir = dir.path().join("ct");
    let out = storescu(daemon.port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    assert!(
        out.status.success(),
        "the scanner must be served while the PACS is down:\n{out}"
    );
    assert_eq!(
        storescu_successes(&out.stderr).len(),
        20,
        "storescu:\n{out}"
    );

    // The daemon has tried and failed at least once, and owes all 20.
    let s = wait_until(
        Duration::from_secs(20),
        "a failed delivery attempt recorded in status",
        |last| {
            daemon.assert_running();
            let s = daemon.status();
            *last = s.summary();
            let d = s.destination("pacs");
            (d.pending == 20 && d.last_error.is_some()).then_some(s)
        },
    );
    assert_eq!(s.instances, 20, "{}", s.summary());
    assert_eq!(s.destination("pacs").delivered, 0, "{}", s.summary());

    // The PACS stays down for 30 s (the scenario, not an assertion).
    std::thread::sleep(PACS_DOWN_FOR.saturating_sub(started.elapsed()));
    let s = daemon.status();
    assert_eq!(
        (s.destination("pacs").pending, s.destination("pacs").dead),
        (20, 0),
        "nothing may be given up while the PACS is down 30 s: {}",
        s.summary()
    );
    let mut pacs = StoreScp::start(dir.path(), pacs_port, &[]);
    let up = Instant::now();

    let status = daemon.wait_settled(20, Duration::from_secs(60));
    eprintln!("caught up {:?} after the PACS came up", up.elapsed());
    let d = status.destination("pacs");
    assert_eq!(
        (d.delivered, d.dead),
        (20, 0),
        "status: {}",
        status.summary()
    );
    assert_eq!(
        status.instances, 20,
        "the spool should hold each instance once"
    );
    let received = pacs.received();
    assert_delivered_identical(&ct, &received);
    assert_eq!(
        uids(&received).len(),
        20,
        "unique SOP Instance UIDs at the PACS"
    );
    assert_eq!(
        duplicates(&received),
        Default::default(),
        "instances the PACS received more than once"
    );
}

/// storescu sends 200 slices; after ~50 acknowledgements firstlookd is killed
/// with SIGKILL, then restarted on the same spool. Every instance whose
/// C-STORE got a success reaches the PACS intact (DESIGN.md invariants 1, 3);
/// the study sent again afterwards is stored once and delivered whole.
#[test]
fn sigkill_mid_transfer_loses_nothing_acknowledged() {
    let dir = scratch("kill9");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::ct01_to_pacs(pacs.port);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct_dir = dir.path().join("ct");
    let ct = phantom(&StudySpec::new(Kind::Ct, 3101).with_count(200), &ct_dir);

    let scu_log = dir.path().join("storescu.log");
    let mut cmd = tool(STORESCU);
    cmd.args(["-v", "-aet", "CT01", "-aec", NODE_AE, "127.0.0.1"])
        .arg(daemon.port.to_string())
        .arg("+sd")
        .arg(&ct_dir);
    let mut scu = Proc::spawn("storescu", &mut cmd, &scu_log);
    // Watch storescu's log closely so the kill lands near the 50th success.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = storescu_successes(&scu.log_text()).len();
        if n >= 50 {
            break;
        }
        scu.assert_running();
        assert!(
            Instant::now() < deadline,
            "storescu reported only {n} successes in 60 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    daemon.kill9();
    let scu_status = scu.wait_exit(Duration::from_secs(60));
    let scu_text = scu.log_text();
    let acked: Vec<PathBuf> = storescu_successes(&scu_text);
    assert!(
        scu_status.is_some(),
        "storescu did not stop after the daemon died:\n{}",
        last_lines(&scu_text, 30)
    );
    assert!(
        acked.len() >= 50 && acked.len() < 200,
        "the kill should land mid-transfer: {} of 200 acknowledged",
        acked.len()
    );
    eprintln!(
        "{} instances acknowledged before SIGKILL; storescu exited with {:?}",
        acked.len(),
        scu_status
    );

    daemon.restart();
    let acked_uids: BTreeSet<String> = acked
        .iter()
        .map(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .expect("phantom files are <UID>.dcm")
                .to_string()
        })
        .collect();
    let acked_files: Vec<DicomFile> = ct
        .iter()
        .filter(|f| acked_uids.contains(&f.sop_instance_uid))
        .cloned()
        .collect();
    assert_eq!(
        acked_files.len(),
        acked_uids.len(),
        "acked files map to phantom UIDs"
    );

    let status = wait_until(
        Duration::from_secs(60),
        "the restarted daemon to deliver everything it holds",
        |last| {
            daemon.assert_running();
            let s = daemon.status();
            *last = s.summary();
            (s.destination("pacs").pending == 0).then_some(s)
        },
    );
    assert!(
        status.instances >= acked_files.len() as u64,
        "the spool lost acknowledged instances: holds {}, {} were acknowledged",
        status.instances,
        acked_files.len()
    );
    assert_eq!(status.destination("pacs").dead, 0, "{}", status.summary());
    let received = pacs.received();
    assert_delivered_identical(&acked_files, &received);
    let dups = duplicates(&received);
    eprintln!(
        "PACS received {} files, {} unique; {} instances sent more than once (allowed: at-least-once)",
        received.len(),
        uids(&received).len(),
        dups.len()
    );

    // As a scanner does after a failed transfer, send the whole study again:
    // the spool then holds each of the 200 instances once, and all reach the PACS.
    let out = storescu(daemon.port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    assert!(
        out.status.success(),
        "re-sending the study after the restart:\n{out}"
    );
    let status = daemon.wait_settled(200, Duration::from_secs(60));
    assert_eq!(status.destination("pacs").dead, 0, "{}", status.summary());
    let received = pacs.received();
    assert_delivered_identical(&ct, &received);
    assert_eq!(uids(&received).len(), 200, "unique instances at the PACS");

    let log = daemon.log_text();
    assert!(
        log.matches("spool recovered").count() >= 2,
        "the restart should recover the spool:\n{}",
        daemon.log_tail(40)
    );
}

/// A pynetdicom PACS answers 0xA900, 0xC000 and 0x0122 for three instances
/// and success for the rest: those three are dead-lettered once each with a
/// reason naming the status, the other five are delivered intact.
#[test]
fn permanent_refusals_are_dead_lettered_and_the_rest_delivered() {
    let dir = scratch("refusal");
    let cr_dir = dir.path().join("cr");
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 3201)
            .with_count(8)
            .with_size(256, 256),
        &cr_dir,
    );
    let refused: Vec<(&str, u16)> = vec![
        (cr[2].sop_instance_uid.as_str(), 0xA900),
        (cr[4].sop_instance_uid.as_str(), 0xC000),
        (cr[6].sop_instance_uid.as_str(), 0x0122),
    ];
    let mut pacs = PyPacs::start(dir.path(), free_port(), &refused);
    let cfg = DaemonConfig::new()
        .scanner("CR01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let out = storescu(daemon.port, "CR01", &["+sd"], &[cr_dir.as_path()]);
    assert!(out.status.success(), "storescu failed:\n{out}");
    assert_eq!(storescu_successes(&out.stderr).len(), 8, "storescu:\n{out}");

    let status = daemon.wait_settled(8, Duration::from_secs(60));
    let d = status.destination("pacs");
    assert_eq!(
        (d.pending, d.delivered, d.dead),
        (0, 5, 3),
        "status: {}",
        status.summary()
    );
    let mut problems = Vec::new();
    for (uid, code) in &refused {
        match status
            .dead_letters
            .iter()
            .find(|l| l.sop_instance_uid == *uid)
        {
            None => problems.push(format!("{uid} (0x{code:04X}) is not a dead letter")),
            Some(l) => {
                let hex = format!("0x{code:04X}");
                if l.destination != "pacs" {
                    problems.push(format!("{uid}: destination {:?}", l.destination));
                }
                if l.status != Some(*code) {
                    problems.push(format!("{uid}: status {:?}, expected {hex}", l.status));
                }
                if !l.reason.to_uppercase().contains(&hex.to_uppercase()) {
                    problems.push(format!(
                        "{uid}: reason {:?} does not mention {hex}",
                        l.reason
                    ));
                }
                if l.sop_class_uid != cr[0].sop_class_uid {
                    problems.push(format!("{uid}: SOP class {:?}", l.sop_class_uid));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dead letters:\n{}\nall: {:?}",
        problems.join("\n"),
        status.dead_letters
    );
    assert_eq!(status.dead_letters.len(), 3, "{:?}", status.dead_letters);

    // Each refusal was final: the PACS saw each refused instance once.
    let log = pacs.log_text();
    for (uid, _) in &refused {
        let n = log.matches(&format!("REFUSED {uid} ")).count();
        assert_eq!(n, 1, "{uid} offered {n} times to the PACS:\n{log}");
    }
    let refused_uids: BTreeSet<&str> = refused.iter().map(|(u, _)| *u).collect();
    let delivered: Vec<DicomFile> = cr
        .iter()
        .filter(|f| !refused_uids.contains(f.sop_instance_uid.as_str()))
        .cloned()
        .collect();
    let received = pacs.received();
    assert_delivered_identical(&delivered, &received);
    assert_eq!(uids(&received), uids(&delivered), "what the PACS stored");
}

/// What a dead letter's reason starts with when the destination broke the
/// association on that instance `MAX_BROKEN_ASSOCIATIONS` (3) times
/// (daemon/src/forward/queue.rs).
const BROKE_ASSOCIATION_3_TIMES: &str =
    "the destination broke the association 3 times while receiving this instance";

/// A pynetdicom PACS aborts the association every time one instance is sent
/// to it, and stores the rest. Each break is charged to that instance alone:
/// after the third it is dead-lettered with a reason saying so (and offered
/// no more), and the other instances, also those queued behind it in the
/// same series, are delivered intact.
#[test]
fn instance_on_which_the_pacs_breaks_the_association_is_dead_lettered_and_the_rest_delivered() {
    let dir = scratch("broken-association");
    let cr_dir = dir.path().join("cr");
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 3301)
            .with_count(6)
            .with_size(256, 256),
        &cr_dir,
    );
    let poison = cr[2].sop_instance_uid.clone();
    let mut pacs = PyPacs::start_aborting_on(dir.path(), free_port(), &[poison.as_str()]);
    let cfg = DaemonConfig::new()
        .scanner("CR01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", pacs.port))
        .retry_secs(1, 1);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let out = storescu(daemon.port, "CR01", &["+sd"], &[cr_dir.as_path()]);
    assert!(out.status.success(), "storescu failed:\n{out}");
    assert_eq!(storescu_successes(&out.stderr).len(), 6, "storescu:\n{out}");

    let status = daemon.wait_settled(6, Duration::from_secs(60));
    let d = status.destination("pacs");
    assert_eq!(
        (d.pending, d.delivered, d.dead),
        (0, 5, 1),
        "status: {}",
        status.summary()
    );
    assert_eq!(
        status.dead_letters.len(),
        1,
        "dead letters: {:?}",
        status.dead_letters
    );
    let letter = &status.dead_letters[0];
    assert_eq!(
        letter.sop_instance_uid, poison,
        "the dead letter should be the instance the PACS aborts on: {letter:?}"
    );
    assert_eq!(letter.destination, "pacs", "{letter:?}");
    assert_eq!(letter.sop_class_uid, cr[2].sop_class_uid, "{letter:?}");
    assert!(
        letter.reason.starts_with(BROKE_ASSOCIATION_3_TIMES),
        "dead letter reason {:?} should start with {BROKE_ASSOCIATION_3_TIMES:?}",
        letter.reason
    );

    // Three breaks, then no more offers: the instance is dead, so nothing
    // can send it again after the status above.
    let log = pacs.log_text();
    let offered = log.matches(&format!("ABORTED {poison}")).count();
    assert_eq!(
        offered, 3,
        "{poison} should be offered exactly 3 times, was {offered}:\n{log}"
    );
    assert!(
        !log.contains(&format!("STORED {poison}")),
        "the PACS never stores the instance it aborts on:\n{log}"
    );

    let rest: Vec<DicomFile> = cr
        .iter()
        .filter(|f| f.sop_instance_uid != poison)
        .cloned()
        .collect();
    let received = pacs.received();
    assert_delivered_identical(&rest, &received);
    assert_eq!(uids(&received), uids(&rest), "what the PACS stored");
}

/// A PACS that aborts on every C-STORE for a while (its storage or database
/// down). The breaks fall on several instances, so they are the PACS's, not
/// any one instance's: nothing stays dead-lettered, and once the PACS stores
/// again the whole series arrives, once and intact.
#[test]
fn a_pacs_breaking_on_every_instance_for_a_while_dead_letters_nothing() {
    let dir = scratch("pacs-aborts-all");
    let port = free_port();
    let mut pacs = PyPacs::start_args(dir.path(), port, &["--abort-all-for".into(), "8".into()]);
    let cfg = DaemonConfig::ct01_to_pacs(port).retry_secs(1, 1);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct_dir = dir.path().join("ct");
    let ct = phantom(&StudySpec::new(Kind::Ct, 3501).with_count(8), &ct_dir);
    let out = storescu(daemon.port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    assert_eq!(storescu_successes(&out.stderr).len(), 8, "{out}");

    let status = daemon.wait_settled(8, Duration::from_secs(90));
    let d = status.destination("pacs");
    assert_eq!((d.delivered, d.dead), (8, 0), "{}", status.summary());
    let log = pacs.log_text();
    let aborted: BTreeSet<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("ABORTED "))
        .collect();
    assert!(
        aborted.len() >= 2,
        "the PACS should have aborted on several instances:\n{log}"
    );
    let received = pacs.received();
    assert_delivered_identical(&ct, &received);
    assert_eq!(duplicates(&received), Default::default());
}

/// The PACS is busy (0xA700) once for the third image of a series that is
/// queued whole: the images behind it wait for it, so the PACS still gets
/// the series in order.
#[test]
fn a_transient_refusal_holds_the_rest_of_its_series_so_it_arrives_in_order() {
    let dir = scratch("refuse-once");
    let port = free_port();
    let cfg = DaemonConfig::ct01_to_pacs(port).retry_secs(1, 1);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct_dir = dir.path().join("ct");
    let ct = phantom(&StudySpec::new(Kind::Ct, 3601).with_count(8), &ct_dir);
    let out = storescu(daemon.port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    let sent: Vec<String> = storescu_successes(&out.stderr)
        .iter()
        .map(|p| {
            ct.iter()
                .find(|f| &f.path == p)
                .map(|f| f.sop_instance_uid.clone())
                .unwrap_or_else(|| panic!("{} is not one of the series", p.display()))
        })
        .collect();
    assert_eq!(sent.len(), 8, "{out}");

    // The PACS comes up with the whole series queued.
    let busy_once = format!("{}=A700", sent[2]);
    let pacs = PyPacs::start_args(dir.path(), port, &["--refuse-once".into(), busy_once]);
    let status = daemon.wait_settled(8, Duration::from_secs(60));
    let d = status.destination("pacs");
    assert_eq!((d.delivered, d.dead), (8, 0), "{}", status.summary());
    let log = pacs.log_text();
    assert!(
        log.contains(&format!("REFUSED {} 0xA700", sent[2])),
        "{log}"
    );
    let stored: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("STORED "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    assert_eq!(stored, sent, "the order the PACS stored them in:\n{log}");
}

fn dead_letters(spool: &std::path::Path, args: &[&str]) -> CmdOutput {
    run_cmd(
        Command::new(firstlookd_bin())
            .arg("dead-letters")
            .args(args)
            .arg("--spool")
            .arg(spool),
        Duration::from_secs(30),
    )
}

/// Once the cause is fixed, a dead letter can be sent again, or given up,
/// while the daemon runs; it picks the requeued instance up by itself.
#[test]
fn dead_letters_are_requeued_or_discarded_while_the_daemon_runs() {
    let dir = scratch("requeue");
    let cr_dir = dir.path().join("cr");
    let cr = phantom(
        &StudySpec::new(Kind::Cr, 3301)
            .with_count(4)
            .with_size(256, 256),
        &cr_dir,
    );
    let port = free_port();
    let refused: Vec<(&str, u16)> = vec![
        (cr[1].sop_instance_uid.as_str(), 0xA900),
        (cr[2].sop_instance_uid.as_str(), 0xA900),
    ];
    let first = PyPacs::start(&dir.path().join("first"), port, &refused);
    let cfg = DaemonConfig::new()
        .scanner("CR01", &["127.0.0.1"])
        .destination(DestinationConfig::new("pacs", "PACS", port));
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let out = storescu(daemon.port, "CR01", &["+sd"], &[cr_dir.as_path()]);
    assert!(out.status.success(), "storescu failed:\n{out}");
    let status = daemon.wait_settled(4, Duration::from_secs(60));
    let d = status.destination("pacs");
    assert_eq!((d.delivered, d.dead), (2, 2), "{}", status.summary());

    // The PACS is fixed: it now accepts everything.
    drop(first);
    let mut fixed = PyPacs::start(&dir.path().join("fixed"), port, &[]);

    let out = dead_letters(&daemon.spool_dir, &["discard"]);
    assert_ne!(
        out.code(),
        Some(0),
        "discard without a choice must be refused:\n{out}"
    );
    assert!(out.stderr.contains("--all"), "{out}");

    let out = dead_letters(&daemon.spool_dir, &["requeue", &cr[1].sop_instance_uid]);
    assert!(out.stdout.contains("requeued 1 dead letter"), "{out}");
    let out = dead_letters(&daemon.spool_dir, &["discard", &cr[2].sop_instance_uid]);
    assert!(out.stdout.contains("discarded 1 dead letter"), "{out}");

    let status = wait_until(
        Duration::from_secs(30),
        "the requeued instance delivered",
        |last| {
            daemon.assert_running();
            let s = daemon.status();
            *last = s.summary();
            let d = s.destination("pacs");
            (d.delivered == 3 && d.dead == 0 && d.pending == 0).then_some(s)
        },
    );
    assert!(status.dead_letters.is_empty(), "{}", status.summary());
    let received = fixed.received();
    assert_eq!(
        uids(&received),
        [cr[1].sop_instance_uid.clone()].into_iter().collect(),
        "only the requeued instance is sent again"
    );
}

/// A slow archive (each C-STORE answered after a second) that answers some
/// instances with a warning (0xB000, stored with coercion): the scanner's
/// study is taken in full while deliveries are still queued, everything
/// arrives intact, and the warnings are delivered, not retried, with the
/// status kept as the reason.
#[test]
fn a_slow_pacs_with_warnings_gets_everything_and_ingest_does_not_wait() {
    let dir = scratch("slow-pacs");
    let ct = phantom(
        &StudySpec::new(Kind::Ct, 3301)
            .with_count(8)
            .with_size(64, 64),
        &dir.path().join("ct"),
    );
    let warned = [&ct[2].sop_instance_uid, &ct[5].sop_instance_uid];
    let mut args: Vec<String> = vec!["--delay".into(), "1".into()];
    for uid in warned {
        args.extend(["--warn".to_string(), format!("{uid}=B000")]);
    }
    let mut pacs = PyPacs::start_args(dir.path(), free_port(), &args);
    let cfg = DaemonConfig::ct01_to_pacs(pacs.port);
    let mut daemon = Daemon::start(dir.path(), &cfg);

    let out = storescu(
        daemon.port,
        "CT01",
        &["+sd"],
        &[dir.path().join("ct").as_path()],
    );
    assert!(out.status.success(), "{out}");
    assert_eq!(storescu_successes(&out.stderr).len(), 8, "{out}");
    let queued = daemon.status().destination("pacs").pending;
    assert!(
        queued > 0,
        "the scanner finished while the slow PACS still had work queued (ingest never waits on it)"
    );

    let status = daemon.wait_settled(8, Duration::from_secs(120));
    let pacs_status = status.destination("pacs");
    assert_eq!(
        (pacs_status.delivered, pacs_status.dead),
        (8, 0),
        "{}",
        status.summary()
    );
    assert_delivered_identical(&ct, &pacs.received());
    assert!(
        duplicates(&pacs.received()).is_empty(),
        "a warning is a delivery, not a reason to send again"
    );
    let log = daemon.log_text();
    assert_eq!(
        log.matches("destination stored with a warning").count(),
        2,
        "{}",
        daemon.log_tail(40)
    );
}

/// A PACS that rejects every association (not yet configured for this box)
/// for a while: the scanner's study is taken in full meanwhile, nothing is
/// given up, and once the PACS accepts, everything arrives once, intact.
#[test]
fn a_pacs_refusing_associations_gets_everything_once_it_accepts_them() {
    let dir = scratch("pacs-rejects");
    let port = free_port();
    let rejecting = PyPacs::start_args(dir.path(), port, &["--reject-associations".into()]);
    let cfg = DaemonConfig::ct01_to_pacs(port);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let ct_dir = dir.path().join("ct");
    let ct = phantom(&StudySpec::new(Kind::Ct, 3101).with_count(8), &ct_dir);
    let out = storescu(daemon.port, "CT01", &["+sd"], &[ct_dir.as_path()]);
    assert_eq!(storescu_successes(&out.stderr).len(), 8, "{out}");

    wait_until(
        Duration::from_secs(30),
        "a rejected attempt in status",
        |last| {
            let s = daemon.status();
            *last = s.summary();
            let d = s.destination("pacs");
            let rejected = d
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("rejected"));
            (rejected && d.pending == 8 && d.dead == 0).then_some(())
        },
    );
    drop(rejecting);

    let mut pacs = PyPacs::start_args(dir.path(), port, &[]);
    let status = daemon.wait_settled(8, Duration::from_secs(60));
    let d = status.destination("pacs");
    assert_eq!((d.delivered, d.dead), (8, 0), "{}", status.summary());
    let received = pacs.received();
    assert_delivered_identical(&ct, &received);
    assert_eq!(duplicates(&received), Default::default());
}

//! Crash consistency: firstlookd is killed with SIGKILL again and again at
//! random moments — while storescu is sending (mid C-STORE, mid commit),
//! while it forwards to the PACS, and while it recovers its spool after a
//! restart — then restarted on the same spool. At the end, every instance
//! whose C-STORE got a success is at the PACS byte-identical; duplicates
//! (at-least-once delivery) are counted and reported.
//!
//! `CRASH_KILLS` (default 20) and `CRASH_SEED` set the run; the benchmark
//! `tests/bench/crash` runs this test with 200 kills.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use firstlook_e2e::*;
use rand::{RngExt, SeedableRng};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn acknowledged_instances_survive_repeated_sigkills() {
    let kills = env_u64("CRASH_KILLS", 20);
    let seed = env_u64("CRASH_SEED", 0x5EED_F1A5);
    println!("crash: {kills} kills, seed {seed} (CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut below = |n: u64| rng.random_range(0..n);
    let dir = scratch("crash");
    let mut pacs = StoreScp::start(dir.path(), free_port(), &[]);
    let cfg = DaemonConfig::ct01_to_pacs(pacs.port).retry_secs(1, 1);
    let mut daemon = Daemon::start(dir.path(), &cfg);
    let pool: Vec<DicomFile> = (0..8)
        .flat_map(|s| {
            phantom(
                &StudySpec::new(Kind::Ct, 9100 + s)
                    .with_count(40)
                    .with_size(128, 128),
                &dir.path().join(format!("study{s}")),
            )
        })
        .collect();

    let mut acked: BTreeSet<String> = BTreeSet::new();
    // Kills while sending, while forwarding, while recovering.
    let mut during = [0u64; 3];
    let mut batches = 0;
    while during.iter().sum::<u64>() < kills {
        let kind = below(10);
        if kind < 2 {
            // While the restarted daemon recovers its spool and resumes.
            during[2] += 2;
            daemon.kill9();
            daemon.restart_unready();
            std::thread::sleep(Duration::from_millis(below(150)));
            daemon.kill9();
            daemon.restart();
            continue;
        }
        // While storescu sends a batch (some of it sent before), and the
        // forwarder delivers what came earlier.
        let start = below(pool.len() as u64) as usize;
        let n = 10 + below(30) as usize;
        let batch: Vec<PathBuf> = (0..n)
            .map(|i| pool[(start + i) % pool.len()].path.clone())
            .collect();
        batches += 1;
        let log = dir.path().join(format!("storescu-{batches}.log"));
        let mut cmd = tool(STORESCU);
        cmd.args(["-v", "-aet", "CT01", "-aec", NODE_AE, "127.0.0.1"])
            .arg(daemon.port.to_string())
            .args(&batch);
        let mut scu = Proc::spawn("storescu", &mut cmd, &log);
        let delay = if kind < 8 {
            during[0] += 1;
            below(250)
        } else {
            during[1] += 1;
            // Mostly after storescu is done: forwarding is under way.
            250 + below(500)
        };
        std::thread::sleep(Duration::from_millis(delay));
        daemon.kill9();
        assert!(
            scu.wait_exit(Duration::from_secs(60)).is_some(),
            "storescu did not stop after the daemon died"
        );
        for f in storescu_successes(&scu.log_text()) {
            let uid = f.file_stem().and_then(|s| s.to_str()).expect("<UID>.dcm");
            acked.insert(uid.to_string());
        }
        daemon.restart();
    }

    let status = wait_until(
        Duration::from_secs(180),
        "the last incarnation to deliver everything it holds",
        |last| {
            daemon.assert_running();
            let s = daemon.status();
            *last = s.summary();
            (s.destination("pacs").pending == 0).then_some(s)
        },
    );
    let sent: Vec<DicomFile> = pool
        .iter()
        .filter(|f| acked.contains(&f.sop_instance_uid))
        .cloned()
        .collect();
    assert_eq!(sent.len(), acked.len(), "acknowledged UIDs map to the pool");
    let received = pacs.received();
    let problems = compare_delivery(&sent, &received);
    let dups = duplicates(&received);
    let extra: usize = dups.values().map(|n| n - 1).sum();
    println!(
        "kills while sending {}, while forwarding {}, while recovering {}",
        during[0], during[1], during[2]
    );
    println!(
        "RESULT crash kills={} acknowledged={} lost={} duplicates={extra} duplicated_instances={} dead={}",
        during.iter().sum::<u64>(),
        sent.len(),
        problems.len(),
        dups.len(),
        status.destination("pacs").dead
    );
    assert!(
        !sent.is_empty(),
        "no C-STORE was ever acknowledged: the kills came too early to test anything"
    );
    assert_eq!(status.destination("pacs").dead, 0, "{}", status.summary());
    assert!(
        problems.is_empty(),
        "{} of {} acknowledged instances did not arrive intact:\n{}",
        problems.len(),
        sent.len(),
        problems.join("\n")
    );
}

//! README's first command must work: the demo sends its studies through the
//! daemon to its PACS sink and says what arrived where.

use std::process::Command;

#[test]
fn demo_forwards_every_study_to_the_sink_and_says_it_is_synthetic() {
    let out = Command::new(env!("CARGO_BIN_EXE_firstlookd"))
        .args(["demo", "--once"])
        .output()
        .expect("run firstlookd demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("not for clinical use"), "{stdout}");
    let sent = stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent by the scanner:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
        .expect("the demo reports what it sent");
    assert!(sent > 0);
    let results = stdout
        .lines()
        .find_map(|l| l.strip_prefix("results written:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok())
        .expect("the demo reports the results it wrote");
    // Five studies decided: an SR and a heatmap each.
    assert_eq!(results, 10, "{stdout}");
    let total = sent + results;
    assert!(
        stdout.contains(&format!("arrived at the PACS sink:   {total} instances")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{total} delivered, 0 dead-lettered")),
        "{stdout}"
    );
}

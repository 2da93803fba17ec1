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
    assert!(
        stdout.contains(&format!("arrived at the PACS sink:   {sent} instances")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{sent} delivered, 0 dead-lettered")),
        "{stdout}"
    );
}

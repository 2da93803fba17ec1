//! HTTP through curl, with a cookie jar: how the panel's tests talk to it.

use std::process::Command;
use std::time::Duration;

use crate::process::run_cmd;

/// curl with a cookie jar, returning status line, headers and body.
pub fn http(url: &str, jar: &std::path::Path, args: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "--max-time", "15", "-b"])
        .arg(jar)
        .arg("-c")
        .arg(jar)
        .args(args)
        .arg(url);
    let out = run_cmd(&mut cmd, Duration::from_secs(45));
    let code = out
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status from {url}: {out}"));
    (code, out.stdout)
}

pub fn json_post<'a>(body: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        body,
    ];
    v.extend_from_slice(extra);
    v
}

//! `firstlook-provision set-password`, run as the field engineer would.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use firstlook::panel::users;

fn set_password(args: &[&str], password: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_firstlook-provision"))
        .arg("set-password")
        .args(args)
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A tool that refuses its arguments may exit before it reads the password.
    match writeln!(child.stdin.take().unwrap(), "{password}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn config(dir: &Path) -> std::path::PathBuf {
    let c = dir.join("firstlook.toml");
    std::fs::write(
        &c,
        format!(
            "[node]\nae_title = \"FIRSTLOOK\"\nlisten = \"127.0.0.1:11112\"\nspool_dir = \"{}\"\n",
            dir.join("spool").display()
        ),
    )
    .unwrap();
    c
}

#[test]
fn the_password_lands_hashed_beside_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let out = set_password(
        &["--config", cfg.to_str().unwrap(), "tech1"],
        "a long enough secret",
    );
    assert!(out.status.success(), "{out:?}");
    let file = dir.path().join(users::DEFAULT_FILE_NAME);
    assert!(users::verify(&file, "tech1", "a long enough secret").unwrap());
    assert!(!users::verify(&file, "tech1", "a long enough secreT").unwrap());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("secret"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the users file is readable by its owner only");
}

#[test]
fn a_short_password_is_refused_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users");
    let out = set_password(&["--users-file", file.to_str().unwrap(), "tech1"], "short");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least 10 characters"),
        "{out:?}"
    );
    assert!(!file.exists());
}

#[test]
fn a_bad_configuration_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("firstlook.toml");
    std::fs::write(&cfg, "[node]\nae_tittle = \"X\"\n").unwrap();
    let out = set_password(
        &["--config", cfg.to_str().unwrap(), "tech1"],
        "long enough pw",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("firstlook.toml:2:1") && err.contains("ae_tittle"),
        "{err}"
    );
}

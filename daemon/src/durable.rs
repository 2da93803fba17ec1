//! Small files replaced whole and durably.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes`: written to a new file (with `mode`, under a
/// name nobody could have placed beforehand), synced, renamed over, and the
/// folder synced, so a crash leaves either the old file or the new one.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let tmp: PathBuf = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        if let Some(fault) = crate::failpoints::hit("durable-rename") {
            return Err(fault.io_error());
        }
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_whole_with_the_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::write(&path, "old contents, longer").unwrap();
        replace(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_folder_is_an_error_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent").join("state");
        assert!(replace(&path, b"x", 0o600).is_err());
        assert!(!path.exists());
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_rename_leaves_the_old_file_whole_and_no_temporary() {
        use crate::failpoints::{arm, Fault};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("panel-users");
        std::fs::write(&path, "old").unwrap();
        let armed = arm("durable-rename", Fault::Errno(nix::libc::EIO), 1);
        let err = replace(&path, b"new", 0o600).unwrap_err();
        assert_eq!(armed.left("durable-rename"), 0);
        drop(armed);
        assert_eq!(err.raw_os_error(), Some(nix::libc::EIO));
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

//! Least privilege: started as root (to bind port 104, say), firstlookd
//! gives its spool to the configured user and becomes that user once its
//! sockets are bound, before it reads a byte from the network.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("node.run_as names user {0:?}, which this system does not have")]
    NoSuchUser(String),
    #[error("node.run_as is {wanted:?} but firstlookd was started as uid {uid}, not root: start it as root or as {wanted:?}")]
    NotRoot { wanted: String, uid: u32 },
    #[error("cannot give {path} to {user}: {source}")]
    Chown {
        path: String,
        user: String,
        source: std::io::Error,
    },
    #[error("cannot become {user}: {source}")]
    Switch { user: String, source: nix::Error },
    #[error("still able to regain root after becoming {0}: refusing to run")]
    Regained(String),
}

/// Becomes `user` (when root) after handing it `spool_dir` and everything
/// in it. Without `user`, a root process only warns.
pub fn drop_to(user: Option<&str>, spool_dir: &Path) -> Result<(), PrivilegeError> {
    let euid = Uid::effective();
    let Some(name) = user else {
        if euid.is_root() {
            tracing::warn!(message = "running as root: set node.run_as to an unprivileged user");
        }
        return Ok(());
    };
    let account = User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_string()))?;
    if !euid.is_root() {
        return if euid == account.uid {
            Ok(())
        } else {
            Err(PrivilegeError::NotRoot {
                wanted: name.to_string(),
                uid: euid.as_raw(),
            })
        };
    }
    std::fs::create_dir_all(spool_dir).map_err(|source| PrivilegeError::Chown {
        path: spool_dir.display().to_string(),
        user: name.to_string(),
        source,
    })?;
    give(spool_dir, account.uid, account.gid, name)?;
    let switch = |source| PrivilegeError::Switch {
        user: name.to_string(),
        source,
    };
    nix::unistd::setgroups(&[account.gid]).map_err(switch)?;
    nix::unistd::setgid(account.gid).map_err(switch)?;
    nix::unistd::setuid(account.uid).map_err(switch)?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::Regained(name.to_string()));
    }
    tracing::info!(
        message = "running as an unprivileged user",
        user = name,
        uid = account.uid.as_raw()
    );
    Ok(())
}

fn give(path: &Path, uid: Uid, gid: Gid, user: &str) -> Result<(), PrivilegeError> {
    let fail = |source: std::io::Error| PrivilegeError::Chown {
        path: path.display().to_string(),
        user: user.to_string(),
        source,
    };
    nix::unistd::chown(path, Some(uid), Some(gid)).map_err(|e| fail(e.into()))?;
    let meta = std::fs::symlink_metadata(path).map_err(fail)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            if !entry.file_type().map_err(fail)?.is_symlink() {
                give(&entry.path(), uid, gid, user)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_user_is_named_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let err = drop_to(Some("no-such-user-firstlook"), &spool).unwrap_err();
        assert!(
            err.to_string().contains("\"no-such-user-firstlook\""),
            "{err}"
        );
        assert!(!spool.exists());
    }

    #[test]
    fn without_run_as_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let before = Uid::effective();
        drop_to(None, dir.path()).unwrap();
        assert_eq!(Uid::effective(), before);
    }
}

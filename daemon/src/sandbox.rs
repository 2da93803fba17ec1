//! Filesystem writes confined to the spool (and the audit file's folder)
//! with Landlock, whatever the init system does. A Landlock domain binds
//! the calling thread and the threads and processes it starts later, so
//! `firstlookd` confines itself before its runtime starts any thread.
//! Reading is not restricted: the model, the configuration and the TLS
//! files stay readable.

use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};

use crate::config::Config;

/// What the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Every write outside the allowed folders is refused.
    Enforced,
    /// The kernel's Landlock is older than asked for: some kinds of write
    /// (e.g. truncation, cross-folder renames) are not confined.
    Partial,
    /// The kernel has no Landlock (older than 5.13, or not enabled at boot).
    Unsupported,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot create {path} before confining writes to it: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot confine filesystem writes with Landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
}

/// The folders `firstlookd` writes in: the spool, and the audit file's
/// folder when the audit trail is on.
pub fn writable_paths(config: &Config) -> Vec<PathBuf> {
    let spool = config.node.spool_dir.clone();
    let mut paths = vec![spool.clone()];
    if config.audit.enabled {
        let audit = config.audit.file_in(&spool);
        if let Some(folder) = audit.parent().filter(|f| !f.starts_with(&spool)) {
            paths.push(folder.to_path_buf());
        }
    }
    paths
}

/// Device nodes the daemon may open for writing: /dev/null, and an NVIDIA
/// GPU's (a Jetson's iGPU, or a discrete card) for CUDA. Not disks, not
/// memory.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/nvmap",
    "/dev/host1x-fence",
    "/dev/nvgpu",
    "/dev/nvhost-ctrl",
    "/dev/nvhost-ctrl-gpu",
    "/dev/nvhost-prof-gpu",
    "/dev/nvhost-gpu",
    "/dev/nvhost-as-gpu",
    "/dev/nvhost-dbg-gpu",
    "/dev/nvhost-tsg-gpu",
    "/dev/nvhost-ctxsw-gpu",
    "/dev/nvhost-sched-gpu",
    "/dev/nvhost-nvsched-gpu",
    "/dev/nvhost-power-gpu",
    "/dev/nvidiactl",
    "/dev/nvidia0",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
];

/// From now on, this thread and those it starts may create, change,
/// rename or remove files only beneath `folders` (created if missing), and
/// open for writing only the device nodes in `DEVICES` that exist.
pub fn confine_writes(folders: &[PathBuf]) -> Result<Confinement, SandboxError> {
    for f in folders {
        std::fs::create_dir_all(f).map_err(|source| SandboxError::Create {
            path: f.display().to_string(),
            source,
        })?;
    }
    let abi = ABI::V3;
    let write = AccessFs::from_write(abi);
    let status = Ruleset::default()
        .handle_access(write)?
        .create()?
        .add_rules(path_beneath_rules(folders, write))?
        .add_rules(path_beneath_rules(
            DEVICES.iter().map(Path::new),
            AccessFs::WriteFile | AccessFs::Truncate,
        ))?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Confinement::Enforced,
        RulesetStatus::PartiallyEnforced => Confinement::Partial,
        RulesetStatus::NotEnforced => Confinement::Unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_outside_the_allowed_folders_are_refused() {
        let allowed = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let spool = allowed.path().join("spool");
        let existing = outside.path().join("existing");
        std::fs::write(&existing, b"before").unwrap();
        let (spool_in, outside_in, existing_in) = (
            spool.clone(),
            outside.path().to_path_buf(),
            existing.clone(),
        );
        // The domain binds only this thread; the test harness's stay free.
        let seen = std::thread::spawn(move || {
            let confinement = confine_writes(std::slice::from_ref(&spool_in)).unwrap();
            let inside = std::fs::write(spool_in.join("a"), b"x")
                .and_then(|_| std::fs::create_dir(spool_in.join("d")))
                .and_then(|_| std::fs::rename(spool_in.join("a"), spool_in.join("d/b")))
                .and_then(|_| std::fs::remove_file(spool_in.join("d/b")));
            let create = std::fs::write(outside_in.join("new"), b"x");
            let overwrite = std::fs::write(&existing_in, b"after");
            let escape = std::fs::write(spool_in.join("c"), b"x")
                .and_then(|_| std::fs::rename(spool_in.join("c"), outside_in.join("c")));
            let mkdir = std::fs::create_dir(outside_in.join("d"));
            (confinement, inside, create, overwrite, escape, mkdir)
        })
        .join()
        .unwrap();
        let (confinement, inside, create, overwrite, escape, mkdir) = seen;
        assert_eq!(
            confinement,
            Confinement::Enforced,
            "this kernel has Landlock ABI 3 or later"
        );
        inside.expect("writes beneath the spool");
        for (what, r) in [
            ("create", create),
            ("overwrite", overwrite),
            ("rename out of the spool", escape),
            ("mkdir", mkdir),
        ] {
            let e = r.expect_err(what);
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{what}: {e}"
            );
        }
        assert_eq!(std::fs::read(&existing).unwrap(), b"before");
        assert!(!outside.path().join("new").exists());
        // This thread was never confined.
        std::fs::write(outside.path().join("free"), b"x").unwrap();
    }

    #[test]
    fn the_audit_folder_is_writable_only_when_it_is_elsewhere() {
        let mut c = Config::embedded_defaults();
        c.node.spool_dir = "/var/lib/firstlook/spool".into();
        assert_eq!(writable_paths(&c), vec![c.node.spool_dir.clone()]);
        c.audit.file = Some("/var/log/firstlook/audit.log".into());
        assert_eq!(
            writable_paths(&c),
            vec![
                c.node.spool_dir.clone(),
                PathBuf::from("/var/log/firstlook")
            ]
        );
        c.audit.enabled = false;
        assert_eq!(writable_paths(&c), vec![c.node.spool_dir.clone()]);
    }
}

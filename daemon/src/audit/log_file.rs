//! The local audit file: one syslog line per record, appended and synced
//! batch by batch, rotated by size (`audit.log`, `audit.log.1`, ...).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct AuditFile {
    path: PathBuf,
    file: Option<File>,
    len: u64,
    max_bytes: u64,
    keep: u32,
}

impl AuditFile {
    /// Opens (creates, mode 0640) `path` for appending.
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> std::io::Result<AuditFile> {
        let mut f = AuditFile {
            path: path.to_path_buf(),
            file: None,
            len: 0,
            max_bytes,
            keep: keep.max(1),
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&self.path)?;
        self.len = file.metadata()?.len();
        self.file = Some(file);
        Ok(())
    }

    /// Appends the lines and makes them durable; rotates past the size limit.
    pub fn append(&mut self, lines: &[String]) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        let mut buf = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        let file = self.file.as_mut().expect("opened above");
        let written = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Whatever part was written stays; the next batch starts on a fresh handle.
            self.file = None;
            return Err(e);
        }
        self.len += buf.len() as u64;
        if self.len >= self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        for n in (1..self.keep).rev() {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.reopen()?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_lines_and_rotates_keeping_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut f = AuditFile::open(&path, 100, 2).unwrap();
        for i in 0..7 {
            f.append(&[format!("{i:-<59}")]).unwrap();
        }
        // 60 bytes a line, rotated once past 100: two lines a file.
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        assert_eq!(read(path.clone()).lines().count(), 1);
        assert!(read(path.clone()).starts_with('6'));
        assert!(read(f.rotated(1)).starts_with('4'));
        assert!(read(f.rotated(2)).starts_with('2'));
        assert!(!f.rotated(3).exists(), "only `keep` rotated files stay");
        let mode = std::fs::metadata(&path).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o640);
    }

    #[test]
    fn reopening_continues_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        AuditFile::open(&path, 1 << 20, 2)
            .unwrap()
            .append(&["a".into()])
            .unwrap();
        AuditFile::open(&path, 1 << 20, 2)
            .unwrap()
            .append(&["b".into(), "c".into()])
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\nb\nc\n");
    }
}

//! Part-10 files: phantom studies, pydicom's test files, reading the meta
//! group, and comparing what was sent with what a PACS received.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use firstlook_phantom::{write_study, StudySpec};

use crate::process::run_cmd;

/// Writes a phantom study into `dir` and returns its files, parsed.
pub fn phantom(spec: &StudySpec, dir: &Path) -> Vec<DicomFile> {
    write_study(spec, dir)
        .unwrap_or_else(|e| panic!("phantom {spec:?}: {e}"))
        .iter()
        .map(|p| DicomFile::read(p))
        .collect()
}

/// A pydicom bundled test file, by name.
pub fn pydicom_test_file(name: &str) -> PathBuf {
    let out = run_cmd(
        Command::new("python3").arg("-c").arg(format!(
            "from pydicom.data import get_testdata_file; print(get_testdata_file({name:?}))"
        )),
        Duration::from_secs(60),
    );
    let path = PathBuf::from(out.stdout.trim());
    assert!(
        out.status.success() && path.is_file(),
        "pydicom test file {name} not found:\n{out}"
    );
    path
}

/// A Part-10 file: identifiers from its meta group, and its data set bytes.
#[derive(Debug, Clone)]
pub struct DicomFile {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub dataset: Vec<u8>,
}

impl DicomFile {
    /// A text element of the data set (padding trimmed), if present.
    pub fn text(&self, tag: dicom_object::Tag) -> Option<String> {
        let obj = dicom_object::open_file(&self.path).ok()?;
        let v = obj.element(tag).ok()?.to_str().ok()?;
        Some(v.trim_end_matches(['\0', ' ']).to_string())
    }

    /// The Study Instance UID; panics if there is none.
    pub fn study_uid(&self) -> String {
        self.text(dicom_object::Tag(0x0020, 0x000D))
            .unwrap_or_else(|| panic!("{}: no Study Instance UID", self.path.display()))
    }

    /// Reads a Part-10 file; panics with the path if it is not one.
    pub fn read(path: &Path) -> DicomFile {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        Self::parse(path, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn parse(path: &Path, bytes: &[u8]) -> Result<DicomFile, String> {
        if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
            return Err("no DICM prefix: not a Part-10 file".into());
        }
        let mut pos = 132;
        let mut meta = BTreeMap::new();
        while pos + 8 <= bytes.len() {
            let group = u16::from_le_bytes([bytes[pos], bytes[pos + 1]]);
            if group != 0x0002 {
                break;
            }
            let element = u16::from_le_bytes([bytes[pos + 2], bytes[pos + 3]]);
            let vr = &bytes[pos + 4..pos + 6];
            let (len, head) = if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT" | b"UC" | b"UR")
            {
                let l = bytes.get(pos + 8..pos + 12).ok_or("meta group truncated")?;
                (
                    u32::from_le_bytes(l.try_into().expect("4 bytes")) as usize,
                    12,
                )
            } else {
                (
                    u16::from_le_bytes([bytes[pos + 6], bytes[pos + 7]]) as usize,
                    8,
                )
            };
            let value = bytes
                .get(pos + head..pos + head + len)
                .ok_or("meta element runs past the end")?;
            meta.insert(
                element,
                String::from_utf8_lossy(value)
                    .trim_end_matches(['\0', ' '])
                    .to_string(),
            );
            pos += head + len;
        }
        // Cross-check with the daemon's own reader where a group length exists.
        if let Some(offset) = firstlook::spool::part10::dataset_offset(bytes) {
            if offset != pos {
                return Err(format!(
                    "meta group length says the data set starts at {offset}, the elements end at {pos}"
                ));
            }
        }
        let get = |e: u16| {
            meta.get(&e)
                .cloned()
                .ok_or_else(|| format!("meta element (0002,{e:04X}) missing"))
        };
        Ok(DicomFile {
            path: path.to_path_buf(),
            sop_class_uid: get(0x0002)?,
            sop_instance_uid: get(0x0003)?,
            transfer_syntax: get(0x0010)?,
            dataset: bytes[pos..].to_vec(),
        })
    }

    /// Every Part-10 file in `dir` (not recursing; hidden files skipped).
    pub fn read_dir(dir: &Path) -> Vec<DicomFile> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        files.sort();
        files.iter().map(|p| DicomFile::read(p)).collect()
    }
}

/// How many times each SOP Instance UID was received, for those received
/// more than once.
pub fn duplicates(received: &[DicomFile]) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in received {
        *counts.entry(r.sop_instance_uid.clone()).or_default() += 1;
    }
    counts.retain(|_, n| *n > 1);
    counts
}

/// Unique SOP Instance UIDs.
pub fn uids(files: &[DicomFile]) -> BTreeSet<String> {
    files.iter().map(|f| f.sop_instance_uid.clone()).collect()
}

/// Checks that every sent instance was received with the same SOP class and
/// transfer syntax and a byte-identical data set (every copy, if several);
/// returns the problems found, one line each.
pub fn compare_delivery(sent: &[DicomFile], received: &[DicomFile]) -> Vec<String> {
    let mut problems = Vec::new();
    for s in sent {
        let copies: Vec<&DicomFile> = received
            .iter()
            .filter(|r| r.sop_instance_uid == s.sop_instance_uid)
            .collect();
        if copies.is_empty() {
            problems.push(format!(
                "{} ({}) never arrived",
                s.sop_instance_uid,
                s.path.display()
            ));
        }
        for r in copies {
            if r.transfer_syntax != s.transfer_syntax {
                problems.push(format!(
                    "{}: transfer syntax {} arrived, {} was sent",
                    s.sop_instance_uid, r.transfer_syntax, s.transfer_syntax
                ));
            }
            if r.sop_class_uid != s.sop_class_uid {
                problems.push(format!(
                    "{}: SOP class {} arrived, {} was sent",
                    s.sop_instance_uid, r.sop_class_uid, s.sop_class_uid
                ));
            }
            if r.dataset != s.dataset {
                let first = r
                    .dataset
                    .iter()
                    .zip(&s.dataset)
                    .position(|(a, b)| a != b)
                    .unwrap_or(r.dataset.len().min(s.dataset.len()));
                problems.push(format!(
                    "{}: data set differs ({} bytes arrived in {}, {} sent from {}; first difference at byte {first})",
                    s.sop_instance_uid,
                    r.dataset.len(),
                    r.path.display(),
                    s.dataset.len(),
                    s.path.display()
                ));
            }
        }
    }
    problems
}

/// Panics listing every problem of [`compare_delivery`].
pub fn assert_delivered_identical(sent: &[DicomFile], received: &[DicomFile]) {
    let problems = compare_delivery(sent, received);
    assert!(
        problems.is_empty(),
        "{} of {} sent instances did not arrive intact ({} files received):\n{}",
        problems.len(),
        sent.len(),
        received.len(),
        problems.join("\n")
    );
}

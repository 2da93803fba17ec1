//! The fuzzers' committed seed corpus and every input that once crashed a
//! target (fuzz/regressions), replayed through the fuzz entry points on every
//! test run: none may panic or hang, and each target's seeds must include
//! inputs it accepts and inputs it refuses (the corpus reaches past the
//! first check, and the checks refuse something).

use std::path::{Path, PathBuf};

use firstlook::fuzzing::TARGETS;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|it| it.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn the_seed_corpus_and_past_crashes_replay_through_every_target() {
    for (name, target) in TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(name));
        assert!(seeds.len() >= 2, "{name}: no seed corpus");
        let accepted: Vec<&PathBuf> = seeds
            .iter()
            .filter(|f| target(&std::fs::read(f).unwrap()))
            .collect();
        assert!(!accepted.is_empty(), "{name}: no seed is accepted");
        assert!(
            accepted.len() < seeds.len(),
            "{name}: every seed is accepted, even {seeds:?}"
        );
        // Past crashes: the call returning is the check.
        for f in files(&fuzz_dir().join("regressions").join(name)) {
            target(&std::fs::read(&f).unwrap());
        }
    }
}

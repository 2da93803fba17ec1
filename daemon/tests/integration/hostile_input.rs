//! Mutated and random inputs to everything that parses bytes from the wire:
//! none may panic, and a broken input must be an error, never a success with
//! made-up content. (Coverage-guided fuzzing comes with the hardening work;
//! this is the deterministic floor that runs on every test.)

use bytes::Bytes;
use firstlook::dataset::{DatasetScanner, Encoding};
use firstlook::dimse::{Command, Priority, Reassembler};
use firstlook::spool::part10;
use firstlook::ul::split_pdata;
use firstlook_phantom::{Kind, StudySpec};

/// xorshift64*: deterministic, no dependency on a crate's API.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0x00, 0xFF, 0xFE, 0x7F][rng.below(4)];
            }
            2 => {
                let cut = rng.below(v.len() + 1);
                v.truncate(cut);
            }
            3 => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(16);
                for _ in 0..n {
                    v.insert(i, rng.next() as u8);
                }
            }
            _ if v.len() >= 4 => {
                // Lengths are where parsers break: overwrite four bytes.
                let i = rng.below(v.len() - 3);
                v[i..i + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
            }
            _ => {}
        }
    }
    v
}

fn sample_dataset() -> Vec<u8> {
    let spec = StudySpec::new(Kind::Ct, 77).with_count(1).with_size(32, 32);
    let file = firstlook_phantom::generate(&spec)
        .unwrap()
        .remove(0)
        .file_bytes;
    let at = part10::dataset_offset(&file).unwrap();
    file[at..].to_vec()
}

const EXPLICIT: &str = "1.2.840.10008.1.2.1";

#[test]
fn mutated_command_sets_never_panic() {
    let valid =
        Command::c_store_rq(3, "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", Priority::High).encode();
    assert!(Command::decode(&valid).is_ok());
    let mut rng = Rng(0x1234_5678);
    let mut rejected = 0;
    for _ in 0..20_000 {
        let m = mutate(&mut rng, &valid);
        if Command::decode(&m).is_err() {
            rejected += 1;
        }
    }
    assert!(
        rejected > 1000,
        "mutations should mostly be rejected, got {rejected}"
    );
}

#[test]
fn mutated_data_sets_never_panic_and_truncation_is_always_caught() {
    let valid = sample_dataset();
    let enc = Encoding::of(EXPLICIT).unwrap();
    let scan = |bytes: &[u8], chunk: usize| {
        let mut s = DatasetScanner::new(enc);
        for c in bytes.chunks(chunk.max(1)) {
            s.push(c)?;
        }
        s.finish()
    };
    let whole = scan(&valid, 4096).unwrap();
    assert!(whole.sop_instance_uid.is_some());
    let mut rng = Rng(42);
    for i in 0..3_000 {
        let m = mutate(&mut rng, &valid);
        let _ = scan(&m, 1 + i % 700);
    }
    // Cutting inside the pixel data (the last element) always leaves it open.
    for cut in [valid.len() - 1, valid.len() - 100, valid.len() - 1000] {
        assert!(scan(&valid[..cut], 333).is_err(), "cut at {cut} accepted");
    }
    let deflated = Encoding::of("1.2.840.10008.1.2.1.99").unwrap();
    for _ in 0..500 {
        let m = mutate(&mut rng, &valid[..2000]);
        let mut s = DatasetScanner::new(deflated);
        let _ = s.push(&m).and_then(|_| s.finish().map(|_| ()));
    }
}

#[test]
fn mutated_pdata_and_fragment_streams_never_panic() {
    let cmd =
        Command::c_store_rq(1, "1.2.840.10008.5.1.4.1.1.2", "1.2.3", Priority::Medium).encode();
    let mut body = Vec::new();
    for (data, control) in [
        (&cmd[..], 0x03u8),
        (&b"abcdefgh"[..], 0x00),
        (&b"ij"[..], 0x02),
    ] {
        body.extend_from_slice(&(data.len() as u32 + 2).to_be_bytes());
        body.push(1);
        body.push(control);
        body.extend_from_slice(data);
    }
    assert_eq!(split_pdata(Bytes::from(body.clone())).unwrap().len(), 3);
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let m = mutate(&mut rng, &body);
        let Ok(pdvs) = split_pdata(Bytes::from(m)) else {
            continue;
        };
        let mut r = Reassembler::new();
        for p in pdvs {
            if r.push(p.context_id, p.is_command, p.is_last, &p.data)
                .is_err()
            {
                break;
            }
        }
    }
}

//! From instances to the units a decision is made on: a radiograph is its
//! own unit; the slices of a CT series are gathered until the series is
//! complete (ImagesInAcquisition reached) or idle for a configured time.

use std::collections::{HashMap, VecDeque};

use super::SliceResult;

/// Modalities whose series are judged as a whole.
pub fn is_volume(modality: &str) -> bool {
    matches!(modality, "CT" | "MR" | "PT")
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnitKey {
    /// One image, by SOP Instance UID.
    Instance(String),
    /// One series, by Series Instance UID.
    Series(String),
}

impl std::fmt::Display for UnitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnitKey::Instance(uid) => write!(f, "instance {uid}"),
            UnitKey::Series(uid) => write!(f, "series {uid}"),
        }
    }
}

/// Why a unit was judged when it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// A single image.
    Single,
    /// Every expected slice arrived.
    Count { expected: u32 },
    /// No slice arrived for the idle time; `expected` if the series said.
    Idle {
        received: usize,
        expected: Option<u32>,
    },
}

impl Completion {
    /// The slices that were expected but never came, if known.
    pub fn missing(&self) -> Option<(usize, u32)> {
        match *self {
            Completion::Idle {
                received,
                expected: Some(e),
            } if received < e as usize => Some((received, e)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Completion::Single => f.write_str("single image"),
            Completion::Count { expected } => write!(f, "all {expected} slices"),
            Completion::Idle {
                received,
                expected: Some(e),
            } => write!(f, "idle timeout with {received} of {e} slices"),
            Completion::Idle { received, .. } => {
                write!(f, "idle timeout with {received} slices")
            }
        }
    }
}

/// A unit ready for a decision; slices in position order.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    pub key: UnitKey,
    pub slices: Vec<SliceResult>,
    pub completion: Completion,
    /// Slices arrived after the series was judged; this judgement replaces it.
    pub reassessed: bool,
}

impl Unit {
    pub fn modality(&self) -> &str {
        self.slices
            .first()
            .and_then(|s| s.facts.modality.as_deref())
            .unwrap_or("")
    }
}

struct Open {
    slices: Vec<SliceResult>,
    last_at_ms: i64,
    expected: Option<u32>,
    reassessed: bool,
}

/// How many judged series are remembered, so late slices re-judge the whole.
const KEEP_JUDGED: usize = 64;

/// Gathers slices into units. Times are given by the caller.
pub struct Assembler {
    idle_ms: i64,
    open: HashMap<String, Open>,
    judged: VecDeque<(String, Vec<SliceResult>)>,
}

impl Assembler {
    pub fn new(idle_ms: i64) -> Assembler {
        Assembler {
            idle_ms,
            open: HashMap::new(),
            judged: VecDeque::new(),
        }
    }

    /// Adds one slice; returns a unit when this slice completes one.
    pub fn add(&mut self, slice: SliceResult, now_ms: i64) -> Option<Unit> {
        let volume = slice.facts.modality.as_deref().is_some_and(is_volume);
        let series = match (&slice.facts.series_uid, volume) {
            (Some(uid), true) => uid.clone(),
            _ => {
                return Some(Unit {
                    key: UnitKey::Instance(slice.facts.sop_instance_uid.clone()),
                    slices: vec![slice],
                    completion: Completion::Single,
                    reassessed: false,
                })
            }
        };
        let open = self.open.entry(series.clone()).or_insert_with(|| {
            match self.judged.iter().position(|(uid, _)| *uid == series) {
                Some(at) => {
                    let (_, slices) = self.judged.remove(at).expect("position is in range");
                    Open {
                        slices,
                        last_at_ms: now_ms,
                        expected: None,
                        reassessed: true,
                    }
                }
                None => Open {
                    slices: Vec::new(),
                    last_at_ms: now_ms,
                    expected: None,
                    reassessed: false,
                },
            }
        });
        if let Some(n) = slice.facts.images_in_acquisition.filter(|&n| n > 0) {
            open.expected = Some(open.expected.map_or(n, |e| e.max(n)));
        }
        let uid = &slice.facts.sop_instance_uid;
        match open
            .slices
            .iter_mut()
            .find(|s| s.facts.sop_instance_uid == *uid)
        {
            Some(same) => *same = slice,
            None => open.slices.push(slice),
        }
        open.last_at_ms = now_ms;
        // A re-opened series waits for the idle time: a re-sent series would
        // otherwise be judged again on every slice.
        let complete = !open.reassessed
            && open
                .expected
                .is_some_and(|e| open.slices.len() >= e as usize);
        if complete {
            let expected = open.expected.expect("checked above");
            return Some(self.close(&series, Completion::Count { expected }));
        }
        None
    }

    /// Units whose series went idle by `now_ms`.
    pub fn due(&mut self, now_ms: i64) -> Vec<Unit> {
        let mut idle: Vec<(i64, String)> = self
            .open
            .iter()
            .filter(|(_, o)| now_ms - o.last_at_ms >= self.idle_ms)
            .map(|(uid, o)| (o.last_at_ms, uid.clone()))
            .collect();
        idle.sort();
        idle.into_iter()
            .map(|(_, uid)| {
                let o = &self.open[&uid];
                let completion = Completion::Idle {
                    received: o.slices.len(),
                    expected: o.expected,
                };
                self.close(&uid, completion)
            })
            .collect()
    }

    /// When the next series goes idle, if any is open.
    pub fn next_deadline(&self) -> Option<i64> {
        self.open
            .values()
            .map(|o| o.last_at_ms + self.idle_ms)
            .min()
    }

    /// Series still gathering slices.
    pub fn open_series(&self) -> usize {
        self.open.len()
    }

    fn close(&mut self, uid: &str, completion: Completion) -> Unit {
        let open = self.open.remove(uid).expect("closing an open series");
        let mut slices = open.slices;
        slices.sort_by(|a, b| {
            let key = |s: &SliceResult| {
                (
                    s.facts.slice_location().unwrap_or(f64::NAN),
                    s.facts.instance_number.unwrap_or(i64::MAX),
                    s.facts.instance_id,
                )
            };
            let (la, na, ia) = key(a);
            let (lb, nb, ib) = key(b);
            la.total_cmp(&lb).then(na.cmp(&nb)).then(ia.cmp(&ib))
        });
        if self.judged.len() == KEEP_JUDGED {
            self.judged.pop_front();
        }
        self.judged.push_back((uid.to_owned(), slices.clone()));
        Unit {
            key: UnitKey::Series(uid.to_owned()),
            slices,
            completion,
            reassessed: open.reassessed,
        }
    }
}

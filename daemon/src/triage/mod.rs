//! Triage as pure functions over data: which model route an instance takes,
//! whether it can be assessed, when a series is complete, and what the model
//! decided. No IO and no clock: every time is passed in, so the same inputs
//! (replayed from the audit log) give the same decisions.
//!
//! The daemon's `inference` module does the IO around it: reading instances
//! from the spool, decoding, running the engine, storing and announcing
//! decisions.

use serde::{Deserialize, Serialize};

mod decide;
mod routing;
mod series;

pub use decide::{aggregate, decide, Decision, ModelInfo, Outcome};
pub use routing::{gate, route, Routing};
pub use series::{Assembler, Completion, Unit, UnitKey};

/// What triage needs to know about one received instance, read from its
/// data set by the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceFacts {
    pub instance_id: i64,
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub modality: Option<String>,
    pub body_part: Option<String>,
    pub view_position: Option<String>,
    pub photometric: Option<String>,
    pub rows: Option<u32>,
    pub cols: Option<u32>,
    pub frames: u32,
    /// Row and column spacing in mm (PixelSpacing, else ImagerPixelSpacing).
    pub pixel_spacing: Option<[f64; 2]>,
    pub orientation: Option<[f64; 6]>,
    pub position: Option<[f64; 3]>,
    pub instance_number: Option<i64>,
    /// ImagesInAcquisition: how many slices the series will have, if known.
    pub images_in_acquisition: Option<u32>,
    /// When the C-STORE was committed, ms since the epoch.
    pub received_at_ms: i64,
    /// Who sent it (the association's calling AE title).
    #[serde(default)]
    pub calling_ae: String,
}

impl InstanceFacts {
    /// Where the slice lies along the normal of its plane, for ordering.
    pub fn slice_location(&self) -> Option<f64> {
        let o = self.orientation?;
        let p = self.position?;
        let n = normal(&o);
        Some(n[0] * p[0] + n[1] * p[1] + n[2] * p[2])
    }
}

/// The unit normal of an ImageOrientationPatient (row × column direction).
pub fn normal(o: &[f64; 6]) -> [f64; 3] {
    let n = [
        o[1] * o[5] - o[2] * o[4],
        o[2] * o[3] - o[0] * o[5],
        o[0] * o[4] - o[1] * o[3],
    ];
    let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    if len > 0.0 {
        [n[0] / len, n[1] / len, n[2] / len]
    } else {
        n
    }
}

/// What happened to one instance in the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceOutcome {
    /// The model ran: one logit per manifest output index.
    Scored { logits: Vec<f32> },
    /// The instance is for this model but cannot be assessed (the reason says why).
    NotAssessable(String),
    /// Decoding or the model failed.
    Error(String),
}

/// One instance after inference, with its timestamps (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceResult {
    pub facts: InstanceFacts,
    pub outcome: SliceOutcome,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    /// Where the time went, for monitoring and the benchmarks.
    #[serde(default)]
    pub timing: Timing,
}

/// Milliseconds spent in each step of one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Reading the instance from the spool and parsing it.
    pub read_ms: f32,
    /// Pixel decoding and the modality LUT.
    pub decode_ms: f32,
    pub preprocess_ms: f32,
    pub inference_ms: f32,
}

#[cfg(test)]
mod tests;

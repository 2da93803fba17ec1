//! From a unit's slice scores to one decision per finding, against the
//! bundle's operating points. Every decision carries what it rests on.

use serde::{Deserialize, Serialize};

use crate::bundle::{AggregationRule, Manifest};

use super::series::Unit;
use super::SliceOutcome;

/// The model a decision came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub engine: String,
    /// Whether the bundle may inform care; the demo's may not.
    pub clinical_use: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Over the operating point, for a finding marked urgent.
    Urgent,
    /// Over the operating point, for a finding not marked urgent.
    Finding,
    NoFinding,
    NotAssessable,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Urgent => "urgent",
            Outcome::Finding => "finding",
            Outcome::NoFinding => "no_finding",
            Outcome::NotAssessable => "not_assessable",
            Outcome::Error => "error",
        }
    }

    /// Whether a technologist must see it: a finding, or a failure to look.
    pub fn needs_attention(self) -> bool {
        !matches!(self, Outcome::NoFinding)
    }
}

/// One decision on one finding for one unit (image or series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub unit: String,
    pub study_uid: Option<String>,
    pub series_uid: Option<String>,
    pub modality: String,
    /// The calling AE title of the scanner that sent the first input.
    #[serde(default)]
    pub scanner: String,
    /// `None` only when no model could be loaded at all.
    pub finding: Option<String>,
    pub finding_display: Option<String>,
    pub outcome: Outcome,
    /// The aggregated logit.
    pub score: Option<f32>,
    /// The operating point's threshold on the logit.
    pub threshold: Option<f64>,
    pub operating_point: Option<String>,
    pub reason: Option<String>,
    pub completion: String,
    pub reassessed: bool,
    /// SOP Instance UIDs the decision rests on, in slice order.
    pub inputs: Vec<String>,
    pub received_first_ms: i64,
    pub received_last_ms: i64,
    pub inference_started_ms: i64,
    pub inference_ended_ms: i64,
    pub decided_at_ms: i64,
    pub model: ModelInfo,
}

/// The series score of slice scores (in slice order) under `rule`; `None`
/// when there are none.
pub fn aggregate(rule: AggregationRule, k: Option<u32>, scores: &[f32]) -> Option<f32> {
    if scores.is_empty() {
        return None;
    }
    let k = (k.unwrap_or(1).max(1) as usize).min(scores.len());
    Some(match rule {
        AggregationRule::Max => scores.iter().copied().fold(f32::NEG_INFINITY, f32::max),
        AggregationRule::TopKMean => {
            let mut sorted = scores.to_vec();
            sorted.sort_by(|a, b| b.total_cmp(a));
            sorted[..k].iter().sum::<f32>() / k as f32
        }
        AggregationRule::ConsecutiveK => scores
            .windows(k)
            .map(|w| w.iter().copied().fold(f32::INFINITY, f32::min))
            .fold(f32::NEG_INFINITY, f32::max),
    })
}

/// One decision per finding that applies to the unit's modality. With no
/// manifest (the model could not be loaded) the unit gets one `error`.
pub fn decide(
    manifest: Option<&Manifest>,
    unit: &Unit,
    model: &ModelInfo,
    now_ms: i64,
) -> Vec<Decision> {
    let base = base(unit, model, now_ms);
    let Some(manifest) = manifest else {
        return vec![Decision {
            outcome: Outcome::Error,
            reason: first_error(unit).or(Some("no model is loaded".into())),
            ..base
        }];
    };
    let total = unit.slices.len();
    let errors: Vec<&str> = unit
        .slices
        .iter()
        .filter_map(|s| match &s.outcome {
            SliceOutcome::Error(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    let not_assessable: Vec<&str> = unit
        .slices
        .iter()
        .filter_map(|s| match &s.outcome {
            SliceOutcome::NotAssessable(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    manifest
        .findings
        .iter()
        .filter(|f| f.modalities.iter().any(|m| m == unit.modality()))
        .map(|f| {
            let mut short = false;
            let scores: Vec<f32> = unit
                .slices
                .iter()
                .filter_map(|s| match &s.outcome {
                    SliceOutcome::Scored { logits } => {
                        let v = logits.get(f.output_index).copied();
                        short |= v.is_none();
                        v
                    }
                    _ => None,
                })
                .collect();
            let score = aggregate(manifest.aggregation.rule, manifest.aggregation.k, &scores);
            let positive = score.is_some_and(|s| f64::from(s) > f.threshold);
            let (outcome, reason) = if short {
                (
                    Outcome::Error,
                    Some(format!(
                        "the model gave no logit {} for this finding",
                        f.output_index
                    )),
                )
            } else if positive {
                let outcome = if f.urgent {
                    Outcome::Urgent
                } else {
                    Outcome::Finding
                };
                let caveat = (!errors.is_empty() || !not_assessable.is_empty()).then(|| {
                    format!(
                        "{} of {total} slices were not scored",
                        errors.len() + not_assessable.len()
                    )
                });
                (outcome, caveat)
            } else if let Some(first) = errors.first() {
                (
                    Outcome::Error,
                    Some(format!(
                        "{} of {total} slices failed: {first}",
                        errors.len()
                    )),
                )
            } else if scores.is_empty() {
                (
                    Outcome::NotAssessable,
                    not_assessable.first().map(|r| r.to_string()),
                )
            } else if not_assessable.len() * 2 > total {
                (
                    Outcome::NotAssessable,
                    Some(format!(
                        "{} of {total} slices not assessable: {}",
                        not_assessable.len(),
                        not_assessable[0]
                    )),
                )
            } else if let Some((received, expected)) = unit.completion.missing() {
                (
                    Outcome::NotAssessable,
                    Some(format!(
                        "series incomplete: {received} of {expected} slices arrived"
                    )),
                )
            } else {
                let note = (!not_assessable.is_empty()).then(|| {
                    format!(
                        "{} of {total} slices not assessable: {}",
                        not_assessable.len(),
                        not_assessable[0]
                    )
                });
                (Outcome::NoFinding, note)
            };
            Decision {
                finding: Some(f.id.clone()),
                finding_display: Some(f.display.clone()),
                outcome,
                score,
                threshold: Some(f.threshold),
                operating_point: Some(format!(
                    "sensitivity {:.3}, specificity {:.3} ({})",
                    f.operating_point.sensitivity,
                    f.operating_point.specificity,
                    f.operating_point.chosen_on
                )),
                reason,
                ..base.clone()
            }
        })
        .collect()
}

fn first_error(unit: &Unit) -> Option<String> {
    unit.slices.iter().find_map(|s| match &s.outcome {
        SliceOutcome::Error(e) | SliceOutcome::NotAssessable(e) => Some(e.clone()),
        SliceOutcome::Scored { .. } => None,
    })
}

fn base(unit: &Unit, model: &ModelInfo, now_ms: i64) -> Decision {
    let s = &unit.slices;
    let first = s.first().map(|s| &s.facts);
    let min = |f: fn(&super::SliceResult) -> i64| s.iter().map(f).min().unwrap_or(0);
    let max = |f: fn(&super::SliceResult) -> i64| s.iter().map(f).max().unwrap_or(0);
    Decision {
        unit: unit.key.to_string(),
        study_uid: first.and_then(|f| f.study_uid.clone()),
        series_uid: first.and_then(|f| f.series_uid.clone()),
        modality: unit.modality().to_owned(),
        scanner: first.map(|f| f.calling_ae.clone()).unwrap_or_default(),
        finding: None,
        finding_display: None,
        outcome: Outcome::Error,
        score: None,
        threshold: None,
        operating_point: None,
        reason: None,
        completion: unit.completion.to_string(),
        reassessed: unit.reassessed,
        inputs: s.iter().map(|s| s.facts.sop_instance_uid.clone()).collect(),
        received_first_ms: min(|s| s.facts.received_at_ms),
        received_last_ms: max(|s| s.facts.received_at_ms),
        inference_started_ms: min(|s| s.started_at_ms),
        inference_ended_ms: max(|s| s.ended_at_ms),
        decided_at_ms: now_ms,
        model: model.clone(),
    }
}

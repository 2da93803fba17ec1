//! One inference thread: reads a stored instance, routes and gates it,
//! decodes its pixels and runs the model. Every failure becomes a result
//! with its reason; nothing here can stop forwarding.

use std::sync::Arc;
use std::time::Instant;

use firstlook_kernels::preprocess::PreprocessError;

use crate::bundle::Manifest;
use crate::model::{Model, ModelError};
use crate::pixels::PixelError;
use crate::spool::{now_ms, part10, Spool};
use crate::triage::{self, InstanceFacts, Routing, SliceOutcome, SliceResult, Timing};

use super::facts;
use super::store::Pending;

/// What a worker made of one instance.
#[derive(Debug)]
pub enum Output {
    /// No route of the model takes it.
    NotApplicable {
        instance_id: i64,
        reason: String,
    },
    Slice(Box<SliceResult>),
}

/// The model as a worker holds it.
pub enum Loaded {
    Ready(Box<Model>),
    /// The bundle or its engine could not be loaded: why.
    Broken(String),
}

pub struct Worker {
    pub spool: Arc<Spool>,
    pub manifest: Option<Arc<Manifest>>,
    pub model: Loaded,
    buf: Vec<u8>,
}

impl Worker {
    pub fn new(spool: Arc<Spool>, manifest: Option<Arc<Manifest>>, model: Loaded) -> Worker {
        Worker {
            spool,
            manifest,
            model,
            buf: Vec::new(),
        }
    }

    pub fn process(&mut self, p: &Pending) -> Output {
        let base = facts::from_index(p);
        let started = now_ms();
        let mut timing = Timing::default();
        let mut clock = Instant::now();
        let mut lap = || {
            let ms = clock.elapsed().as_secs_f32() * 1000.0;
            clock = Instant::now();
            ms
        };
        let slice = |facts: InstanceFacts, outcome: SliceOutcome, timing: Timing| {
            Output::Slice(Box::new(SliceResult {
                facts,
                outcome,
                started_at_ms: started,
                ended_at_ms: now_ms(),
                timing,
            }))
        };
        if let Err(e) =
            self.spool
                .read_dataset_into(p.segment, p.body_offset, 0, p.body_len, &mut self.buf)
        {
            let error = format!("the stored instance cannot be read: {e}");
            return slice(base, SliceOutcome::Error(error), timing);
        }
        // The data set up to its Pixel Data; the samples are then read in
        // place from the buffer, not copied into an element.
        let stored = match part10::Stored::read(&self.buf) {
            Ok(stored) => stored,
            Err(error) => return slice(base, SliceOutcome::Error(error), timing),
        };
        timing.read_ms = lap();
        let facts = facts::read(stored.attributes(), base, stored.has_pixels());
        let Some(manifest) = self.manifest.as_deref() else {
            let reason = match &self.model {
                Loaded::Broken(reason) => reason.clone(),
                Loaded::Ready(_) => "no model is loaded".into(),
            };
            if facts.rows.is_none() {
                return Output::NotApplicable {
                    instance_id: facts.instance_id,
                    reason: format!("not an image ({reason})"),
                };
            }
            return slice(facts, SliceOutcome::Error(reason), timing);
        };
        let route = match triage::route(manifest, &facts) {
            Routing::Applies { route } => route,
            Routing::NotApplicable(reason) => {
                return Output::NotApplicable {
                    instance_id: facts.instance_id,
                    reason,
                }
            }
        };
        if let Err(reason) = triage::gate(manifest, &facts) {
            return slice(facts, SliceOutcome::NotAssessable(reason), timing);
        }
        let model = match &mut self.model {
            Loaded::Ready(model) => model,
            Loaded::Broken(reason) => {
                let reason = reason.clone();
                return slice(facts, SliceOutcome::Error(reason), timing);
            }
        };
        let unreadable = |e: PixelError| match e {
            PixelError::UnknownSyntax(_) | PixelError::Decode(_) => {
                SliceOutcome::Error(e.to_string())
            }
            e => SliceOutcome::NotAssessable(e.to_string()),
        };
        let pixels = match stored.pixels(&self.buf) {
            Ok(pixels) => pixels,
            Err(e) => return slice(facts, unreadable(e), timing),
        };
        let image = match pixels.frame(0) {
            Ok(image) => image,
            Err(e) => return slice(facts, unreadable(e), timing),
        };
        timing.decode_ms = lap();
        let outcome = match model.input(&image, route).and_then(|input| {
            timing.preprocess_ms = lap();
            let logits = model.infer_logits(&input);
            timing.inference_ms = lap();
            logits
        }) {
            Ok(logits) => SliceOutcome::Scored { logits },
            Err(
                e @ (ModelError::Preprocess(
                    PreprocessError::Flat { .. } | PreprocessError::Window(_),
                )
                | ModelError::Route(_)),
            ) => SliceOutcome::NotAssessable(e.to_string()),
            Err(e) => SliceOutcome::Error(format!("the model failed: {e}")),
        };
        slice(facts, outcome, timing)
    }
}

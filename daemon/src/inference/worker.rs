//! One inference thread: reads a stored instance, routes and gates it,
//! decodes its pixels and runs the model. Every failure becomes a result
//! with its reason; nothing here can stop forwarding.

use std::sync::Arc;
use std::time::Instant;

use firstlook_kernels::preprocess::PreprocessError;

use crate::bundle::Manifest;
use crate::model::{Model, ModelError};
use crate::pixels::PixelError;
use crate::spool::{now_ms, part10, OpenSegment, Spool};
use crate::triage::{self, InstanceFacts, Routing, SliceOutcome, SliceResult, Timing};

use super::facts;
use super::store::Pending;

/// A stored instance's first bytes, read on their own: more than the
/// header of any usual image holds.
const HEAD_BYTES: u64 = 64 * 1024;

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

    /// The stored instance's data set up to its Pixel Data. Native samples
    /// that end it are left where they lie, to be read a band of rows at a
    /// time as they are resized; anything else is read whole into the
    /// buffer, the samples in place in it (then `true`).
    fn read(&mut self, p: &Pending) -> Result<(part10::Stored, OpenSegment, bool), String> {
        let cannot_read = |e: std::io::Error| format!("the stored instance cannot be read: {e}");
        let segment = self.spool.open_segment(p.segment).map_err(cannot_read)?;
        let head_len = p.body_len.min(HEAD_BYTES);
        segment
            .read_into(p.body_offset, head_len, &mut self.buf)
            .map_err(cannot_read)?;
        if head_len < p.body_len {
            if let Some(stored) = part10::Stored::read_head(&self.buf, p.body_len as usize) {
                return Ok((stored, segment, false));
            }
            segment
                .read_into(p.body_offset, p.body_len, &mut self.buf)
                .map_err(cannot_read)?;
        }
        Ok((part10::Stored::read(&self.buf)?, segment, true))
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
        let (stored, segment, whole) = match self.read(p) {
            Ok(read) => read,
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
        let pixels = if whole {
            stored.pixels(&self.buf)
        } else {
            stored.pixels_at(segment.file(), p.body_offset)
        };
        let pixels = match pixels {
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
            Err(ModelError::Preprocess(e @ PreprocessError::Read(_))) => {
                SliceOutcome::Error(e.to_string())
            }
            Err(e) => SliceOutcome::Error(format!("the model failed: {e}")),
        };
        slice(facts, outcome, timing)
    }
}

#[cfg(test)]
mod tests {
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::tags;

    use super::*;
    use crate::bundle::Bundle;
    use crate::model::Variant;
    use crate::spool::{RecordHeader, RecordSummary, SpoolOptions};

    /// Stores a Part-10 file in the spool as ingest would, and returns it
    /// as the triage feed would hand it to a worker.
    async fn store(spool: &Arc<Spool>, file: &[u8]) -> Pending {
        let obj = part10::parse(file, false).unwrap();
        let uid = |tag| crate::pixels::text(&obj, tag);
        let meta = obj.meta();
        let trim = |s: &str| s.trim_end_matches('\0').to_string();
        let split = part10::dataset_offset(file).unwrap();
        let header = RecordHeader {
            sop_class_uid: trim(&meta.media_storage_sop_class_uid),
            sop_instance_uid: trim(&meta.media_storage_sop_instance_uid),
            transfer_syntax_uid: trim(meta.transfer_syntax()),
            calling_ae: "CR01".into(),
            peer: "127.0.0.1".into(),
            received_at: now_ms(),
            dataset_offset: split as u64,
        };
        let summary = RecordSummary {
            study_instance_uid: uid(tags::STUDY_INSTANCE_UID),
            series_instance_uid: uid(tags::SERIES_INSTANCE_UID),
            modality: uid(tags::MODALITY),
            instance_number: Some(1),
        };
        let sop = header.sop_instance_uid.clone();
        spool
            .store_own(
                header,
                file[..split].to_vec(),
                file[split..].to_vec(),
                summary,
                Vec::new(),
                0,
            )
            .await
            .unwrap();
        let pending = spool
            .index()
            .call(|c| super::super::store::pending(c, 0, 10))
            .await
            .unwrap();
        pending
            .into_iter()
            .find(|p| p.sop_instance_uid == sop)
            .expect("pending")
    }

    fn scored(output: Output) -> Vec<f32> {
        match output {
            Output::Slice(s) => match s.outcome {
                SliceOutcome::Scored { logits } => logits,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn native_pixels_are_read_from_the_segment_as_they_are_resized() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(&SpoolOptions {
            dir: dir.path().join("spool"),
            destinations: Vec::new(),
            segment_max_bytes: 1 << 30,
            high_watermark_percent: 100,
            low_watermark_percent: 99,
        })
        .unwrap();
        spool.index().call(super::super::store::init).await.unwrap();
        let files = firstlook_phantom::write_study(
            &firstlook_phantom::StudySpec::new(firstlook_phantom::Kind::Cr, 7)
                .with_finding(firstlook_phantom::Finding::Pneumothorax),
            &dir.path().join("send"),
        )
        .unwrap();
        let file = std::fs::read(&files[0]).unwrap();
        // The same image with an element after its pixels: read whole.
        let mut obj = part10::parse(&file, false).unwrap();
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("2.25.4242"),
        ));
        obj.put(DataElement::new(
            tags::DATA_SET_TRAILING_PADDING,
            VR::OB,
            PrimitiveValue::from(vec![0u8; 8]),
        ));
        obj.meta_mut().media_storage_sop_instance_uid = "2.25.4242".into();
        let mut trailing = Vec::new();
        obj.write_all(&mut trailing).unwrap();

        let bundle = Bundle::embedded_demo().unwrap();
        let manifest = Arc::new(bundle.manifest().clone());
        let (model, _) = Model::load(bundle, Variant::Fp32).unwrap();
        let mut worker = Worker::new(
            Arc::clone(&spool),
            Some(manifest),
            Loaded::Ready(Box::new(model)),
        );

        let in_place = store(&spool, &file).await;
        assert!(in_place.body_len > 4_000_000);
        let logits = scored(worker.process(&in_place));
        assert!(
            worker.buf.capacity() < 1_000_000,
            "only the head was read into memory, not {} bytes",
            worker.buf.capacity()
        );
        let whole = store(&spool, &trailing).await;
        assert_eq!(scored(worker.process(&whole)), logits);
        assert!(worker.buf.capacity() as u64 >= whole.body_len);

        // A record whose segment has gone is an error decision, not a crash.
        std::fs::remove_dir_all(dir.path().join("spool/segments")).unwrap();
        match worker.process(&in_place) {
            Output::Slice(s) => assert!(
                matches!(&s.outcome, SliceOutcome::Error(why) if why.contains("cannot be read")),
                "{:?}",
                s.outcome
            ),
            other => panic!("{other:?}"),
        }
    }
}

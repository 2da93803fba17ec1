//! A verified bundle loaded into an inference engine: it proves itself on its
//! golden cases before it is used, and scores one image at a time.

use firstlook_kernels::engine::{Engine, EngineError, Tensor, TractEngine};
use firstlook_kernels::npy;
use firstlook_kernels::preprocess::PreprocessError;

use crate::bundle::Bundle;
use crate::config::EngineChoice;
use crate::pixels::ModalityImage;
use firstlook_kernels::preprocess::Rows;

/// Which of the bundle's models to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Fp32,
    Int8,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("the bundle has no INT8 model")]
    NoInt8,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("golden file {path}: {reason}")]
    GoldenFile { path: String, reason: String },
    #[error("golden case {case}, output {output}: value {index} is {got}, expected {want} (tolerance {tolerance})")]
    GoldenMismatch {
        case: usize,
        output: usize,
        index: usize,
        got: f32,
        want: f32,
        tolerance: f64,
    },
    #[error("modality {0} has no preprocessing route in this bundle")]
    NoRoute(String),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("output {name} is missing from the model's outputs")]
    MissingOutput { name: &'static str },
    #[error("the logits output holds {got} values, the manifest declares {want}")]
    LogitsLength { want: usize, got: usize },
    #[error("body part {0:?} is outside this bundle's applicability")]
    BodyPart(String),
    #[error("engine {0}")]
    EngineUnavailable(String),
    #[error(transparent)]
    Route(#[from] crate::bundle::RouteError),
}

/// Largest difference seen on the golden cases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoldenReport {
    pub cases: usize,
    pub max_abs_diff: f32,
}

/// Scores of one image: per finding, in manifest order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub findings: Vec<FindingScore>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FindingScore {
    pub id: String,
    pub logit: f32,
    pub probability: f32,
    pub threshold: f64,
    pub positive: bool,
    /// Whether the finding applies to this image's modality.
    pub applicable: bool,
}

/// The model's maps, one plane of `rows` × `cols` per finding output.
pub struct Maps {
    pub rows: usize,
    pub cols: usize,
    data: Vec<f32>,
}

impl Maps {
    /// The map of the finding at `output_index`, row by row.
    pub fn plane(&self, output_index: usize) -> Option<&[f32]> {
        let plane = self.rows * self.cols;
        self.data
            .get(output_index * plane..(output_index + 1) * plane)
    }
}

pub struct Model {
    bundle: Bundle,
    engine: Box<dyn Engine>,
    variant: Variant,
    /// Why this is not the engine `auto` chose (TensorRT failed on it).
    note: Option<String>,
}

/// What `choice` means in this build on this machine: `Auto` is TensorRT
/// where this build has it and a CUDA device answers, else ONNX Runtime
/// when its library loads (feature `ort`, `ORT_DYLIB_PATH`), else tract.
pub fn resolve(choice: EngineChoice) -> EngineChoice {
    match choice {
        EngineChoice::Auto if tensorrt_unavailable().is_none() => EngineChoice::Tensorrt,
        EngineChoice::Auto => resolve_cpu(),
        other => other,
    }
}

/// The best CPU engine: ONNX Runtime when its library loads, else tract.
fn resolve_cpu() -> EngineChoice {
    if onnxruntime_loads() {
        EngineChoice::Onnxruntime
    } else {
        EngineChoice::Tract
    }
}

/// Loads with `resolved`, what `choice` meant here; when `auto` chose
/// TensorRT and TensorRT cannot build, load or prove the model, loads on the
/// CPU instead and says why (a GPU that fails must not leave images unread).
fn with_cpu_fallback<T>(
    choice: EngineChoice,
    resolved: EngineChoice,
    mut load: impl FnMut(EngineChoice) -> Result<T, ModelError>,
) -> Result<(T, Option<String>), ModelError> {
    match load(resolved) {
        Err(e) if choice == EngineChoice::Auto && resolved == EngineChoice::Tensorrt => {
            let cpu = resolve_cpu();
            tracing::warn!(message = "TensorRT cannot run the model: falling back to the CPU", error = %e, engine = cpu.as_str());
            let loaded = load(cpu)?;
            Ok((
                loaded,
                Some(format!(
                    "TensorRT could not run the model ({e}): running on the CPU ({})",
                    cpu.as_str()
                )),
            ))
        }
        other => other.map(|loaded| (loaded, None)),
    }
}

/// For status: why `Auto` did not pick the GPU in a build made for one.
pub fn engine_note(choice: EngineChoice) -> Option<String> {
    if choice != EngineChoice::Auto || !cfg!(feature = "tensorrt") {
        return None;
    }
    tensorrt_unavailable().map(|why| format!("TensorRT not used ({why}): running on the CPU"))
}

/// Why `engine = "tensorrt"` cannot run here, if it cannot. firstlookd
/// refuses to start rather than judge images on another engine or none.
pub fn tensorrt_unavailable() -> Option<String> {
    #[cfg(feature = "tensorrt")]
    return firstlook_kernels::engine::tensorrt::gpu()
        .err()
        .map(|e| e.to_string());
    #[cfg(not(feature = "tensorrt"))]
    Some(
        "this build of firstlookd has no TensorRT backend; TensorRT runs on the Jetson build \
         (see README, \"Building for a Jetson\"), or choose engine = \"auto\", \"tract\" or \"onnxruntime\""
            .into(),
    )
}

fn onnxruntime_loads() -> bool {
    #[cfg(feature = "ort")]
    return firstlook_kernels::engine::onnxruntime_available().is_ok();
    #[cfg(not(feature = "ort"))]
    false
}

impl Model {
    /// Loads the bundle's model with tract and proves it on the bundle's
    /// golden cases; a model that does not reproduce them is never returned.
    pub fn load(bundle: Bundle, variant: Variant) -> Result<(Model, GoldenReport), ModelError> {
        Self::load_with(bundle, variant, EngineChoice::Tract, 1, None)
    }

    /// [`Model::load`] on the chosen backend with `threads` threads (where
    /// the backend has a choice). `Auto` is the best this build and machine
    /// have ([`resolve`]); a backend asked for by name that this build or
    /// machine lacks is an error, never a silent fallback. TensorRT keeps
    /// the engines it builds in `engine_cache`.
    pub fn load_with(
        bundle: Bundle,
        variant: Variant,
        engine: EngineChoice,
        threads: usize,
        engine_cache: Option<&std::path::Path>,
    ) -> Result<(Model, GoldenReport), ModelError> {
        let ((mut model, report), note) = with_cpu_fallback(engine, resolve(engine), |resolved| {
            let mut model =
                Self::load_unchecked(bundle.clone(), variant, resolved, threads, engine_cache)?;
            let report = model.check_golden(None)?;
            Ok((model, report))
        })?;
        model.note = note;
        tracing::info!(
            model = %model.bundle.manifest().name,
            version = %model.bundle.manifest().version,
            sha256 = %model.bundle.sha256_hex(),
            ?variant,
            backend = model.backend(),
            golden_cases = report.cases,
            golden_max_abs_diff = report.max_abs_diff,
            "model loaded and proven on its golden cases"
        );
        Ok((model, report))
    }

    fn load_unchecked(
        bundle: Bundle,
        variant: Variant,
        engine: EngineChoice,
        threads: usize,
        engine_cache: Option<&std::path::Path>,
    ) -> Result<Model, ModelError> {
        let manifest = bundle.manifest();
        let bytes = match variant {
            Variant::Fp32 => bundle.model_bytes(),
            Variant::Int8 => bundle.int8_model_bytes().ok_or(ModelError::NoInt8)?,
        };
        let shape: Vec<usize> = manifest.inputs[0]
            .shape
            .iter()
            .map(|&d| d as usize)
            .collect();
        let outputs = manifest.outputs.len();
        let engine: Box<dyn Engine> = match resolve(engine) {
            EngineChoice::Auto | EngineChoice::Tract => {
                Box::new(TractEngine::load(bytes, &shape, outputs)?)
            }
            #[cfg(feature = "ort")]
            EngineChoice::Onnxruntime => Box::new(firstlook_kernels::engine::OrtEngine::load(
                bytes, &shape, outputs, threads,
            )?),
            #[cfg(not(feature = "ort"))]
            EngineChoice::Onnxruntime => {
                let _ = threads;
                return Err(ModelError::EngineUnavailable(
                    "onnxruntime: this build has no onnxruntime backend (feature ort)".into(),
                ));
            }
            #[cfg(feature = "tensorrt")]
            EngineChoice::Tensorrt => {
                use firstlook_kernels::engine::tensorrt::{TensorRtEngine, TensorRtOptions};
                let cache_dir = engine_cache.ok_or_else(|| {
                    ModelError::EngineUnavailable("tensorrt: no folder to cache engines in".into())
                })?;
                let sha256 = bundle.sha256_hex();
                let options = TensorRtOptions {
                    cache_dir,
                    bundle_sha256: &sha256,
                    fp16: false,
                    int8: variant == Variant::Int8,
                };
                let names: Vec<&str> = manifest.outputs.iter().map(|o| o.name.as_str()).collect();
                Box::new(TensorRtEngine::load(bytes, &shape, &names, &options)?)
            }
            #[cfg(not(feature = "tensorrt"))]
            EngineChoice::Tensorrt => {
                let _ = engine_cache;
                return Err(ModelError::EngineUnavailable(format!(
                    "tensorrt: {}",
                    tensorrt_unavailable().unwrap_or_default()
                )));
            }
        };
        Ok(Model {
            bundle,
            engine,
            variant,
            note: None,
        })
    }

    /// Why the engine is not the one `auto` chose, when TensorRT failed.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    pub fn backend(&self) -> &'static str {
        self.engine.backend()
    }

    /// Runs the model on a ready input tensor.
    pub fn run(&mut self, input: &Tensor) -> Result<Vec<Tensor>, ModelError> {
        Ok(self.engine.run(input)?)
    }

    /// Runs every golden case and compares with the expected outputs of this
    /// variant within the manifest's tolerance (or `tolerance` when given).
    pub fn check_golden(&mut self, tolerance: Option<f64>) -> Result<GoldenReport, ModelError> {
        let golden = self.bundle.manifest().golden.clone();
        let tolerance = tolerance.unwrap_or(match self.variant {
            Variant::Fp32 => golden.tolerance_abs,
            Variant::Int8 => golden.tolerance_abs_int8.unwrap_or(golden.tolerance_abs),
        });
        let mut max_abs_diff = 0.0f32;
        for (case, spec) in golden.cases.iter().enumerate() {
            let expected = match self.variant {
                Variant::Fp32 => &spec.expected,
                Variant::Int8 => &spec.expected_int8,
            };
            if expected.len() != outputs_len(&self.bundle) {
                return Err(ModelError::GoldenFile {
                    path: spec.input.clone(),
                    reason: format!(
                        "case {case} has no expected outputs for the {:?} model",
                        self.variant
                    ),
                });
            }
            let input = self.golden_array(&spec.input)?;
            let outputs = self.run(&input)?;
            if outputs.len() != expected.len() {
                return Err(EngineError::Outputs {
                    expected: expected.len(),
                    got: outputs.len(),
                }
                .into());
            }
            for (output, (path, got)) in expected.iter().zip(&outputs).enumerate() {
                let want = self.golden_array(path)?;
                if want.data.len() != got.data.len() {
                    return Err(ModelError::GoldenFile {
                        path: path.clone(),
                        reason: format!(
                            "holds {} values, the model gave {}",
                            want.data.len(),
                            got.data.len()
                        ),
                    });
                }
                for (index, (&g, &w)) in got.data.iter().zip(&want.data).enumerate() {
                    let diff = (g - w).abs();
                    max_abs_diff = max_abs_diff.max(diff);
                    if f64::from(diff) > tolerance || diff.is_nan() {
                        return Err(ModelError::GoldenMismatch {
                            case,
                            output,
                            index,
                            got: g,
                            want: w,
                            tolerance,
                        });
                    }
                }
            }
        }
        Ok(GoldenReport {
            cases: golden.cases.len(),
            max_abs_diff,
        })
    }

    fn golden_array(&self, path: &str) -> Result<Tensor, ModelError> {
        let err = |reason: String| ModelError::GoldenFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = self
            .bundle
            .file(path)
            .ok_or_else(|| err("not in the bundle".into()))?;
        let array = npy::decode(bytes).map_err(|e| err(e.to_string()))?;
        Tensor::new(array.shape, array.data).map_err(|e| err(e.to_string()))
    }

    /// Preprocesses one image by its modality's route and scores it. A
    /// finding is positive only where it applies to the image's modality.
    pub fn score(&mut self, image: &ModalityImage) -> Result<Scores, ModelError> {
        let manifest = self.bundle.manifest();
        let parts = &manifest.applicability.body_parts;
        if let Some(part) = &image.body_part {
            if !parts.is_empty() && !parts.iter().any(|p| p.eq_ignore_ascii_case(part)) {
                return Err(ModelError::BodyPart(part.clone()));
            }
        }
        let route = manifest
            .route_index(&image.modality)
            .ok_or_else(|| ModelError::NoRoute(image.modality.clone()))?;
        let logits = self.logits(image, route)?;
        let manifest = self.bundle.manifest();
        let findings = manifest
            .findings
            .iter()
            .map(|f| {
                // In range: the manifest checks output_index < logits_len.
                let logit = logits[f.output_index];
                let applicable = f.modalities.contains(&image.modality);
                FindingScore {
                    id: f.id.clone(),
                    logit,
                    probability: 1.0 / (1.0 + (-logit).exp()),
                    threshold: f.threshold,
                    positive: applicable && f64::from(logit) > f.threshold,
                    applicable,
                }
            })
            .collect();
        Ok(Scores { findings })
    }
}

impl Model {
    /// The logits for one image through preprocessing route `route`.
    pub fn logits(
        &mut self,
        image: &ModalityImage<impl Rows>,
        route: usize,
    ) -> Result<Vec<f32>, ModelError> {
        let input = self.input(image, route)?;
        self.infer_logits(&input)
    }

    /// The model input for one image through preprocessing route `route`.
    pub fn input(
        &self,
        image: &ModalityImage<impl Rows>,
        route: usize,
    ) -> Result<Tensor, ModelError> {
        let manifest = self.bundle.manifest();
        let pipeline = manifest
            .preprocessing
            .get(route)
            .ok_or_else(|| ModelError::NoRoute(image.modality.clone()))?
            .pipeline_for(&image.voi)?;
        let values = pipeline.run(&image.image, image.monochrome1)?;
        let shape: Vec<usize> = manifest.inputs[0]
            .shape
            .iter()
            .map(|&d| d as usize)
            .collect();
        Ok(Tensor::new(shape, values)?)
    }

    /// The model's maps on a ready input, when the bundle has a `heatmap`
    /// output of shape `[1, findings, rows, columns]`.
    pub fn maps(&mut self, input: &Tensor) -> Result<Option<Maps>, ModelError> {
        let Some(at) = self
            .bundle
            .manifest()
            .outputs
            .iter()
            .position(|o| o.name == "heatmap")
        else {
            return Ok(None);
        };
        let mut outputs = self.engine.run(input)?;
        if at >= outputs.len() {
            return Err(ModelError::MissingOutput { name: "heatmap" });
        }
        let map = outputs.swap_remove(at);
        let [1, channels, rows, cols] = map.shape[..] else {
            return Ok(None);
        };
        if rows == 0 || cols == 0 || map.data.len() != channels * rows * cols {
            return Ok(None);
        }
        Ok(Some(Maps {
            rows,
            cols,
            data: map.data,
        }))
    }

    /// Runs the model on a ready input and returns its logits, checked
    /// against the manifest.
    pub fn infer_logits(&mut self, input: &Tensor) -> Result<Vec<f32>, ModelError> {
        let manifest = self.bundle.manifest();
        let logits_at = manifest
            .outputs
            .iter()
            .position(|o| o.name == "logits")
            .ok_or(ModelError::MissingOutput { name: "logits" })?;
        let want = manifest.logits_len();
        let mut outputs = self.engine.run(input)?;
        if logits_at >= outputs.len() {
            return Err(ModelError::MissingOutput { name: "logits" });
        }
        let logits = outputs.swap_remove(logits_at).data;
        if logits.len() != want {
            return Err(ModelError::LogitsLength {
                want,
                got: logits.len(),
            });
        }
        Ok(logits)
    }
}

fn outputs_len(bundle: &Bundle) -> usize {
    bundle.manifest().outputs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing_on(
        broken: EngineChoice,
        tried: &mut Vec<EngineChoice>,
    ) -> impl FnMut(EngineChoice) -> Result<EngineChoice, ModelError> + '_ {
        move |e| {
            tried.push(e);
            if e == broken {
                Err(ModelError::EngineUnavailable(
                    "tensorrt: engine build failed".into(),
                ))
            } else {
                Ok(e)
            }
        }
    }

    #[test]
    fn auto_falls_back_to_the_cpu_when_tensorrt_fails_and_says_why() {
        let mut tried = Vec::new();
        let (loaded, note) = with_cpu_fallback(
            EngineChoice::Auto,
            EngineChoice::Tensorrt,
            failing_on(EngineChoice::Tensorrt, &mut tried),
        )
        .expect("the CPU engine loads");
        assert_eq!(loaded, resolve_cpu());
        assert_eq!(tried, vec![EngineChoice::Tensorrt, resolve_cpu()]);
        let note = note.expect("a note for status");
        assert!(note.contains("engine build failed"), "{note}");
        assert!(note.contains("running on the CPU"), "{note}");
    }

    #[test]
    fn tensorrt_by_name_never_falls_back() {
        let mut tried = Vec::new();
        let e = with_cpu_fallback(
            EngineChoice::Tensorrt,
            EngineChoice::Tensorrt,
            failing_on(EngineChoice::Tensorrt, &mut tried),
        )
        .expect_err("no silent fallback for a named engine");
        assert!(e.to_string().contains("engine build failed"));
        assert_eq!(tried, vec![EngineChoice::Tensorrt]);
    }

    #[test]
    fn a_cpu_engine_that_loads_has_no_note() {
        let mut tried = Vec::new();
        let (loaded, note) = with_cpu_fallback(
            EngineChoice::Auto,
            EngineChoice::Tract,
            failing_on(EngineChoice::Tensorrt, &mut tried),
        )
        .expect("tract loads");
        assert_eq!((loaded, note), (EngineChoice::Tract, None));
    }
}

//! The `tensorrt` backend (feature `tensorrt`): the bundle's ONNX built into
//! a TensorRT engine on this device once, cached, and run on a CUDA stream.
//! Where the GPU shares the host's memory (a Jetson) the tensors live in
//! mapped page-locked memory, so nothing is copied.

use std::path::{Path, PathBuf};

use firstlook_tensorrt_sys::safe::{self, Context, Runtime, Stream, TensorBuffer};

use super::{check_finite, check_input, check_outputs, Engine, EngineError, Tensor};

/// The GPU TensorRT would run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub compute_capability: (i32, i32),
    pub integrated: bool,
    pub tensorrt_version: i32,
}

/// The GPU path, if there is one. Asked before any TensorRT call: without
/// a CUDA driver TensorRT has been seen to crash.
pub fn gpu() -> Result<Gpu, EngineError> {
    let unavailable = |e: safe::Error| EngineError::Load(format!("no usable CUDA device: {e}"));
    let devices = safe::cuda_devices().map_err(unavailable)?;
    if devices < 1 {
        return Err(EngineError::Load("no CUDA device".into()));
    }
    Ok(Gpu {
        compute_capability: safe::compute_capability(0).map_err(unavailable)?,
        integrated: safe::integrated(0).map_err(unavailable)?,
        tensorrt_version: safe::library_version(),
    })
}

/// What the engine is built from, and where built engines are kept.
#[derive(Debug, Clone)]
pub struct TensorRtOptions<'a> {
    /// Engines are cached here, one file per TensorRT version, GPU compute
    /// capability, bundle and precision.
    pub cache_dir: &'a Path,
    /// The bundle's SHA-256 (hex).
    pub bundle_sha256: &'a str,
    pub fp16: bool,
    /// The model is the bundle's INT8 one (Q/DQ nodes).
    pub int8: bool,
}

pub struct TensorRtEngine {
    context: Context,
    stream: Stream,
    input_name: String,
    input: TensorBuffer,
    outputs: Vec<(String, Vec<usize>, TensorBuffer)>,
    input_shape: Vec<usize>,
    // Dropped last: contexts and engines before their runtime.
    _engine: safe::Engine,
    _runtime: Runtime,
}

fn log_line(severity: i32, message: &str) {
    match severity {
        0 | 1 => tracing::error!(target: "tensorrt", "{message}"),
        2 => tracing::warn!(target: "tensorrt", "{message}"),
        3 => tracing::debug!(target: "tensorrt", "{message}"),
        _ => tracing::trace!(target: "tensorrt", "{message}"),
    }
}

/// The cached plan's file for this TensorRT, GPU, bundle and precision.
pub fn plan_path(gpu: &Gpu, options: &TensorRtOptions<'_>) -> PathBuf {
    let precision = match (options.int8, options.fp16) {
        (true, _) => "int8",
        (false, true) => "fp16",
        (false, false) => "fp32",
    };
    let (major, minor) = gpu.compute_capability;
    let bundle: String = options.bundle_sha256.chars().take(16).collect();
    // `b1`: the build settings (workspace, TF32 off for FP32); a change to
    // them changes this, so older plans are not reused.
    options.cache_dir.join(format!(
        "trt{}-sm{major}{minor}-{bundle}-{precision}-b1.plan",
        gpu.tensorrt_version
    ))
}

impl TensorRtEngine {
    /// Loads the cached engine for this bundle on this GPU, or builds and
    /// caches it; the engine's single input must be `f32` of `input_shape`,
    /// and its outputs come back in the order of `output_names`.
    pub fn load(
        onnx: &[u8],
        input_shape: &[usize],
        output_names: &[&str],
        options: &TensorRtOptions<'_>,
    ) -> Result<Self, EngineError> {
        let gpu = gpu()?;
        let load = |e: safe::Error| EngineError::Load(e.to_string());
        safe::set_log(log_line);
        // One load or build at a time in this process: workers starting
        // together build the engine once and share the cached plan.
        let _one_at_a_time = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        let runtime = Runtime::new().map_err(load)?;
        let path = plan_path(&gpu, options);
        let cached = std::fs::read(&path)
            .ok()
            .and_then(|plan| match runtime.deserialize(&plan) {
                Ok(engine) => Some(engine),
                Err(e) => {
                    tracing::warn!(message = "cached TensorRT engine unusable; rebuilding", path = %path.display(), error = %e);
                    None
                }
            });
        let engine = match cached {
            Some(engine) => engine,
            None => {
                tracing::info!(message = "building the TensorRT engine for this GPU (once)", path = %path.display());
                let build = safe::BuildOptions {
                    fp16: options.fp16,
                    int8: options.int8,
                    calibration_cache: None,
                    workspace_bytes: 256 << 20,
                };
                let plan = safe::build(onnx, &build).map_err(load)?;
                if let Err(e) = save(&path, &plan) {
                    tracing::warn!(message = "the TensorRT engine runs but is not cached; it will be built again at the next start", error = %e);
                }
                runtime.deserialize(&plan).map_err(load)?
            }
        };
        Self::bind(runtime, engine, input_shape, output_names, gpu.integrated)
    }

    fn bind(
        runtime: Runtime,
        engine: safe::Engine,
        input_shape: &[usize],
        output_names: &[&str],
        mapped: bool,
    ) -> Result<Self, EngineError> {
        let load = |e: safe::Error| EngineError::Load(e.to_string());
        let tensors = engine.tensors();
        if let Some(t) = tensors
            .iter()
            .find(|t| t.data_type != firstlook_tensorrt_sys::FL_FLOAT as i32)
        {
            return Err(EngineError::Load(format!(
                "tensor {} is not f32; firstlook feeds and reads f32",
                t.name
            )));
        }
        let (inputs, outs): (Vec<_>, Vec<_>) = tensors.into_iter().partition(|t| t.is_input);
        let [input] = inputs.as_slice() else {
            return Err(EngineError::Load(format!(
                "the engine has {} inputs; firstlook feeds one",
                inputs.len()
            )));
        };
        let want: Vec<i64> = input_shape.iter().map(|&d| d as i64).collect();
        if input.shape != want {
            return Err(EngineError::Load(format!(
                "the engine's input {} is {:?}, the manifest says {:?}",
                input.name, input.shape, input_shape
            )));
        }
        check_outputs(output_names.len(), outs.len())?;
        let shape_of = |dims: &[i64]| -> Result<Vec<usize>, EngineError> {
            dims.iter()
                .map(|&d| {
                    usize::try_from(d)
                        .map_err(|_| EngineError::Load(format!("dynamic output dimension {d}")))
                })
                .collect()
        };
        let mut output_buffers = Vec::with_capacity(outs.len());
        for name in output_names {
            let t = outs.iter().find(|t| t.name == *name).ok_or_else(|| {
                EngineError::Load(format!("the engine has no output named {name}"))
            })?;
            let shape = shape_of(&t.shape)?;
            let buffer = TensorBuffer::new(shape.iter().product(), mapped).map_err(load)?;
            output_buffers.push((t.name.clone(), shape, buffer));
        }
        Ok(TensorRtEngine {
            context: engine.context().map_err(load)?,
            stream: Stream::new().map_err(load)?,
            input_name: input.name.clone(),
            input: TensorBuffer::new(input_shape.iter().product(), mapped).map_err(load)?,
            outputs: output_buffers,
            input_shape: input_shape.to_vec(),
            _engine: engine,
            _runtime: runtime,
        })
    }
}

static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Written whole or not at all: a plan cut short must not be loaded.
fn save(path: &Path, plan: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("plan.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    let written = file.write_all(plan).and_then(|()| file.sync_all());
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

impl Engine for TensorRtEngine {
    fn backend(&self) -> &'static str {
        "tensorrt"
    }

    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn run(&mut self, input: &Tensor) -> Result<Vec<Tensor>, EngineError> {
        check_input(&self.input_shape, input)?;
        let run = |e: safe::Error| EngineError::Run(e.to_string());
        self.input.host_mut().copy_from_slice(&input.data);
        let mut outputs: Vec<(&str, &mut TensorBuffer)> = self
            .outputs
            .iter_mut()
            .map(|(name, _, buf)| (name.as_str(), buf))
            .collect();
        self.context
            .run(
                &self.stream,
                &[(self.input_name.as_str(), &self.input)],
                &mut outputs,
            )
            .map_err(run)?;
        let result: Vec<Tensor> = self
            .outputs
            .iter()
            .map(|(_, shape, buf)| Tensor {
                shape: shape.clone(),
                data: buf.host().to_vec(),
            })
            .collect();
        check_finite(&result)?;
        Ok(result)
    }
}

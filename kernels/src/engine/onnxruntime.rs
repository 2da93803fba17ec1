//! The ONNX Runtime backend through the `ort` crate. The library is loaded
//! at run time from `ORT_DYLIB_PATH` (the PyPI `onnxruntime` wheel ships one
//! as `onnxruntime/capi/libonnxruntime.so.*`); a missing or unsuitable
//! library is a load error, never a panic.

use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::TensorRef;

use super::{check_finite, check_input, check_outputs, Engine, EngineError, Tensor};

pub struct OrtEngine {
    session: Session,
    input_shape: Vec<usize>,
    outputs: usize,
}

/// Loads the ONNX Runtime library once per process.
pub fn runtime() -> Result<(), EngineError> {
    environment().map(drop)
}

fn environment() -> Result<&'static Environment, EngineError> {
    static LOADED: OnceLock<Result<Environment, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = std::env::var_os("ORT_DYLIB_PATH")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    "ORT_DYLIB_PATH is not set: point it at libonnxruntime.so (e.g. from the PyPI onnxruntime wheel)"
                        .to_string()
                })?;
            let lib = path.to_string_lossy().into_owned();
            ort::init_from(&path)
                .map_err(|e| format!("ONNX Runtime from {lib}: {e}"))?
                .with_name("firstlook")
                .build()
                .map_err(|e| format!("ONNX Runtime from {lib}: {e}"))
        })
        .as_ref()
        .map_err(|e| EngineError::Load(e.clone()))
}

impl OrtEngine {
    /// Loads an ONNX model whose single input is `f32` of `input_shape`,
    /// run with `threads` intra-op threads.
    pub fn load(
        onnx: &[u8],
        input_shape: &[usize],
        outputs: usize,
        threads: usize,
    ) -> Result<Self, EngineError> {
        let env = environment()?;
        let load = |e: ort::Error| EngineError::Load(e.to_string());
        let session = Session::builder(env)
            .map_err(load)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| EngineError::Load(e.to_string()))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| EngineError::Load(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| EngineError::Load(e.to_string()))?
            .commit_from_memory(onnx)
            .map_err(load)?;
        let got = session.outputs().len();
        check_outputs(outputs, got)?;
        Ok(OrtEngine {
            session,
            input_shape: input_shape.to_vec(),
            outputs,
        })
    }
}

impl Engine for OrtEngine {
    fn backend(&self) -> &'static str {
        "onnxruntime"
    }

    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn run(&mut self, input: &Tensor) -> Result<Vec<Tensor>, EngineError> {
        check_input(&self.input_shape, input)?;
        let run = |e: ort::Error| EngineError::Run(e.to_string());
        let view = TensorRef::from_array_view((input.shape.clone(), input.data.as_slice()))
            .map_err(run)?;
        let result = self.session.run(ort::inputs![view]).map_err(run)?;
        check_outputs(self.outputs, result.len())?;
        let outputs = result
            .values()
            .map(|value| {
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(run)?;
                Ok(Tensor {
                    shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
                    data: data.to_vec(),
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        check_finite(&outputs)?;
        Ok(outputs)
    }
}

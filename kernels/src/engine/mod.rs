//! Inference engines behind one trait. `tract` (pure Rust, CPU) is the
//! default; `onnxruntime` (feature `ort`) loads ONNX Runtime at run time;
//! `tensorrt` (feature `tensorrt`) runs on an NVIDIA GPU, the Jetson's.

#[cfg(feature = "ort")]
mod onnxruntime;
#[cfg(feature = "tensorrt")]
pub mod tensorrt;
#[cfg(feature = "tract")]
mod tract;

#[cfg(feature = "ort")]
pub use self::onnxruntime::{runtime as onnxruntime_available, OrtEngine};
#[cfg(feature = "tract")]
pub use self::tract::TractEngine;

/// A dense `f32` tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, EngineError> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(EngineError::Shape {
                expected: shape,
                got: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the model could not be loaded: {0}")]
    Load(String),
    #[error("the model failed to run: {0}")]
    Run(String),
    #[error("tensor of shape {expected:?} cannot hold {got} values")]
    Shape { expected: Vec<usize>, got: usize },
    #[error("the model produced {got} outputs, {expected} were expected")]
    Outputs { expected: usize, got: usize },
    #[error("the model produced a non-finite value in output {0}")]
    NonFinite(usize),
}

/// A loaded model: one input tensor in, its outputs out.
pub trait Engine: Send {
    /// Backend name for logs and audit ("tract", "tensorrt").
    fn backend(&self) -> &'static str;
    /// Shape the input must have.
    fn input_shape(&self) -> &[usize];
    /// Runs the model. A non-finite output is an error, never a score.
    fn run(&mut self, input: &Tensor) -> Result<Vec<Tensor>, EngineError>;
}

/// The model has as many outputs as the manifest declares.
#[cfg(any(feature = "tract", feature = "ort", feature = "tensorrt"))]
pub(crate) fn check_outputs(expected: usize, got: usize) -> Result<(), EngineError> {
    if got == expected {
        Ok(())
    } else {
        Err(EngineError::Outputs { expected, got })
    }
}

/// The input has the shape the engine was built for.
#[cfg(any(feature = "tract", feature = "ort", feature = "tensorrt"))]
pub(crate) fn check_input(expected: &[usize], input: &Tensor) -> Result<(), EngineError> {
    if input.shape == expected {
        Ok(())
    } else {
        Err(EngineError::Shape {
            expected: expected.to_vec(),
            got: input.data.len(),
        })
    }
}

#[cfg(any(feature = "tract", feature = "ort", feature = "tensorrt"))]
pub(crate) fn check_finite(outputs: &[Tensor]) -> Result<(), EngineError> {
    match outputs
        .iter()
        .position(|t| t.data.iter().any(|v| !v.is_finite()))
    {
        Some(i) => Err(EngineError::NonFinite(i)),
        None => Ok(()),
    }
}

//! The `tract` backend: ONNX, optimised once at load for a fixed input shape.

use std::io::Cursor;

use tract_onnx::prelude::*;

use super::{check_finite, check_input, check_outputs, Engine, EngineError, Tensor};

type Plan = std::sync::Arc<TypedRunnableModel>;

pub struct TractEngine {
    plan: Plan,
    input_shape: Vec<usize>,
    outputs: usize,
}

impl TractEngine {
    /// Loads an ONNX model whose single input is `f32` of `input_shape`.
    pub fn load(onnx: &[u8], input_shape: &[usize], outputs: usize) -> Result<Self, EngineError> {
        let load = |e: TractError| EngineError::Load(format!("{e:#}"));
        let plan = tract_onnx::onnx()
            .model_for_read(&mut Cursor::new(onnx))
            .map_err(load)?
            .with_input_fact(0, f32::fact(input_shape).into())
            .map_err(load)?
            .into_optimized()
            .map_err(load)?
            .into_runnable()
            .map_err(load)?;
        let got = plan.model().output_outlets().map_err(load)?.len();
        check_outputs(outputs, got)?;
        Ok(TractEngine {
            plan,
            input_shape: input_shape.to_vec(),
            outputs,
        })
    }
}

impl Engine for TractEngine {
    fn backend(&self) -> &'static str {
        "tract"
    }

    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn run(&mut self, input: &Tensor) -> Result<Vec<Tensor>, EngineError> {
        check_input(&self.input_shape, input)?;
        let run = |e: TractError| EngineError::Run(format!("{e:#}"));
        let tensor =
            tract_onnx::prelude::Tensor::from_shape(&input.shape, &input.data).map_err(run)?;
        let result = self.plan.run(tvec!(tensor.into_tvalue())).map_err(run)?;
        check_outputs(self.outputs, result.len())?;
        let outputs = result
            .iter()
            .map(|value| {
                let view = value.to_plain_array_view::<f32>().map_err(run)?;
                Ok(Tensor {
                    shape: view.shape().to_vec(),
                    data: view.iter().copied().collect(),
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        check_finite(&outputs)?;
        Ok(outputs)
    }
}

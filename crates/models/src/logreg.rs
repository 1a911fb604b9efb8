//! Multinomial logistic regression: one `Linear` layer from inputs to class logits.

use burn::config::Config;
use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use quantlab_data::rng::Rng;

use crate::export::linear_op;
use crate::init;
use quantlab_quant::graph::{Graph, Op};

/// Logistic regression configuration.
#[derive(Config, Debug)]
pub struct LogRegConfig {
    /// Input features.
    pub inputs: usize,
    /// Classes.
    pub classes: usize,
    /// Seed of the initial weights.
    #[config(default = 0)]
    pub seed: u64,
}

/// `logits = x W + b`.
#[derive(Module, Debug)]
pub struct LogReg {
    /// The only layer.
    pub linear: Linear,
}

impl LogRegConfig {
    /// Builds the model with seeded weights on `device`.
    pub fn init(&self, device: &Device) -> LogReg {
        let mut rng = Rng::new(self.seed);
        LogReg {
            linear: init::linear(&mut rng, self.inputs, self.classes, device),
        }
    }
}

impl LogReg {
    /// `[batch, inputs]` -> `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.linear.forward(x)
    }

    /// The model as plain ops.
    pub fn to_graph(&self, input_shape: &[usize]) -> crate::error::Result<Graph> {
        let mut ops = Vec::new();
        if input_shape.len() > 1 {
            ops.push(Op::Flatten);
        }
        ops.push(linear_op("linear", &self.linear)?);
        Ok(Graph {
            input_shape: input_shape.to_vec(),
            ops,
        })
    }
}

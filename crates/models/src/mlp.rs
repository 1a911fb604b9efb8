//! Multi-layer perceptron: `inputs - hidden... - classes` with ReLU between layers
//! (784-50-80-30-10 on MNIST by default).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, Relu};
use burn::tensor::{Device, Tensor};
use quantlab_data::rng::Rng;

use crate::export::linear_op;
use crate::init;
use quantlab_quant::graph::{Graph, Op};

/// MLP configuration.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input features.
    pub inputs: usize,
    /// Classes.
    pub classes: usize,
    /// Hidden layer widths.
    #[config(default = "vec![50, 80, 30]")]
    pub hidden: Vec<usize>,
    /// Seed of the initial weights.
    #[config(default = 0)]
    pub seed: u64,
}

/// Linear layers with ReLU between them (none after the last).
#[derive(Module, Debug)]
pub struct Mlp {
    /// Layers in order.
    pub layers: Vec<Linear>,
    /// Activation.
    pub act: Relu,
}

impl MlpConfig {
    /// Builds the model with seeded weights on `device`.
    pub fn init(&self, device: &Device) -> Mlp {
        let mut rng = Rng::new(self.seed);
        let mut widths = vec![self.inputs];
        widths.extend(&self.hidden);
        widths.push(self.classes);
        let layers = widths
            .windows(2)
            .map(|w| init::linear(&mut rng, w[0], w[1], device))
            .collect();
        Mlp {
            layers,
            act: Relu::new(),
        }
    }
}

impl Mlp {
    /// `[batch, inputs]` -> `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len() - 1;
        self.layers.iter().enumerate().fold(x, |x, (i, l)| {
            let y = l.forward(x);
            if i < last { self.act.forward(y) } else { y }
        })
    }

    /// The model as plain ops.
    pub fn to_graph(&self, input_shape: &[usize]) -> crate::error::Result<Graph> {
        let mut ops = Vec::new();
        if input_shape.len() > 1 {
            ops.push(Op::Flatten);
        }
        let last = self.layers.len() - 1;
        for (i, l) in self.layers.iter().enumerate() {
            ops.push(linear_op(&format!("layers.{i}"), l)?);
            if i < last {
                ops.push(Op::Relu);
            }
        }
        Ok(Graph {
            input_shape: input_shape.to_vec(),
            ops,
        })
    }
}

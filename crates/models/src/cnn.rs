//! A small convolutional net: conv 3x3 (pad 1) -> ReLU -> maxpool 2, twice, then
//! Linear -> ReLU -> Linear. Padding 1 keeps it valid for 8x8 digits (8 -> 4 -> 2) as well
//! as 28x28 MNIST (28 -> 14 -> 7).

use burn::config::Config;
use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, Relu};
use burn::tensor::{Device, Tensor};
use quantlab_data::rng::Rng;

use crate::error::ModelError;
use crate::export::{conv_op, linear_op};
use crate::init;
use quantlab_quant::graph::{Graph, Op};

/// CNN configuration.
#[derive(Config, Debug)]
pub struct CnnConfig {
    /// Input `[channels, height, width]`.
    pub input: [usize; 3],
    /// Classes.
    pub classes: usize,
    /// Output channels of the two convolutions.
    #[config(default = "[16, 32]")]
    pub channels: [usize; 2],
    /// Width of the hidden fully connected layer.
    #[config(default = 128)]
    pub hidden: usize,
    /// Seed of the initial weights.
    #[config(default = 0)]
    pub seed: u64,
}

/// The CNN.
#[derive(Module, Debug)]
pub struct Cnn {
    /// First convolution.
    pub conv1: Conv2d,
    /// Second convolution.
    pub conv2: Conv2d,
    /// Hidden fully connected layer.
    pub fc1: Linear,
    /// Output layer.
    pub fc2: Linear,
    /// 2x2 max pooling.
    pub pool: MaxPool2d,
    /// Activation.
    pub act: Relu,
    /// Per-sample input shape `[c, h, w]`.
    #[module(skip)]
    pub input: [usize; 3],
}

/// Smallest side the two pool stages accept (4 -> 2 -> 1).
const MIN_SIDE: usize = 4;

impl CnnConfig {
    /// Checks that the input is an image large enough for two 2x2 poolings.
    pub fn validate(&self) -> crate::error::Result<()> {
        let [c, h, w] = self.input;
        if c == 0 || h < MIN_SIDE || w < MIN_SIDE {
            return Err(ModelError::Unsupported {
                model: "cnn",
                shape: self.input.to_vec(),
                reason: format!("the CNN needs images of at least {MIN_SIDE}x{MIN_SIDE}"),
            });
        }
        Ok(())
    }

    /// Builds the model with seeded weights on `device` (call [`Self::validate`] first).
    pub fn init(&self, device: &Device) -> Cnn {
        let mut rng = Rng::new(self.seed);
        let [c, h, w] = self.input;
        let flat = self.channels[1] * (h / 2 / 2) * (w / 2 / 2);
        Cnn {
            conv1: init::conv2d(&mut rng, c, self.channels[0], 3, 1, device),
            conv2: init::conv2d(&mut rng, self.channels[0], self.channels[1], 3, 1, device),
            fc1: init::linear(&mut rng, flat, self.hidden, device),
            fc2: init::linear(&mut rng, self.hidden, self.classes, device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            act: Relu::new(),
            input: self.input,
        }
    }
}

impl Cnn {
    /// `[batch, c*h*w]` (flat, NCHW order) -> `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [batch, _] = x.dims();
        let [c, h, w] = self.input;
        let x = x.reshape([batch, c, h, w]);
        let x = self.pool.forward(self.act.forward(self.conv1.forward(x)));
        let x = self.pool.forward(self.act.forward(self.conv2.forward(x)));
        let x = x.flatten::<2>(1, 3);
        self.fc2.forward(self.act.forward(self.fc1.forward(x)))
    }

    /// The model as plain ops.
    pub fn to_graph(&self) -> crate::error::Result<Graph> {
        let pool = Op::MaxPool2d {
            kernel: [2, 2],
            stride: [2, 2],
        };
        Ok(Graph {
            input_shape: self.input.to_vec(),
            ops: vec![
                conv_op("conv1", &self.conv1)?,
                Op::Relu,
                pool.clone(),
                conv_op("conv2", &self.conv2)?,
                Op::Relu,
                pool,
                Op::Flatten,
                linear_op("fc1", &self.fc1)?,
                Op::Relu,
                linear_op("fc2", &self.fc2)?,
            ],
        })
    }
}

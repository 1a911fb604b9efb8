//! One type for "any of quantlab's models": the kind chosen on the command line or in a
//! config, the architecture options, and the burn module built from them.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::cnn::{Cnn, CnnConfig};
use crate::error::{ModelError, Result};
use crate::logreg::{LogReg, LogRegConfig};
use crate::mlp::{Mlp, MlpConfig};
use quantlab_quant::graph::Graph;

/// Which model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ModelKind {
    /// Multinomial logistic regression.
    Logreg,
    /// Multi-layer perceptron.
    Mlp,
    /// Small convolutional net.
    Cnn,
}

impl ModelKind {
    /// Name used in folders and results.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Logreg => "logreg",
            ModelKind::Mlp => "mlp",
            ModelKind::Cnn => "cnn",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Architecture: the kind plus its options (ignored by the kinds they do not apply to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    /// Which model.
    pub kind: ModelKind,
    /// MLP hidden widths.
    pub hidden: Vec<usize>,
    /// CNN convolution channels.
    pub cnn_channels: [usize; 2],
    /// CNN hidden fully connected width.
    pub cnn_hidden: usize,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            kind: ModelKind::Mlp,
            hidden: vec![50, 80, 30],
            cnn_channels: [16, 32],
            cnn_hidden: 128,
        }
    }
}

/// The most parameters a model may have (64 Mi: 256 MB of f32), so that a config or a
/// checkpoint's metadata cannot make quantlab allocate without bound before it reads a
/// weight.
pub const MAX_PARAMS: usize = 1 << 26;

impl ModelSpec {
    /// Parameters (weights and biases) of this architecture for `input_shape` and `classes`;
    /// `None` when the count overflows. Matches what [`ModelSpec::build`] creates.
    pub fn param_count(&self, input_shape: &[usize], classes: usize) -> Option<usize> {
        let dense = |k: usize, n: usize| k.checked_mul(n)?.checked_add(n);
        let inputs = input_shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))?;
        match self.kind {
            ModelKind::Logreg => dense(inputs, classes),
            ModelKind::Mlp => {
                let widths = std::iter::once(inputs)
                    .chain(self.hidden.iter().copied())
                    .chain(std::iter::once(classes))
                    .collect::<Vec<_>>();
                widths
                    .windows(2)
                    .try_fold(0usize, |acc, w| acc.checked_add(dense(w[0], w[1])?))
            }
            ModelKind::Cnn => {
                let &[c, h, w] = input_shape else {
                    return Some(0);
                };
                let [c1, c2] = self.cnn_channels;
                let flat = c2.checked_mul(h / 4)?.checked_mul(w / 4)?;
                [
                    dense(c.checked_mul(9)?, c1)?,
                    dense(c1.checked_mul(9)?, c2)?,
                    dense(flat, self.cnn_hidden)?,
                    dense(self.cnn_hidden, classes)?,
                ]
                .into_iter()
                .try_fold(0usize, |a, x| a.checked_add(x))
            }
        }
    }

    /// The default architecture of `kind`.
    pub fn of(kind: ModelKind) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// Builds the model for per-sample `input_shape` and `classes`, weights seeded by `seed`.
    pub fn build(
        &self,
        input_shape: &[usize],
        classes: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Classifier> {
        let unsupported = |reason: String| ModelError::Unsupported {
            model: self.kind.as_str(),
            shape: input_shape.to_vec(),
            reason,
        };
        match self.param_count(input_shape, classes) {
            Some(n) if n <= MAX_PARAMS => {}
            _ => {
                return Err(unsupported(format!(
                    "more than quantlab's limit of {MAX_PARAMS} parameters (hidden {:?}, CNN channels {:?}, CNN hidden {}, {classes} classes)",
                    self.hidden, self.cnn_channels, self.cnn_hidden
                )));
            }
        }
        let inputs: usize = input_shape.iter().product();
        if inputs == 0 || classes < 2 {
            return Err(unsupported(format!(
                "need at least one input and two classes (got {classes} classes)"
            )));
        }
        match self.kind {
            ModelKind::Logreg => Ok(Classifier::LogReg(
                LogRegConfig::new(inputs, classes)
                    .with_seed(seed)
                    .init(device),
            )),
            ModelKind::Mlp => {
                if self.hidden.contains(&0) {
                    return Err(unsupported(format!(
                        "hidden widths must be positive, got {:?}",
                        self.hidden
                    )));
                }
                Ok(Classifier::Mlp(
                    MlpConfig::new(inputs, classes)
                        .with_hidden(self.hidden.clone())
                        .with_seed(seed)
                        .init(device),
                ))
            }
            ModelKind::Cnn => {
                let &[c, h, w] = input_shape else {
                    return Err(unsupported(
                        "the CNN needs images [channels, height, width]; this dataset is tabular"
                            .into(),
                    ));
                };
                if self.cnn_channels.contains(&0) || self.cnn_hidden == 0 {
                    return Err(unsupported(
                        "CNN channels and hidden width must be positive".into(),
                    ));
                }
                let cfg = CnnConfig::new([c, h, w], classes)
                    .with_channels(self.cnn_channels)
                    .with_hidden(self.cnn_hidden)
                    .with_seed(seed);
                cfg.validate()?;
                Ok(Classifier::Cnn(cfg.init(device)))
            }
        }
    }
}

/// Any quantlab model. (Variants differ in size; a model is built once, so no boxing.)
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Classifier {
    /// Logistic regression.
    LogReg(LogReg),
    /// MLP.
    Mlp(Mlp),
    /// CNN.
    Cnn(Cnn),
}

impl Classifier {
    /// `[batch, features]` (flat) -> `[batch, classes]` logits.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            Classifier::LogReg(m) => m.forward(x),
            Classifier::Mlp(m) => m.forward(x),
            Classifier::Cnn(m) => m.forward(x),
        }
    }

    /// The model as plain ops for per-sample `input_shape`.
    pub fn to_graph(&self, input_shape: &[usize]) -> Result<Graph> {
        let g = match self {
            Classifier::LogReg(m) => m.to_graph(input_shape)?,
            Classifier::Mlp(m) => m.to_graph(input_shape)?,
            Classifier::Cnn(m) => m.to_graph()?,
        };
        g.shapes()?;
        Ok(g)
    }
}

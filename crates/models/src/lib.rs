//! quantlab's classifiers as burn Modules, and their description as quant's plain-op [`Graph`].
//!
//! - [`LogReg`], [`Mlp`] (784-50-80-30-10 by default), [`Cnn`]: each a `Module` with a
//!   `Config` whose `init(&device)` draws seeded weights on the host (same seed, same weights
//!   on every backend).
//! - [`ModelSpec`] / [`Classifier`]: "any model", as configs and the CLI name them.
//! - `to_graph`: each model as `quantlab_quant::Graph` ops with f32 weights, the hand-off to
//!   the quantizer; the graph's naive reference interpreter is what tests hold burn's forward
//!   pass to.
#![warn(missing_docs)]

mod classifier;
pub mod cnn;
pub mod error;
mod export;
mod init;
pub mod logreg;
pub mod mlp;

pub use classifier::{Classifier, ModelKind, ModelSpec};
pub use cnn::{Cnn, CnnConfig};
pub use error::{ModelError, Result};
pub use logreg::{LogReg, LogRegConfig};
pub use mlp::{Mlp, MlpConfig};
pub use quantlab_quant::graph::{Graph, Op};

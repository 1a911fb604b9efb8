//! Post-training int8 quantization of quantlab models, integer arithmetic end to end.
//!
//! burn's own quantization stores weights in int8 but dequantizes before computing, and
//! calibrates no activation. This crate owns the real thing, on the plain-op [`graph`] that
//! every model becomes; it depends on neither burn nor the training crate, and its kernels
//! are `quantlab-linalg`'s:
//!
//! - [`graph`]: the ops every model source produces; [`network`]: the same with ReLUs fused
//!   and shapes resolved, the form the engine runs.
//! - [`qparams`]: scales and zero points (the integer rules themselves are linalg's).
//! - [`observer`]: MinMax, moving-average MinMax, percentile, entropy (KL), MSE.
//! - [`calibrate()`]: the float network over training-split samples, stats per point.
//! - [`methods`]: naive, naive-fixed, dynamic, static (per-tensor / per-channel).
//! - [`engine`]: `Engine::prepare(&model)` gives a [`Session`] that runs float, static,
//!   dynamic and mixed-precision models on one code path.
//! - [`export`]: the safetensors int8 file (the ONNX export is `quantlab-onnx`'s);
//!   [`report`]: per-layer error, sensitivity, speed; [`score()`]: accuracy and loss.
#![warn(missing_docs)]

pub mod calibrate;
pub mod engine;
pub mod error;
pub mod export;
pub mod graph;
pub mod methods;
pub mod model;
pub mod network;
pub mod observer;
pub mod pack;
pub mod qparams;
pub mod report;
pub mod score;

pub use calibrate::{Calibration, calibrate};
pub use engine::{Act, Engine, Session};
pub use error::{QuantError, Result};
pub use graph::{Graph, Op};
pub use methods::{QuantizeOptions, only_layer, quantize, static_from_calibration, with_fallback};
pub use model::{Granularity, LayerImpl, MethodKind, QuantModel, Scheme};
pub use network::{Dense, Network, Node};
pub use observer::ObserverKind;
pub use qparams::{ActDtype, BitWidths, QParams, Requant};
pub use quantlab_linalg::KernelPath;
pub use score::score;

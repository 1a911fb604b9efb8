//! Post-training int8 quantization of quantlab models, integer arithmetic end to end.
//!
//! burn's own quantization stores weights in int8 but dequantizes before computing, and
//! calibrates no activation. This crate owns the real thing, on the plain-op graph that
//! `quantlab-models` exports (it never needs burn's module types):
//!
//! - [`qparams`]: scales, zero points, and the one integer requantization rule.
//! - [`observer`]: MinMax, moving-average MinMax, percentile, entropy (KL), MSE.
//! - [`calibrate()`]: the float network over training-split samples, stats per point.
//! - [`methods`]: naive, naive-fixed, dynamic, static (per-tensor / per-channel).
//! - [`kernels`]: u8 x i8 -> i32 GEMM (scalar reference), im2col, fused epilogues, f32 GEMM.
//! - [`engine`]: runs float, static, dynamic and mixed-precision models on one code path.
//! - [`export`]: the safetensors int8 file; [`onnx`]: the same model as ONNX (float, QDQ); [`report`]: per-layer error, sensitivity, speed;
//!   [`burn_weights`]: burn's own weight-only quantization, as a comparison row.
#![warn(missing_docs)]

pub mod burn_weights;
pub mod calibrate;
pub mod engine;
pub mod error;
pub mod export;
pub mod gpu;
pub mod kernels;
pub mod methods;
pub mod model;
pub mod network;
pub mod observer;
pub mod onnx;
pub mod plan;
pub mod qparams;
pub mod report;
pub mod score;

pub use calibrate::{Calibration, calibrate};
pub use engine::{Act, Engine};
pub use error::{QuantError, Result};
pub use kernels::KernelPath;
pub use methods::{QuantizeOptions, only_layer, quantize, static_from_calibration, with_fallback};
pub use model::{Granularity, LayerImpl, MethodKind, QuantModel, Scheme};
pub use network::{Dense, Network, Node};
pub use observer::ObserverKind;
pub use qparams::{ActDtype, QParams, Requant};
pub use score::score;

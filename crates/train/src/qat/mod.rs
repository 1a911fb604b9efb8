//! Quantization-aware training: a trained float network fine-tuned through fake
//! quantization (weights per channel with learned steps, LSQ; activations on moving-average
//! ranges frozen after a chosen epoch, or learned steps), then converted to the same
//! integer [`quantlab_quant::QuantModel`] and file as post-training quantization, so the
//! engine, `eval`, `time`, `inspect`, the per-layer report and the exports take it as is.
//!
//! - [`fake_quant`]: the straight-through rounding and LSQ's gradient scaling, from float ops.
//! - [`QatNet`]: quant's network as a burn module, quantizing where the engine does.
//! - [`QatConfig`]: the run as data (`configs/qat.toml`).
//! - [`fit_qat()`]: the loop.

mod config;
pub mod fake_quant;
mod fit;
mod net;

pub use config::QatConfig;
pub use fit::{QatOutcome, fit_qat};
pub use net::{ActRanges, QatDense, QatNet, QatPlan, is_quant_point};

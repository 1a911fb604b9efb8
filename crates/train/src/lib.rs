//! Training and evaluation for quantlab's models on any burn device.
//!
//! - [`Backend`]: flex (`cpu`), ndarray, wgpu (`gpu`), a runtime switch chosen by the binary.
//! - [`TrainConfig`]: the run as data (TOML under `configs/`, copied beside checkpoints).
//! - [`fit()`]: the loop (cross-entropy; Adam or SGD with momentum; seeded shuffling; best
//!   epoch by test loss); [`evaluate()`]: accuracy and loss; [`checkpoint`]: save and
//!   verified reload.
#![warn(missing_docs)]

mod backend;
pub mod checkpoint;
mod config;
mod error;
mod evaluate;
mod fit;
mod history;
mod int8_dot;
pub mod qat;

pub use backend::{Backend, GpuAdapter, WGPU_API, autotune_level, gpu};
pub use checkpoint::{Checkpoint, CheckpointMeta};
pub use config::{OptimizerKind, TrainConfig};
pub use error::{Result, TrainError};
pub use evaluate::{
    EVAL_BATCH, Score, ScoreAccumulator, evaluate, evaluate_with, host_logits, logits,
};
pub use fit::{FitOptions, TrainOutcome, fit};
pub use history::{EpochStats, History};
pub use int8_dot::Int8Dot;

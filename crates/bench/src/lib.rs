//! quantlab's benchmark: the float-vs-int8 matrix of `configs/bench.toml`.
//!
//! - [`config`]: the matrix as data; [`run()`](run::run): train or reuse, quantize with every
//!   method, measure accuracy, size, latency (batch 1 and 64, median and p90), throughput,
//!   peak heap and per-layer error on every device; [`row`]: the results contract
//!   (`bench.json`, the field names listed in the README) and the derived ratios.
//! - [`write`]: JSON, CSV, Markdown and `results/latest`; [`plots`]: charts drawn from the
//!   saved JSON; [`measure`]: timing and the counting allocator; [`machine`]: machine facts.
//! - [`tracking`]: runs recorded in an MLflow file store (`quantlab-track`).
//! - [`burn_weights`]: burn's own weight-only quantization, a comparison row.
//! - [`sweep`]: the calibration sweep (how many calibration images each observer needs);
//!   [`bitwidth`]: the bit-width sweep (where each observer breaks below 8 bits).
#![warn(missing_docs)]

pub mod bitwidth;
pub mod burn_weights;
pub mod config;
pub mod error;
pub mod machine;
pub mod measure;
pub mod plots;
pub mod rounds;
pub mod row;
pub mod run;
pub mod summary;
pub mod sweep;
pub mod tracking;
pub mod write;

pub use config::{BenchConfig, DeviceKind, Method, SweepSettings};
pub use error::{BenchError, Result};
pub use measure::CountingAlloc;
pub use row::Row;
pub use run::{BenchOptions, OnnxModel, PairDone, Results, run, run_with};

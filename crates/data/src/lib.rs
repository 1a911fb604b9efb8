//! Datasets for quantlab.
//!
//! - [`idx`]: MNIST / Fashion-MNIST IDX files (gzip'd or raw), validated against their
//!   headers; [`digits`]: the 8x8 digits CSV; [`synthetic`]: a seeded
//!   `make_classification`-style generator.
//! - [`split`] and [`set`]: deterministic stratified splits and normalisation with
//!   statistics from the training split only.
//! - [`score`]: accuracy and cross-entropy of logits against labels, in f64.
//! - [`locate`]: where data lives and MD5 checks; [`load()`]: the one entry point.
//! - `batcher` (feature `burn`): burn `Dataset` + `Batcher` giving `(images, targets)` on
//!   any device.
//!
//! Nothing here panics on bad input: every problem is a [`DataError`] naming the file.
#![warn(missing_docs)]

#[cfg(feature = "burn")]
pub mod batcher;
pub mod bytes;
pub mod digits;
pub mod error;
pub mod idx;
mod load;
pub mod locate;
pub mod normalize;
pub mod npy;
pub mod rng;
pub mod score;
pub mod set;
pub mod split;
pub mod synthetic;

#[cfg(feature = "burn")]
pub use batcher::{Batch, ClassBatcher, Item};
pub use error::{DataError, Result};
pub use load::{DEFAULT_VAL_FRACTION, DataOptions, DatasetName, Splits, load, locate};
pub use normalize::Normalize;
pub use score::{Score, ScoreAccumulator};
pub use set::{LabeledSet, Normalization};
pub use synthetic::SyntheticConfig;

//! quantlab's kernels, std only: what runs inside a layer, separate from what a model is.
//!
//! In the manner of tract's `linalg` (a `frame` every path shares, an architecture folder per
//! instruction set) and MLAS's one platform table:
//!
//! - [`frame`]: operands ([`Rows`], [`QWeights`], [`PackedI8`], [`PackedF32`]), epilogues
//!   (bias, zero-point correction, requantize or dequantize, ReLU), the arithmetic rules
//!   ([`Requant`]: real multiplier to mantissa and shift, round half up; [`frame::quantize`]:
//!   float to u8 and i8), convolution geometry and channels-last layout, and the scalar
//!   references with the self-test every path runs against them.
//! - `x86_64`: the AVX2 and AVX-512 (VNNI) kernels, compiled on x86-64 only.
//! - [`KernelPath`] and [`Ops`]: the path is picked once (fastest available, or
//!   `QUANTLAB_KERNEL`), and its table of operations is all a caller uses. Nothing outside
//!   this crate names an instruction set.
//!
//! A new SIMD path goes in an architecture folder beside `x86_64/`, gets a [`KernelPath`]
//! variant, a table entry (`ops.rs`) and a `self_test!` line in `testing.rs`, so it is
//! checked against the reference from its first commit.
#![warn(missing_docs)]

pub mod cpu;
pub mod error;
pub mod frame;
pub mod ops;
pub mod path;
pub mod peak;
#[cfg(test)]
mod testing;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use cpu::CpuFeatures;
pub use error::LinalgError;
pub use frame::activation::Activation;
pub use frame::add::QAdd;
pub use frame::epilogue::{Epilogue, OutLayout};
pub use frame::geom::{ConvGeom, PoolGeom, window_out};
pub use frame::requant::Requant;
pub use frame::rows::{PoolShape, RowMap, Rows};
pub use frame::sgemm::PackedF32;
pub use frame::weights::{PackedI8, QWeights};
pub use ops::{Clamp, Ops, Requantizer, add_u8, quantize_u8};
pub use path::{KERNEL_ENV, KernelPath};
pub use peak::Peak;

//! The x86-64 kernels: [`avx2`] (with its vector epilogue, [`avx2_requant`]) and
//! [`avx512`] (VNNI) int8 GEMMs, with [`vnni_pool`] (a convolution and its 2x2 max pool in
//! registers), [`vnni_small`] (a one-panel layer of a few groups, weights in registers) and
//! [`vnni_lanes`] (few outputs, pixels in the lanes), the AVX-512F and AVX2 + FMA float GEMMs ([`sgemm`], with
//! [`sgemm_pool`], the float conv + pool), the quantizers
//! ([`quantize`]) and the integer Add ([`add`]); `ops.rs` puts them in each path's table;
//! [`peak`] holds their inner steps as throughput loops. Each entry point checks the CPU
//! before its `unsafe` body; each path is tested against the scalar reference by the
//! crate's self-test.

pub mod add;
pub mod avx2;
pub mod avx2_requant;
pub mod avx512;
pub mod depthwise;
pub mod peak;
pub mod quantize;
pub mod sgemm;
pub mod sgemm_pool;
pub mod vnni_lanes;
pub mod vnni_pool;
pub mod vnni_small;

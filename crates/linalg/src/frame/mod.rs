//! What every kernel path shares: the operands ([`rows`], [`weights`], [`pack`]), what
//! happens after the accumulation ([`epilogue`]), the arithmetic rules ([`requant`],
//! [`quantize`], the residual Add's [`add`]), the layouts and geometry of convolutions ([`geom`], [`nhwc`], [`im2col`]),
//! the float depthwise convolution ([`depthwise`]), the float kernels' fused [`activation`],
//! and the scalar references every path is tested against ([`scalar`], [`sgemm`]; the
//! self-test itself is `testing.rs` at the crate root).

pub mod activation;
pub mod add;
pub mod depthwise;
pub mod epilogue;
pub mod geom;
pub mod im2col;
pub mod nhwc;
pub mod pack;
pub mod quantize;
pub mod requant;
pub mod rows;
pub mod scalar;
pub mod sgemm;
pub mod weights;

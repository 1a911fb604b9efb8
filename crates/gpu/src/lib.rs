//! Static int8 on the GPU (wgpu): hand-written WGSL kernels (the `.wgsl` files beside
//! this one) launched through burn's CubeCL wgpu runtime. [`GpuLayer`] is one layer's u8 x
//! i8 -> i32 GEMM with the CPU engine's integer requantization; [`GpuModel`] runs a whole
//! static network with the activations kept on the device (`dense.wgsl`: convolution as
//! implicit GEMM and linear layers; `pool.wgsl`: max pooling on u8).
//!
//! WGSL has no mixed u8 x i8 dot product and no 64-bit integers. Activations are shifted
//! into i8 (`a - 128`, an XOR of 0x80 per byte) for `dot4I8Packed` (Vulkan's `OpSDot` where
//! the device has integer dot products, shift-and-mask code elsewhere), and `128 x` the
//! column sums, fixed at load, restores the u8 product, as ONNX Runtime's WebGPU dp4a
//! matmul does. The requantization's 32 x 32 -> 64-bit multiply, rounding and shift are
//! done on 32-bit halves, so the result is the same integer as
//! [`quantlab_linalg::Requant::apply`]: logits bit-identical to the CPU engine's.

#![warn(missing_docs)]

use burn::cubecl::ir::metadata::Info;
use burn::cubecl::ir::settings::{Dim3, KernelSettings};
use burn::cubecl::ir::{AddressType, ElemType, Scope, UIntKind};
use burn::cubecl::prelude::*;
use burn::cubecl::server::{Handle, KernelArguments};
use burn::cubecl::wgpu::{WgpuBackend, WgpuDevice};
use burn::cubecl::{CubeKernel, PrecompiledSource};

use std::sync::OnceLock;

use quantlab_linalg::{QWeights, Requant};
use shapes::QgemmShape;

mod error;
mod model;
mod shapes;

pub use error::{GpuError, Result};
pub use model::GpuModel;

/// Invocations per workgroup.
const WORKGROUP: u32 = 64;

/// The requantization both kernels below share, spliced in where they say `REQUANT`.
const REQUANT: &str = include_str!("requant.wgsl");
/// Max pooling of packed u8 channels-last maps.
const POOL: &str = include_str!("pool.wgsl");

/// `text` with [`REQUANT`] spliced in, built once into `cell`.
fn with_requant(cell: &'static OnceLock<String>, text: &str) -> &'static str {
    cell.get_or_init(|| text.replacen("\nREQUANT\n", &format!("\n{REQUANT}\n"), 1))
}

fn qgemm_source() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    with_requant(&TEXT, include_str!("qgemm.wgsl"))
}

fn dense_source() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    with_requant(&TEXT, include_str!("dense.wgsl"))
}

/// The graphics API the kernels run on: the same as `quantlab_train::WGPU_API` (Vulkan on
/// Linux, where wgpu's OpenGL fallback hangs; wgpu's choice elsewhere), so that they share
/// the runtime burn's GPU device was brought up on. This crate does not depend on the
/// training crate; the CLI's tests check that the two agree.
pub const WGPU_API: WgpuBackend = if cfg!(target_os = "linux") {
    WgpuBackend::Vulkan
} else {
    WgpuBackend::Auto
};

/// The CubeCL client of quantlab's wgpu device (the runtime burn itself uses); an error,
/// not a panic, where the machine has no wgpu device.
fn client() -> Result<burn::cubecl::client::Client> {
    std::panic::catch_unwind(|| {
        burn::cubecl::Device::Wgpu(WgpuDevice::default().on(WGPU_API)).client()
    })
    .map_err(|_| GpuError::NoDevice)
}

/// A layer's int8 weights on the device, packed 4 to a word (`[n][k4]`, zero-filled), and
/// per output `(offset + 128 * column sum, multiplier, shift)`: the `128 *` term undoes the
/// kernels' u8 -> i8 shift of the activations. `rows` past `n` are padding (zero weights,
/// zero multiplier).
struct Weights {
    w: Handle,
    params: Handle,
    n: usize,
    k4: usize,
}

fn upload(
    client: &burn::cubecl::client::Client,
    w: &QWeights,
    offset: &[i32],
    requant: &[Requant],
    rows: usize,
) -> Weights {
    let k4 = w.k.div_ceil(4);
    let mut packed = vec![0u8; rows.max(w.n) * k4 * 4];
    for j in 0..w.n {
        for t in 0..w.k {
            packed[j * k4 * 4 + t] = w.w[j * w.k + t] as u8;
        }
    }
    let mut params = Vec::with_capacity(w.n * 3);
    for j in 0..w.n {
        let rq = requant[if requant.len() == 1 { 0 } else { j }];
        params.push(offset[j].wrapping_add(128i32.wrapping_mul(w.col_sums[j])));
        params.push(rq.multiplier);
        params.push(rq.shift as i32);
    }
    // Padding rows: zero weights and a zero multiplier, so they produce the zero point.
    params.resize(rows.max(w.n) * 3, 0);
    Weights {
        w: client.create_from_slice(&packed),
        params: client.create_from_slice(&bytes_i32(&params)),
        n: w.n,
        k4,
    }
}

/// A static layer's weights and requantization, uploaded once.
pub struct GpuLayer {
    client: burn::cubecl::client::Client,
    weights: Weights,
}

impl GpuLayer {
    /// Uploads `w` with the layer's `offset` (`bias - zp_in * col_sums`) and multipliers.
    pub fn new(w: &QWeights, offset: &[i32], requant: &[Requant]) -> Result<Self> {
        let client = client()?;
        let weights = upload(&client, w, offset, requant, w.n);
        Ok(Self { client, weights })
    }

    /// `out = clamp(zo + requant(a x w^T + offset), lo, hi)` for `m` rows of `a` (`[m, k]` u8).
    pub fn run(
        &self,
        a: &[u8],
        m: usize,
        k: usize,
        (zo, lo, hi): (i32, i32, i32),
    ) -> Result<Vec<u8>> {
        let (client, Weights { w, params, n, k4 }) = (&self.client, &self.weights);
        if k.div_ceil(4) != *k4 {
            return Err(GpuError::Invalid {
                key: "gpu",
                reason: format!("rows of {k} values for a layer of {} inputs", k4 * 4),
            });
        }
        if a.len() != m * k {
            return Err(GpuError::InputSize {
                expected: m * k,
                found: a.len(),
                batch: m,
            });
        }
        if m == 0 {
            return Ok(Vec::new());
        }
        let mut rows = vec![0u8; m * k4 * 4];
        for r in 0..m {
            rows[r * k4 * 4..r * k4 * 4 + k].copy_from_slice(&a[r * k..(r + 1) * k]);
        }
        let meta = QgemmShape {
            m: m as i32,
            n: *n as i32,
            k4: *k4 as i32,
            zo,
            lo,
            hi,
        }
        .bytes();
        let a_h = client.create_from_slice(&rows);
        let meta_h = client.create_from_slice(&meta);
        let out_h = client.empty(m * n * 4);
        client.launch(
            Box::new(Wgsl {
                source: qgemm_source(),
                entry: "qgemm",
            }),
            CubeCount::Static(n.div_ceil(WORKGROUP as usize) as u32, m as u32, 1),
            KernelArguments::new()
                .with_buffer(a_h.binding())
                .with_buffer(w.clone().binding())
                .with_buffer(params.clone().binding())
                .with_buffer(meta_h.binding())
                .with_buffer(out_h.clone().binding()),
        );
        let bytes = read_back(client, out_h)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u8)
            .collect())
    }
}

/// A hand-written WGSL kernel: its text and entry point (workgroups of [`WORKGROUP`]).
struct Wgsl {
    source: &'static str,
    entry: &'static str,
}

impl KernelMetadata for Wgsl {
    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info(self.entry)
    }

    fn address_type(&self) -> ElemType {
        ElemType::UInt(UIntKind::U32)
    }
}

impl CubeKernel for Wgsl {
    fn define(&self) -> KernelDefinition {
        let settings = KernelSettings::new(
            Dim3::new_1d(WORKGROUP),
            ExecutionMode::Checked,
            AddressType::U32,
        );
        KernelDefinition {
            body: Scope::root(settings.clone()),
            settings,
            info: Info::default(),
        }
    }

    fn source(&self) -> Option<PrecompiledSource> {
        Some(PrecompiledSource {
            source: self.source.to_string(),
            entrypoint_name: self.entry.to_string(),
            lang: "wgsl",
        })
    }
}

/// Workgroups for one invocation per output word of `len` values (a second dimension past
/// the 65535-group limit; kernels stride by `num_workgroups`).
fn word_groups(len: usize) -> CubeCount {
    let groups = len.div_ceil(4).div_ceil(WORKGROUP as usize).max(1);
    let gx = groups.min(65_535);
    CubeCount::Static(gx as u32, groups.div_ceil(gx) as u32, 1)
}

/// `handle`'s bytes on the host (waits for the device).
fn read_back(
    client: &burn::cubecl::client::Client,
    handle: Handle,
) -> Result<impl std::ops::Deref<Target = [u8]>> {
    client
        .read_one(handle)
        .map_err(|e| GpuError::Graph(format!("GPU read-back failed: {e:?}")))
}

fn bytes_i32(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels reach the device only where there is one; their text is checked here.
    #[test]
    fn the_requantization_is_spliced_into_both_kernels() {
        for (text, entry) in [(qgemm_source(), "fn qgemm("), (dense_source(), "fn dense(")] {
            assert!(!text.contains("\nREQUANT\n"), "placeholder left in");
            assert_eq!(text.matches("fn requant(").count(), 1);
            assert!(
                text.find("fn requant(") < text.find(entry),
                "defined before use"
            );
        }
    }
}

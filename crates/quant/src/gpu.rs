//! Static int8 on the GPU (wgpu): the u8 x i8 -> i32 GEMM with the CPU engine's integer
//! requantization, as a hand-written WGSL kernel launched through burn's CubeCL wgpu runtime.
//!
//! WGSL has no mixed u8 x i8 dot product and no 64-bit integers. Activations are shifted
//! into i8 (`a - 128`, an XOR of 0x80 per byte) for `dot4I8Packed` (Vulkan's `OpSDot` where
//! the device has integer dot products, shift-and-mask code elsewhere), and `128 x` the
//! column sums, fixed at load, restores the u8 product, as ONNX Runtime's WebGPU dp4a
//! matmul does. The requantization's 32 x 32 -> 64-bit multiply, rounding and shift are
//! done on 32-bit halves, so the result is the same integer as
//! [`crate::qparams::Requant::apply`]: logits bit-identical to the CPU engine's.

use burn::cubecl::ir::metadata::Info;
use burn::cubecl::ir::settings::{Dim3, KernelSettings};
use burn::cubecl::ir::{AddressType, ElemType, Scope, UIntKind};
use burn::cubecl::prelude::*;
use burn::cubecl::server::KernelArguments;
use burn::cubecl::wgpu::WgpuDevice;
use burn::cubecl::{CubeKernel, PrecompiledSource};

use crate::error::{QuantError, Result};
use crate::kernels::QWeights;
use crate::qparams::Requant;

/// Outputs per workgroup along a row.
const WORKGROUP: u32 = 64;

const SOURCE: &str = r#"
@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> params: array<i32>;
@group(0) @binding(3) var<storage, read_write> shape: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

// (x * m + 2^(s-1)) >> s for s in 1..=62, or the saturated x * m for s == 0, exactly as
// i64 arithmetic would give it, on 32-bit halves.
fn requant(x: i32, m: i32, s: u32) -> i32 {
    if (m == 0) {
        return 0;
    }
    let neg = x < 0;
    let ax = select(u32(x), 0u - u32(x), neg);
    let am = u32(m);
    let a0 = ax & 0xffffu;
    let a1 = ax >> 16u;
    let m0 = am & 0xffffu;
    let m1 = am >> 16u;
    let p00 = a0 * m0;
    let p01 = a0 * m1;
    let p10 = a1 * m0;
    let p11 = a1 * m1;
    // lo/hi of the unsigned 64-bit product.
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    var lo = (p00 & 0xffffu) | (mid << 16u);
    var hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    if (neg) {
        lo = ~lo + 1u;
        hi = ~hi + select(0u, 1u, lo == 0u);
    }
    if (s == 0u) {
        let fits = (hi == 0u && lo < 0x80000000u) || (hi == 0xffffffffu && lo >= 0x80000000u);
        if (fits) {
            return i32(lo);
        }
        return select(2147483647, -2147483647 - 1, neg);
    }
    // + 2^(s-1)
    let r = s - 1u;
    if (r < 32u) {
        let add = 1u << r;
        let sum = lo + add;
        hi = hi + select(0u, 1u, sum < lo);
        lo = sum;
    } else {
        hi = hi + (1u << (r - 32u));
    }
    // Arithmetic shift right by s, low 32 bits.
    if (s < 32u) {
        return i32((lo >> s) | (hi << (32u - s)));
    }
    if (s == 32u) {
        return i32(hi);
    }
    return i32(hi) >> (s - 32u);
}

@compute @workgroup_size(64, 1, 1)
fn qgemm(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = u32(shape[1]);
    let k4 = u32(shape[2]);
    let j = id.x;
    let row = id.y;
    if (j >= n || row >= u32(shape[0])) {
        return;
    }
    var acc = 0;
    for (var q = 0u; q < k4; q = q + 1u) {
        acc = acc + dot4I8Packed(a[row * k4 + q] ^ 0x80808080u, w[j * k4 + q]);
    }
    let x = acc + params[3u * j];
    let v = shape[3] + requant(x, params[3u * j + 1u], u32(params[3u * j + 2u]));
    out[row * n + j] = u32(clamp(v, shape[4], shape[5]));
}
"#;

struct QGemm;

impl KernelMetadata for QGemm {
    fn id(&self) -> KernelId {
        KernelId::new::<Self>()
    }

    fn address_type(&self) -> ElemType {
        ElemType::UInt(UIntKind::U32)
    }
}

impl CubeKernel for QGemm {
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
            source: SOURCE.to_string(),
            entrypoint_name: "qgemm".to_string(),
            lang: "wgsl",
        })
    }
}

/// The CubeCL client of burn's default wgpu device (the runtime burn itself uses).
fn client() -> burn::cubecl::client::Client {
    burn::cubecl::Device::Wgpu(WgpuDevice::default()).client()
}

/// A static layer's weights and requantization, uploaded once.
pub struct GpuLayer {
    n: usize,
    k4: usize,
    w: burn::cubecl::server::Handle,
    params: burn::cubecl::server::Handle,
}

impl GpuLayer {
    /// Uploads `w` with the layer's `offset` (`bias - zp_in * col_sums`) and multipliers.
    pub fn new(w: &QWeights, offset: &[i32], requant: &[Requant]) -> Self {
        let client = client();
        let k4 = w.k.div_ceil(4);
        let mut packed = vec![0u8; w.n * k4 * 4];
        for j in 0..w.n {
            for t in 0..w.k {
                packed[j * k4 * 4 + t] = w.w[j * w.k + t] as u8;
            }
        }
        let mut params = Vec::with_capacity(w.n * 3);
        for j in 0..w.n {
            let rq = requant[if requant.len() == 1 { 0 } else { j }];
            // The u8 -> i8 shift of the activations, undone: + 128 * sum_k w[j][k].
            params.push(offset[j].wrapping_add(128i32.wrapping_mul(w.col_sums[j])));
            params.push(rq.multiplier);
            params.push(rq.shift as i32);
        }
        let params: Vec<u8> = params.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            n: w.n,
            k4,
            w: client.create_from_slice(&packed),
            params: client.create_from_slice(&params),
        }
    }

    /// `out = clamp(zo + requant(a x w^T + offset), lo, hi)` for `m` rows of `a` (`[m, k]` u8).
    pub fn run(
        &self,
        a: &[u8],
        m: usize,
        k: usize,
        (zo, lo, hi): (i32, i32, i32),
    ) -> Result<Vec<u8>> {
        let client = client();
        let mut rows = vec![0u8; m * self.k4 * 4];
        for r in 0..m {
            rows[r * self.k4 * 4..r * self.k4 * 4 + k].copy_from_slice(&a[r * k..(r + 1) * k]);
        }
        let meta: Vec<u8> = [m as i32, self.n as i32, self.k4 as i32, zo, lo, hi]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let a_h = client.create_from_slice(&rows);
        let meta_h = client.create_from_slice(&meta);
        let out_h = client.empty(m * self.n * 4);
        client.launch(
            Box::new(QGemm),
            CubeCount::Static(self.n.div_ceil(WORKGROUP as usize) as u32, m as u32, 1),
            KernelArguments::new()
                .with_buffer(a_h.binding())
                .with_buffer(self.w.clone().binding())
                .with_buffer(self.params.clone().binding())
                .with_buffer(meta_h.binding())
                .with_buffer(out_h.clone().binding()),
        );
        let bytes = client
            .read_one(out_h)
            .map_err(|e| QuantError::Graph(format!("GPU read-back failed: {e:?}")))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u8)
            .collect())
    }
}

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
use burn::cubecl::server::{Handle, KernelArguments};
use burn::cubecl::wgpu::WgpuDevice;
use burn::cubecl::{CubeKernel, PrecompiledSource};

use crate::error::{QuantError, Result};
use crate::kernels::QWeights;
use crate::model::{LayerImpl, QuantModel};
use crate::network::Node;
use crate::plan::{Layout, Prepared};
use crate::qparams::{QParams, Requant, quantize_into};

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

/// The CubeCL client of burn's default wgpu device (the runtime burn itself uses); an
/// error, not a panic, where the machine has no wgpu device.
fn client() -> Result<burn::cubecl::client::Client> {
    std::panic::catch_unwind(|| burn::cubecl::Device::Wgpu(WgpuDevice::default()).client()).map_err(
        |_| QuantError::Invalid {
            key: "gpu",
            reason: "no wgpu device on this machine".into(),
        },
    )
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
        let mut rows = vec![0u8; m * k4 * 4];
        for r in 0..m {
            rows[r * k4 * 4..r * k4 * 4 + k].copy_from_slice(&a[r * k..(r + 1) * k]);
        }
        let meta = bytes_i32(&[m as i32, *n as i32, *k4 as i32, zo, lo, hi]);
        let a_h = client.create_from_slice(&rows);
        let meta_h = client.create_from_slice(&meta);
        let out_h = client.empty(m * n * 4);
        client.launch(
            Box::new(Wgsl {
                source: SOURCE,
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
        let bytes = client
            .read_one(out_h)
            .map_err(|e| QuantError::Graph(format!("GPU read-back failed: {e:?}")))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u8)
            .collect())
    }
}

/// A layer over packed u8 maps on the device: convolution (implicit GEMM over a
/// channels-last sample, out-of-image taps reading the zero point) or linear (a 1x1 conv
/// of a 1x1 map), requantized and written back packed, 4 values a word. A linear layer's
/// outputs are stored padded to a multiple of 4 (the padding meets the next layer's zero
/// weights), so every linear layer takes the word path below.
const DENSE: &str = r#"
@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> params: array<i32>;
@group(0) @binding(3) var<storage, read_write> shape: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

// shape: n (stored outputs per pixel), k4, c, h, w, kh, kw, sy, sx, py, px, oh, ow, seg4,
// zp, zo, lo, hi, input bytes per sample, batch

REQUANT

fn byte_at(i: u32) -> u32 {
    return (x[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn out_value(j: u32, acc: i32) -> u32 {
    let v = shape[15] + requant(acc + params[3u * j], params[3u * j + 1u], u32(params[3u * j + 2u]));
    return u32(clamp(v, shape[16], shape[17]));
}

// One output value, flat index o = (b * pixels + p) * n + j (layers with n % 4 != 0).
fn dense_one(o: u32) -> u32 {
    let n = u32(shape[0]);
    let k4 = u32(shape[1]);
    let c = u32(shape[2]);
    let h = shape[3];
    let wd = shape[4];
    let kw = u32(shape[6]);
    let ow = u32(shape[12]);
    let pixels = u32(shape[11]) * ow;
    let seg4 = u32(shape[13]);
    let zp = u32(shape[14]);
    let j = o % n;
    let p = (o / n) % pixels;
    let in_base = (o / (n * pixels)) * u32(shape[18]);
    let oy = i32(p / ow);
    let ox = i32(p % ow);
    var acc = 0;
    for (var q = 0u; q < k4; q = q + 1u) {
        var word = 0u;
        for (var e = 0u; e < 4u; e = e + 1u) {
            let t = q * 4u + e;
            let ky = t / seg4;
            let rem = t % seg4;
            var v = 128u; // padding slots meet zero weights: any value will do
            if (rem < kw * c) {
                let iy = oy * shape[7] + i32(ky) - shape[9];
                let ix = ox * shape[8] + i32(rem / c) - shape[10];
                v = zp;
                if (iy >= 0 && iy < h && ix >= 0 && ix < wd) {
                    v = byte_at(in_base + (u32(iy * wd + ix)) * c + rem % c);
                }
            }
            word = word | (v << (8u * e));
        }
        acc = acc + dot4I8Packed(word ^ 0x80808080u, w[j * k4 + q]);
    }
    return out_value(j, acc);
}

fn dot4(xs: u32, w0: u32, q: u32, k4: u32) -> vec4<i32> {
    return vec4<i32>(
        dot4I8Packed(xs, w[w0 + q]),
        dot4I8Packed(xs, w[w0 + k4 + q]),
        dot4I8Packed(xs, w[w0 + 2u * k4 + q]),
        dot4I8Packed(xs, w[w0 + 3u * k4 + q]),
    );
}

// Outputs j..j+3 of one pixel, one output word (n % 4 == 0): each activation word, and its
// address, serves four dot products. The taps are walked row by row (ky, then kx, then
// channel words) in the weights' order, so no division runs per word.
fn dense_word(word: u32) -> u32 {
    let n4 = u32(shape[0]) / 4u;
    let k4 = u32(shape[1]);
    let c = u32(shape[2]);
    let h = shape[3];
    let wd = shape[4];
    let kh = u32(shape[5]);
    let kw = u32(shape[6]);
    let ow = u32(shape[12]);
    let pixels = u32(shape[11]) * ow;
    let seg4 = u32(shape[13]);
    let zp = u32(shape[14]);
    let j = (word % n4) * 4u;
    let pix = word / n4;
    let p = pix % pixels;
    let in_base = (pix / pixels) * u32(shape[18]);
    let oy = i32(p / ow) * shape[7] - shape[9];
    let ox = i32(p % ow) * shape[8] - shape[10];
    let w0 = j * k4;
    let zw = (zp * 0x01010101u) ^ 0x80808080u;
    var acc = vec4<i32>(0, 0, 0, 0);
    var q = 0u;
    for (var ky = 0u; ky < kh; ky = ky + 1u) {
        let iy = oy + i32(ky);
        let row_in = iy >= 0 && iy < h;
        if (c % 4u == 0u && in_base % 4u == 0u) {
            // Whole words: 4 channels of one pixel, or the zero point 4 times outside.
            let c4 = c / 4u;
            for (var kx = 0u; kx < kw; kx = kx + 1u) {
                let ix = ox + i32(kx);
                if (row_in && ix >= 0 && ix < wd) {
                    let at = (in_base + u32(iy * wd + ix) * c) >> 2u;
                    for (var e = 0u; e < c4; e = e + 1u) {
                        acc = acc + dot4(x[at + e] ^ 0x80808080u, w0, q + e, k4);
                    }
                } else {
                    for (var e = 0u; e < c4; e = e + 1u) {
                        acc = acc + dot4(zw, w0, q + e, k4);
                    }
                }
                q = q + c4;
            }
        } else if (row_in && ox >= 0 && ox + i32(kw) <= wd) {
            // The kernel row lies inside the image: its taps are one run of kw * c bytes,
            // read as whole words shifted into place (bytes past the run meet zero weights).
            let start = in_base + u32(iy * wd + ox) * c;
            let sh = (start & 3u) * 8u;
            var at = start >> 2u;
            for (var r = 0u; r < seg4; r = r + 4u) {
                var bytes = x[at];
                if (sh != 0u) {
                    bytes = (bytes >> sh) | (x[at + 1u] << (32u - sh));
                }
                acc = acc + dot4(bytes ^ 0x80808080u, w0, q, k4);
                q = q + 1u;
                at = at + 1u;
            }
        } else {
            for (var r = 0u; r < seg4; r = r + 4u) {
                var bytes = 0u;
                for (var e = 0u; e < 4u; e = e + 1u) {
                    let t = r + e;
                    var v = 128u; // padding slots meet zero weights: any value will do
                    if (t < kw * c) {
                        let ix = ox + i32(t / c);
                        v = zp;
                        if (row_in && ix >= 0 && ix < wd) {
                            v = byte_at(in_base + u32(iy * wd + ix) * c + t % c);
                        }
                    }
                    bytes = bytes | (v << (8u * e));
                }
                acc = acc + dot4(bytes ^ 0x80808080u, w0, q, k4);
                q = q + 1u;
            }
        }
    }
    return out_value(j, acc.x) | (out_value(j + 1u, acc.y) << 8u)
        | (out_value(j + 2u, acc.z) << 16u) | (out_value(j + 3u, acc.w) << 24u);
}

// One output word (4 values) per invocation: plain stores, no atomics, no zeroed buffer.
@compute @workgroup_size(64, 1, 1)
fn dense(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let total = u32(shape[0]) * u32(shape[11]) * u32(shape[12]) * u32(shape[19]);
    let word = id.x + id.y * groups.x * 64u;
    if (word * 4u >= total) {
        return;
    }
    if (u32(shape[0]) % 4u == 0u) {
        out[word] = dense_word(word);
        return;
    }
    var packed = 0u;
    for (var e = 0u; e < 4u; e = e + 1u) {
        let o = word * 4u + e;
        if (o < total) {
            packed = packed | (dense_one(o) << (8u * e));
        }
    }
    out[word] = packed;
}
"#;

/// Max pooling of packed u8 channels-last maps.
const POOL: &str = r#"
@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> shape: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

// One output value, flat index o = ((b * oh + py) * ow + px) * c + ch.
fn pool_one(o: u32) -> u32 {
    // shape: c, h, w, kh, kw, sy, sx, oh, ow, batch
    let c = u32(shape[0]);
    let h = u32(shape[1]);
    let wd = u32(shape[2]);
    let oh = u32(shape[7]);
    let ow = u32(shape[8]);
    let ch = o % c;
    let px = (o / c) % ow;
    let py = (o / (c * ow)) % oh;
    let b = o / (c * ow * oh);
    var m = 0u;
    for (var ky = 0u; ky < u32(shape[3]); ky = ky + 1u) {
        for (var kx = 0u; kx < u32(shape[4]); kx = kx + 1u) {
            let iy = py * u32(shape[5]) + ky;
            let ix = px * u32(shape[6]) + kx;
            let i = ((b * h + iy) * wd + ix) * c + ch;
            m = max(m, (x[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
        }
    }
    return m;
}

@compute @workgroup_size(64, 1, 1)
fn pool(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let total = u32(shape[9]) * u32(shape[7]) * u32(shape[8]) * u32(shape[0]);
    let word = id.x + id.y * groups.x * 64u;
    if (word * 4u >= total) {
        return;
    }
    var packed = 0u;
    for (var e = 0u; e < 4u; e = e + 1u) {
        let o = word * 4u + e;
        if (o < total) {
            packed = packed | (pool_one(o) << (8u * e));
        }
    }
    out[word] = packed;
}
"#;

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

fn bytes_i32(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// [`DENSE`] with the requantization function of [`SOURCE`] in it, built once.
fn dense_source() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let start = SOURCE.find("fn requant").expect("requant in SOURCE");
        let end = SOURCE.find("@compute").expect("entry in SOURCE");
        DENSE.replace("REQUANT", &SOURCE[start..end])
    })
}

/// One step of a network on the device.
enum Step {
    Dense {
        weights: Weights,
        /// The `shape` vector of the dense kernel, batch last (filled per call).
        shape: Vec<i32>,
        /// Bytes per sample of the output (padding included).
        out_len: usize,
    },
    Pool {
        shape: Vec<i32>,
        out_len: usize,
    },
}

/// A static int8 model on the GPU: weights uploaded once, activations kept on the device as
/// packed u8 channels-last maps from the quantized input to the quantized logits.
pub struct GpuModel {
    client: burn::cubecl::client::Client,
    steps: Vec<Step>,
    in_q: QParams,
    out_q: QParams,
    in_len: usize,
    /// Values per sample of the last step's output, and the bytes per sample it is stored in.
    out_values: usize,
    out_stride: usize,
    /// Each step's `shape` buffer on the device, per batch size seen lately, so a call
    /// uploads its input and nothing else.
    shapes: std::sync::Mutex<Vec<(usize, Vec<Handle>)>>,
}

/// Batch sizes whose shape buffers [`GpuModel`] keeps.
const SHAPE_CACHE: usize = 8;

impl GpuModel {
    /// Prepares `model`, which must be static int8 in every dense layer (the float and
    /// dynamic parts have no GPU path yet).
    pub fn new(model: &QuantModel) -> Result<Self> {
        let plan = model.plan.get(model);
        let client = client()?;
        let mut steps = Vec::new();
        let (mut in_q, mut out_q) = (None, None);
        let mut layout = plan.layouts[0];
        // Bytes per sample of the buffer the next step reads, and its values per sample.
        let mut stride = model.network.in_len();
        let mut values = stride;
        for (i, node) in model.network.nodes.iter().enumerate() {
            match (node, &model.layers[i], &plan.nodes[i]) {
                (Node::Dense(d), Some(LayerImpl::Static(l)), Prepared::Int8(w)) => {
                    if out_q.is_some_and(|q| q != l.in_q) {
                        return Err(QuantError::Invalid {
                            key: "gpu",
                            reason: format!(
                                "node {i} expects other input parameters than the layer before \
                                 produces; requantizing between layers has no GPU path"
                            ),
                        });
                    }
                    in_q.get_or_insert(l.in_q);
                    out_q = Some(l.out_q);
                    // A linear layer's outputs (one pixel) are stored padded to whole words.
                    let pixels = d.out_len() / w.n;
                    let rows = if pixels == 1 {
                        w.n.div_ceil(4) * 4
                    } else {
                        w.n
                    };
                    let weights = upload(&client, w, &l.offset, &l.requant, rows);
                    let k4 = weights.k4;
                    let (zo, lo, hi) = l.out_clamp(d.relu);
                    let tail = [l.in_q.zero_point, zo, lo, hi, stride as i32, 0];
                    let geo: [i32; 14] = match &d.conv {
                        Some(g) => {
                            let seg4 = (g.kernel[1] * g.in_channels).div_ceil(4) * 4;
                            [
                                rows as i32,
                                k4 as i32,
                                g.in_channels as i32,
                                g.in_hw[0] as i32,
                                g.in_hw[1] as i32,
                                g.kernel[0] as i32,
                                g.kernel[1] as i32,
                                g.stride[0] as i32,
                                g.stride[1] as i32,
                                g.padding[0] as i32,
                                g.padding[1] as i32,
                                g.out_hw[0] as i32,
                                g.out_hw[1] as i32,
                                seg4 as i32,
                            ]
                        }
                        None => {
                            let seg4 = d.k.div_ceil(4) * 4;
                            let k = d.k as i32;
                            [
                                rows as i32,
                                k4 as i32,
                                k,
                                1,
                                1,
                                1,
                                1,
                                1,
                                1,
                                0,
                                0,
                                1,
                                1,
                                seg4 as i32,
                            ]
                        }
                    };
                    let shape: Vec<i32> = geo.iter().chain(&tail).copied().collect();
                    (stride, values) = (pixels * rows, d.out_len());
                    steps.push(Step::Dense {
                        weights,
                        shape,
                        out_len: stride,
                    });
                }
                (Node::Dense(_), _, _) => {
                    return Err(QuantError::Invalid {
                        key: "gpu",
                        reason: format!(
                            "node {i} is not static int8; the GPU runs static int8 models only"
                        ),
                    });
                }
                (Node::MaxPool(g), _, _) => {
                    let shape = vec![
                        g.channels as i32,
                        g.in_hw[0] as i32,
                        g.in_hw[1] as i32,
                        g.kernel[0] as i32,
                        g.kernel[1] as i32,
                        g.stride[0] as i32,
                        g.stride[1] as i32,
                        g.out_hw[0] as i32,
                        g.out_hw[1] as i32,
                        0,
                    ];
                    if stride != values {
                        return Err(QuantError::Invalid {
                            key: "gpu",
                            reason: format!(
                                "node {i}: max pooling of a padded map has no GPU path"
                            ),
                        });
                    }
                    stride = g.channels * g.out_hw[0] * g.out_hw[1];
                    values = stride;
                    steps.push(Step::Pool {
                        shape,
                        out_len: stride,
                    });
                }
                (Node::Relu, _, _) => {
                    return Err(QuantError::Invalid {
                        key: "gpu",
                        reason: format!("node {i}: a ReLU not fused into a layer has no GPU path"),
                    });
                }
                (Node::Flatten, _, _) => {}
            }
            layout = plan.layouts[i + 1];
        }
        if let Layout::Map([c, h, w]) = layout
            && c > 1
            && h * w > 1
        {
            return Err(QuantError::Invalid {
                key: "gpu",
                reason: "a network ending in a feature map has no GPU path".into(),
            });
        }
        let (Some(in_q), Some(out_q)) = (in_q, out_q) else {
            return Err(QuantError::Invalid {
                key: "gpu",
                reason: "the model has no static int8 layer".into(),
            });
        };
        if matches!(plan.layouts[0], Layout::Map([c, _, _]) if c > 1) {
            return Err(QuantError::Invalid {
                key: "gpu",
                reason: "multi-channel inputs are not transposed on the GPU yet".into(),
            });
        }
        Ok(Self {
            client,
            steps,
            in_q,
            out_q,
            in_len: model.network.in_len(),
            out_values: values,
            out_stride: stride,
            shapes: Default::default(),
        })
    }

    /// Logits `[batch, classes]` for `x` (`[batch, in_len]`): the input quantized on the
    /// host, every layer on the device, the u8 logits read back and dequantized.
    pub fn run(&self, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        if x.len() != batch * self.in_len {
            return Err(QuantError::InputSize {
                expected: batch * self.in_len,
                found: x.len(),
                batch,
            });
        }
        let client = &self.client;
        let mut q = vec![0u8; x.len().div_ceil(4) * 4];
        quantize_into(x, &self.in_q, &mut q[..x.len()]);
        let mut cur = client.create_from_slice(&q);
        let mut len = x.len();
        let shapes = self.shape_buffers(batch);
        for (step, shape) in self.steps.iter().zip(shapes) {
            match step {
                Step::Dense {
                    weights: Weights { w, params, .. },
                    out_len,
                    ..
                } => {
                    len = batch * out_len;
                    let out = client.empty(len.div_ceil(4) * 4);
                    client.launch(
                        Box::new(Wgsl {
                            source: dense_source(),
                            entry: "dense",
                        }),
                        word_groups(len),
                        KernelArguments::new()
                            .with_buffer(cur.binding())
                            .with_buffer(w.clone().binding())
                            .with_buffer(params.clone().binding())
                            .with_buffer(shape.binding())
                            .with_buffer(out.clone().binding()),
                    );
                    cur = out;
                }
                Step::Pool { out_len, .. } => {
                    len = batch * out_len;
                    let out = client.empty(len.div_ceil(4) * 4);
                    client.launch(
                        Box::new(Wgsl {
                            source: POOL,
                            entry: "pool",
                        }),
                        word_groups(len),
                        KernelArguments::new()
                            .with_buffer(cur.binding())
                            .with_buffer(shape.binding())
                            .with_buffer(out.clone().binding()),
                    );
                    cur = out;
                }
            }
        }
        let bytes = client
            .read_one(cur)
            .map_err(|e| QuantError::Graph(format!("GPU read-back failed: {e:?}")))?;
        debug_assert_eq!(len, batch * self.out_stride);
        Ok(bytes[..len]
            .chunks_exact(self.out_stride)
            .flat_map(|sample| &sample[..self.out_values])
            .map(|&v| self.out_q.dequantize(v))
            .collect())
    }

    /// The steps' `shape` vectors with `batch` in their last slot, on the device: uploaded
    /// on the first call at this batch size, then reused.
    fn shape_buffers(&self, batch: usize) -> Vec<Handle> {
        let mut cache = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, handles)) = cache.iter().find(|(b, _)| *b == batch) {
            return handles.clone();
        }
        let handles: Vec<Handle> = self
            .steps
            .iter()
            .map(|step| {
                let (Step::Dense { shape, .. } | Step::Pool { shape, .. }) = step;
                let mut shape = shape.clone();
                *shape.last_mut().expect("batch slot") = batch as i32;
                self.client.create_from_slice(&bytes_i32(&shape))
            })
            .collect();
        if cache.len() == SHAPE_CACHE {
            cache.remove(0);
        }
        cache.push((batch, handles.clone()));
        handles
    }
}

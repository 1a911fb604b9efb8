// A layer over packed u8 maps on the device: convolution (implicit GEMM over a
// channels-last sample, out-of-image taps reading the zero point) or linear (a 1x1 conv
// of a 1x1 map), requantized and written back packed, 4 values a word. A linear layer's
// outputs are stored padded to a multiple of 4 (the padding meets the next layer's zero
// weights), so every linear layer takes the word path below.

// The shape parameters: `DenseShape` in shapes.rs, field for field.
struct DenseShape {
    n: i32,
    k4: i32,
    c: i32,
    h: i32,
    w: i32,
    kh: i32,
    kw: i32,
    sy: i32,
    sx: i32,
    py: i32,
    px: i32,
    oh: i32,
    ow: i32,
    seg4: i32,
    zp: i32,
    zo: i32,
    lo: i32,
    hi: i32,
    in_stride: i32,
    batch: i32,
}

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> params: array<i32>;
@group(0) @binding(3) var<storage, read_write> shape: DenseShape;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

REQUANT

fn byte_at(i: u32) -> u32 {
    return (x[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

fn out_value(j: u32, acc: i32) -> u32 {
    let v = shape.zo + requant(acc + params[3u * j], params[3u * j + 1u], u32(params[3u * j + 2u]));
    return u32(clamp(v, shape.lo, shape.hi));
}

// One output value, flat index o = (b * pixels + p) * n + j (layers with n % 4 != 0).
fn dense_one(o: u32) -> u32 {
    let n = u32(shape.n);
    let k4 = u32(shape.k4);
    let c = u32(shape.c);
    let h = shape.h;
    let wd = shape.w;
    let kw = u32(shape.kw);
    let ow = u32(shape.ow);
    let pixels = u32(shape.oh) * ow;
    let seg4 = u32(shape.seg4);
    let zp = u32(shape.zp);
    let j = o % n;
    let p = (o / n) % pixels;
    let in_base = (o / (n * pixels)) * u32(shape.in_stride);
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
                let iy = oy * shape.sy + i32(ky) - shape.py;
                let ix = ox * shape.sx + i32(rem / c) - shape.px;
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
    let n4 = u32(shape.n) / 4u;
    let k4 = u32(shape.k4);
    let c = u32(shape.c);
    let h = shape.h;
    let wd = shape.w;
    let kh = u32(shape.kh);
    let kw = u32(shape.kw);
    let ow = u32(shape.ow);
    let pixels = u32(shape.oh) * ow;
    let seg4 = u32(shape.seg4);
    let zp = u32(shape.zp);
    let j = (word % n4) * 4u;
    let pix = word / n4;
    let p = pix % pixels;
    let in_base = (pix / pixels) * u32(shape.in_stride);
    let oy = i32(p / ow) * shape.sy - shape.py;
    let ox = i32(p % ow) * shape.sx - shape.px;
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
    let total = u32(shape.n) * u32(shape.oh) * u32(shape.ow) * u32(shape.batch);
    let word = id.x + id.y * groups.x * 64u;
    if (word * 4u >= total) {
        return;
    }
    if (u32(shape.n) % 4u == 0u) {
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

// Max pooling of packed u8 channels-last maps.

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

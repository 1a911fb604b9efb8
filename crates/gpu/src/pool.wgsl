// Max pooling of packed u8 channels-last maps.

// The shape parameters: `PoolShape` in shapes.rs, field for field.
struct PoolShape {
    c: i32,
    h: i32,
    w: i32,
    kh: i32,
    kw: i32,
    sy: i32,
    sx: i32,
    oh: i32,
    ow: i32,
    batch: i32,
}

@group(0) @binding(0) var<storage, read_write> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> shape: PoolShape;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

// One output value, flat index o = ((b * oh + py) * ow + px) * c + ch.
fn pool_one(o: u32) -> u32 {
    let c = u32(shape.c);
    let h = u32(shape.h);
    let wd = u32(shape.w);
    let oh = u32(shape.oh);
    let ow = u32(shape.ow);
    let ch = o % c;
    let px = (o / c) % ow;
    let py = (o / (c * ow)) % oh;
    let b = o / (c * ow * oh);
    var m = 0u;
    for (var ky = 0u; ky < u32(shape.kh); ky = ky + 1u) {
        for (var kx = 0u; kx < u32(shape.kw); kx = kx + 1u) {
            let iy = py * u32(shape.sy) + ky;
            let ix = px * u32(shape.sx) + kx;
            let i = ((b * h + iy) * wd + ix) * c + ch;
            m = max(m, (x[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
        }
    }
    return m;
}

@compute @workgroup_size(64, 1, 1)
fn pool(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let total = u32(shape.batch) * u32(shape.oh) * u32(shape.ow) * u32(shape.c);
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

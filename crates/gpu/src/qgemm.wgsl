// One layer's u8 x i8 GEMM with requantization: one output per invocation (GpuLayer).

// The shape parameters: `QgemmShape` in shapes.rs, field for field.
struct QgemmShape {
    m: i32,
    n: i32,
    k4: i32,
    zo: i32,
    lo: i32,
    hi: i32,
}

@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> params: array<i32>;
@group(0) @binding(3) var<storage, read_write> shape: QgemmShape;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

REQUANT

@compute @workgroup_size(64, 1, 1)
fn qgemm(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = u32(shape.n);
    let k4 = u32(shape.k4);
    let j = id.x;
    let row = id.y;
    if (j >= n || row >= u32(shape.m)) {
        return;
    }
    var acc = 0;
    for (var q = 0u; q < k4; q = q + 1u) {
        acc = acc + dot4I8Packed(a[row * k4 + q] ^ 0x80808080u, w[j * k4 + q]);
    }
    let x = acc + params[3u * j];
    let v = shape.zo + requant(x, params[3u * j + 1u], u32(params[3u * j + 2u]));
    out[row * n + j] = u32(clamp(v, shape.lo, shape.hi));
}

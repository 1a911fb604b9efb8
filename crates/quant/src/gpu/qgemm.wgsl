// One layer's u8 x i8 GEMM with requantization: one output per invocation (GpuLayer).

@group(0) @binding(0) var<storage, read_write> a: array<u32>;
@group(0) @binding(1) var<storage, read_write> w: array<u32>;
@group(0) @binding(2) var<storage, read_write> params: array<i32>;
@group(0) @binding(3) var<storage, read_write> shape: array<i32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

REQUANT

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

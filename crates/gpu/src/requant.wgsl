// Shared by the GEMM and the network kernel (spliced in where they say REQUANT).

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

//! Weight arithmetic of the import: BatchNorm folded into the layer before it.

/// Folds `y = gamma * (x - mean) / sqrt(var + eps) + beta` into the layer producing `x`:
/// each output channel's weight row scaled by `a = gamma / sqrt(var + eps)`, its bias
/// becoming `(bias - mean) * a + beta`. `weight` is `[n, k]` row-major. In f64, so that the
/// fold adds no rounding of its own beyond the final f32.
pub fn batch_norm(
    weight: &mut [f32],
    bias: &mut [f32],
    [gamma, beta, mean, var]: [&[f32]; 4],
    eps: f64,
) {
    let n = bias.len();
    let k = weight.len() / n.max(1);
    for o in 0..n {
        let a = gamma[o] as f64 / (var[o] as f64 + eps).sqrt();
        for w in &mut weight[o * k..(o + 1) * k] {
            *w = (*w as f64 * a) as f32;
        }
        bias[o] = ((bias[o] as f64 - mean[o] as f64) * a + beta[o] as f64) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_layer_computes_layer_then_batch_norm() {
        // Two outputs, three inputs.
        let w = [0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75];
        let b = [0.1f32, -0.2];
        let (gamma, beta, mean, var) =
            ([1.5f32, 0.5], [0.3f32, -0.1], [0.2f32, -0.4], [0.9f32, 2.0]);
        let eps = 1e-5;
        let x = [0.7f32, -0.3, 1.1];
        let (mut wf, mut bf) = (w.to_vec(), b.to_vec());
        batch_norm(&mut wf, &mut bf, [&gamma, &beta, &mean, &var], eps);
        for o in 0..2 {
            let y: f64 = (0..3)
                .map(|i| w[o * 3 + i] as f64 * x[i] as f64)
                .sum::<f64>()
                + b[o] as f64;
            let bn = gamma[o] as f64 * (y - mean[o] as f64) / (var[o] as f64 + eps).sqrt()
                + beta[o] as f64;
            let folded: f64 = (0..3)
                .map(|i| wf[o * 3 + i] as f64 * x[i] as f64)
                .sum::<f64>()
                + bf[o] as f64;
            assert!((bn - folded).abs() < 1e-6, "output {o}: {bn} vs {folded}");
        }
    }
}

//! Writes three small models and `expected.json` into a folder (default
//! `out/`), for `scripts/check_onnx.py` to verify with the `onnx` checker and
//! ONNX Runtime:
//!
//! - `float_gemm.onnx`: x[batch,4] -> Gemm(transB=1, W[3,4], b[3]) -> Relu -> y;
//! - `qdq_gemm.onnx`: the same in the QDQ form `quantize_static` produces
//!   (u8 activations, per-channel int8 weights on axis 0, int32 bias with
//!   scale = input scale x weight scale, output Q/DQ);
//! - `qdq_conv.onnx`: x[batch,1,4,4] -> QDQ Conv 3x3 pad 1 (per-channel int8,
//!   2 output channels) -> Relu -> Q/DQ -> MaxPool 2x2 -> Q/DQ -> Reshape [0,-1]
//!   -> Q/DQ -> QDQ Gemm (int8 output) -> y[batch,3].
//!
//! `expected.json` holds fixed inputs at batch 1 and 3 and the outputs computed
//! here in plain Rust from the original arrays (not from the written protobuf),
//! so a wrong byte order or layout in the files shows up as a mismatch.
//!
//! Run: `cargo run --example qdq_demo -- out && python3 scripts/check_onnx.py --expected out/expected.json`

use std::fmt::Write as _;
use std::path::Path;

use quantlab_onnx::{Attr, DEFAULT_OPSET, Error, GraphBuilder, ModelProto, check, read, write};

/// xorshift64*: deterministic weights and inputs without a rand dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40; // 24 bits
        lo + (hi - lo) * (bits as f32 / (1u64 << 24) as f32)
    }

    fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

/// ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zp).
fn quantize(x: f32, scale: f32, zp: i32, lo: i32, hi: i32) -> i32 {
    ((x / scale).round_ties_even() as i32 + zp).clamp(lo, hi)
}

/// QuantizeLinear then DequantizeLinear with the same parameters.
fn fake_quant(x: f32, scale: f32, zp: i32, lo: i32, hi: i32) -> f32 {
    (quantize(x, scale, zp, lo, hi) - zp) as f32 * scale
}

/// Symmetric per-row int8 quantization of a [rows, cols] matrix (zero point 0).
fn quantize_rows(w: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let cols = w.len() / rows;
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(rows);
    for row in w.chunks(cols) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if max > 0.0 { max / 127.0 } else { 1.0 };
        scales.push(s);
        q.extend(row.iter().map(|&v| quantize(v, s, 0, -127, 127) as i8));
    }
    (q, scales)
}

/// The int32 bias and its per-channel scale `input scale x weight scale`.
fn quantize_bias(b: &[f32], x_scale: f32, w_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = w_scales.iter().map(|&ws| x_scale * ws).collect();
    let q = b
        .iter()
        .zip(&scales)
        .map(|(&v, &s)| quantize(v, s, 0, i32::MIN, i32::MAX))
        .collect();
    (q, scales)
}

fn dequant_rows(q: &[i8], scales: &[f32]) -> Vec<f32> {
    let cols = q.len() / scales.len();
    q.iter()
        .enumerate()
        .map(|(i, &v)| v as f32 * scales[i / cols])
        .collect()
}

/// y[b, n] = sum_k x[b, k] w[n, k] + bias[n]  (Gemm with transB = 1).
fn gemm(x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let n = bias.len();
    let k = w.len() / n;
    x.chunks(k)
        .flat_map(|row| {
            (0..n).map(move |j| {
                row.iter()
                    .zip(&w[j * k..(j + 1) * k])
                    .fold(0f32, |acc, (a, b)| acc + a * b)
                    + bias[j]
            })
        })
        .collect()
}

/// Conv 3x3, pad 1, stride 1, one input channel: [b,1,h,w] -> [b,oc,h,w].
fn conv3x3(x: &[f32], h: usize, w: usize, weight: &[f32], bias: &[f32]) -> Vec<f32> {
    let oc = bias.len();
    let mut out = Vec::with_capacity(x.len() * oc);
    for img in x.chunks(h * w) {
        for (c, &bc) in bias.iter().enumerate() {
            for i in 0..h {
                for j in 0..w {
                    let mut acc = 0f32;
                    for ki in 0..3 {
                        for kj in 0..3 {
                            let (ii, jj) = ((i + ki).wrapping_sub(1), (j + kj).wrapping_sub(1));
                            if ii < h && jj < w {
                                acc += img[ii * w + jj] * weight[c * 9 + ki * 3 + kj];
                            }
                        }
                    }
                    out.push(acc + bc);
                }
            }
        }
    }
    out
}

/// MaxPool 2x2 stride 2 on [.., h, w] planes.
fn maxpool2x2(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len() / 4);
    for plane in x.chunks(h * w) {
        for i in (0..h).step_by(2) {
            for j in (0..w).step_by(2) {
                let m = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|&(di, dj)| plane[(i + di) * w + j + dj])
                    .fold(f32::NEG_INFINITY, f32::max);
                out.push(m);
            }
        }
    }
    out
}

fn relu(v: Vec<f32>) -> Vec<f32> {
    v.into_iter().map(|x| x.max(0.0)).collect()
}

/// Computes a model's output for a batch of inputs, from the original arrays.
type Reference = Box<dyn Fn(&[f32]) -> Vec<f32>>;

/// A written model and how to compute its output for a batch of inputs.
struct Demo {
    file: &'static str,
    model: ModelProto,
    input: &'static str,
    input_rest: Vec<usize>,
    output: &'static str,
    output_rest: Vec<usize>,
    /// Allowed |difference|: one output quantization step for QDQ models.
    atol: f32,
    reference: Reference,
}

const X_SCALE: f32 = 2.0 / 255.0;
const X_ZP: u8 = 128;

fn float_gemm(w: &[f32], b: &[f32]) -> Result<Demo, Error> {
    let mut g = GraphBuilder::new("float_gemm");
    g.batched_input("x", &[4]).batched_output("y", &[3]);
    g.initializer("fc.weight", &[3, 4], w)?
        .initializer("fc.bias", &[3], b)?;
    g.node(
        "fc",
        "Gemm",
        &["x", "fc.weight", "fc.bias"],
        &["fc.out"],
        &[("transB", Attr::Int(1))],
    )
    .node("relu", "Relu", &["fc.out"], &["y"], &[]);
    let (w, b) = (w.to_vec(), b.to_vec());
    Ok(Demo {
        file: "float_gemm.onnx",
        model: g.finish(DEFAULT_OPSET, "quantlab-onnx qdq_demo"),
        input: "x",
        input_rest: vec![4],
        output: "y",
        output_rest: vec![3],
        atol: 1e-5,
        reference: Box::new(move |x| relu(gemm(x, &w, &b))),
    })
}

/// Adds DQ(weight) and DQ(bias) initializers and nodes for a per-channel
/// int8 Gemm/Conv layer; returns (dequantized weight, dequantized bias) names
/// and values.
fn add_qdq_params(
    g: &mut GraphBuilder,
    layer: &str,
    w_dims: &[i64],
    w: &[f32],
    b: &[f32],
    in_scale: f32,
) -> Result<(Vec<f32>, Vec<f32>), Error> {
    let rows = w_dims[0] as usize;
    let (wq, ws) = quantize_rows(w, rows);
    let (bq, bs) = quantize_bias(b, in_scale, &ws);
    let n = |s: &str| format!("{layer}.{s}");
    g.initializer(&n("weight_quantized"), w_dims, &wq)?
        .initializer(&n("weight_scale"), &[rows as i64], &ws)?
        .initializer(&n("weight_zero_point"), &[rows as i64], &vec![0i8; rows])?
        .initializer(&n("bias_quantized"), &[rows as i64], &bq)?
        .initializer(&n("bias_scale"), &[rows as i64], &bs)?
        .initializer(&n("bias_zero_point"), &[rows as i64], &vec![0i32; rows])?;
    let axis0 = [("axis", Attr::Int(0))];
    g.node(
        &n("weight_dq"),
        "DequantizeLinear",
        &[
            &n("weight_quantized"),
            &n("weight_scale"),
            &n("weight_zero_point"),
        ],
        &[&n("weight")],
        &axis0,
    )
    .node(
        &n("bias_dq"),
        "DequantizeLinear",
        &[
            &n("bias_quantized"),
            &n("bias_scale"),
            &n("bias_zero_point"),
        ],
        &[&n("bias")],
        &axis0,
    );
    let b_dq = bq.iter().zip(&bs).map(|(&q, &s)| q as f32 * s).collect();
    Ok((dequant_rows(&wq, &ws), b_dq))
}

/// Q then DQ of `value` with the named scalar scale and zero point.
fn add_qdq(g: &mut GraphBuilder, value: &str, scale: &str, zp: &str, out: &str) {
    let q = format!("{value}_quantized");
    g.node(
        &format!("{value}_QuantizeLinear"),
        "QuantizeLinear",
        &[value, scale, zp],
        &[&q],
        &[],
    )
    .node(
        &format!("{value}_DequantizeLinear"),
        "DequantizeLinear",
        &[&q, scale, zp],
        &[out],
        &[],
    );
}

fn qdq_gemm(w: &[f32], b: &[f32]) -> Result<Demo, Error> {
    const Y_SCALE: f32 = 4.0 / 255.0;
    let mut g = GraphBuilder::new("qdq_gemm");
    g.batched_input("x", &[4]).batched_output("y", &[3]);
    g.scalar("x_scale", X_SCALE)
        .scalar("x_zero_point", X_ZP)
        .scalar("y_scale", Y_SCALE)
        .scalar("y_zero_point", 0u8);
    add_qdq(&mut g, "x", "x_scale", "x_zero_point", "x_dq");
    let (w_dq, b_dq) = add_qdq_params(&mut g, "fc", &[3, 4], w, b, X_SCALE)?;
    g.node(
        "fc",
        "Gemm",
        &["x_dq", "fc.weight", "fc.bias"],
        &["fc.out"],
        &[("transB", Attr::Int(1))],
    )
    .node("relu", "Relu", &["fc.out"], &["relu.out"], &[]);
    add_qdq(&mut g, "relu.out", "y_scale", "y_zero_point", "y");
    Ok(Demo {
        file: "qdq_gemm.onnx",
        model: g.finish(DEFAULT_OPSET, "quantlab-onnx qdq_demo"),
        input: "x",
        input_rest: vec![4],
        output: "y",
        output_rest: vec![3],
        atol: Y_SCALE * 1.001,
        reference: Box::new(move |x| {
            let x: Vec<f32> = x
                .iter()
                .map(|&v| fake_quant(v, X_SCALE, 128, 0, 255))
                .collect();
            relu(gemm(&x, &w_dq, &b_dq))
                .into_iter()
                .map(|v| fake_quant(v, Y_SCALE, 0, 0, 255))
                .collect()
        }),
    })
}

fn qdq_conv(rng: &mut Rng) -> Result<Demo, Error> {
    const A_SCALE: f32 = 3.0 / 255.0;
    const Y_SCALE: f32 = 4.0 / 127.0;
    let conv_w = rng.vec(2 * 9, -0.5, 0.5);
    let conv_b = rng.vec(2, -0.2, 0.2);
    let fc_w = rng.vec(3 * 8, -0.6, 0.6);
    let fc_b = rng.vec(3, -0.3, 0.3);

    let mut g = GraphBuilder::new("qdq_conv");
    g.batched_input("x", &[1, 4, 4]).batched_output("y", &[3]);
    g.scalar("x_scale", X_SCALE)
        .scalar("x_zero_point", X_ZP)
        .scalar("a_scale", A_SCALE)
        .scalar("a_zero_point", 0u8)
        .scalar("y_scale", Y_SCALE)
        .scalar("y_zero_point", 0i8);
    g.initializer("flatten.shape", &[2], &[0i64, -1])?;
    add_qdq(&mut g, "x", "x_scale", "x_zero_point", "x_dq");
    let (cw, cb) = add_qdq_params(&mut g, "conv", &[2, 1, 3, 3], &conv_w, &conv_b, X_SCALE)?;
    g.node(
        "conv",
        "Conv",
        &["x_dq", "conv.weight", "conv.bias"],
        &["conv.out"],
        &[
            ("kernel_shape", Attr::Ints(vec![3, 3])),
            ("pads", Attr::Ints(vec![1, 1, 1, 1])),
            ("strides", Attr::Ints(vec![1, 1])),
        ],
    )
    .node("relu", "Relu", &["conv.out"], &["relu.out"], &[]);
    add_qdq(&mut g, "relu.out", "a_scale", "a_zero_point", "relu.dq");
    g.node(
        "pool",
        "MaxPool",
        &["relu.dq"],
        &["pool.out"],
        &[
            ("kernel_shape", Attr::Ints(vec![2, 2])),
            ("strides", Attr::Ints(vec![2, 2])),
        ],
    );
    add_qdq(&mut g, "pool.out", "a_scale", "a_zero_point", "pool.dq");
    g.node(
        "flatten",
        "Reshape",
        &["pool.dq", "flatten.shape"],
        &["flatten.out"],
        &[],
    );
    add_qdq(
        &mut g,
        "flatten.out",
        "a_scale",
        "a_zero_point",
        "flatten.dq",
    );
    let (fw, fb) = add_qdq_params(&mut g, "fc", &[3, 8], &fc_w, &fc_b, A_SCALE)?;
    g.node(
        "fc",
        "Gemm",
        &["flatten.dq", "fc.weight", "fc.bias"],
        &["fc.out"],
        &[("transB", Attr::Int(1))],
    );
    add_qdq(&mut g, "fc.out", "y_scale", "y_zero_point", "y");
    Ok(Demo {
        file: "qdq_conv.onnx",
        model: g.finish(DEFAULT_OPSET, "quantlab-onnx qdq_demo"),
        input: "x",
        input_rest: vec![1, 4, 4],
        output: "y",
        output_rest: vec![3],
        atol: Y_SCALE * 1.001,
        reference: Box::new(move |x| {
            let x: Vec<f32> = x
                .iter()
                .map(|&v| fake_quant(v, X_SCALE, 128, 0, 255))
                .collect();
            let a: Vec<f32> = relu(conv3x3(&x, 4, 4, &cw, &cb))
                .into_iter()
                .map(|v| fake_quant(v, A_SCALE, 0, 0, 255))
                .collect();
            // MaxPool and the reshape keep values on the a_scale grid.
            let pooled = maxpool2x2(&a, 4, 4);
            gemm(&pooled, &fw, &fb)
                .into_iter()
                .map(|v| fake_quant(v, Y_SCALE, 0, -128, 127))
                .collect()
        }),
    })
}

fn json_array(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", items.join(", "))
}

fn json_shape(batch: usize, rest: &[usize]) -> String {
    let dims: Vec<String> = std::iter::once(batch)
        .chain(rest.iter().copied())
        .map(|d| d.to_string())
        .collect();
    format!("[{}]", dims.join(", "))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "out".to_owned());
    let out = Path::new(&out);
    std::fs::create_dir_all(out)?;

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let w = rng.vec(12, -1.0, 1.0);
    let b = rng.vec(3, -0.5, 0.5);
    let demos = [float_gemm(&w, &b)?, qdq_gemm(&w, &b)?, qdq_conv(&mut rng)?];

    let mut json = String::from("{\"models\": [\n");
    for (i, d) in demos.iter().enumerate() {
        check(&d.model)?;
        let path = out.join(d.file);
        write(&path, &d.model, true)?;
        assert!(
            read(&path)? == d.model,
            "{} did not read back equal",
            path.display()
        );
        let size = std::fs::metadata(&path)?.len();
        println!(
            "wrote {} ({size} bytes, {} nodes)",
            path.display(),
            d.model.graph.as_ref().map_or(0, |g| g.node.len())
        );

        let mut cases = Vec::new();
        for batch in [1usize, 3] {
            let n: usize = batch * d.input_rest.iter().product::<usize>();
            let x = rng.vec(n, -1.2, 1.2);
            let y = (d.reference)(&x);
            assert_eq!(y.len(), batch * d.output_rest.iter().product::<usize>());
            let mut case = String::new();
            write!(
                case,
                "{{\"inputs\": {{\"{}\": {{\"shape\": {}, \"data\": {}}}}}, \"outputs\": {{\"{}\": {{\"shape\": {}, \"data\": {}}}}}, \"atol\": {:?}}}",
                d.input,
                json_shape(batch, &d.input_rest),
                json_array(&x),
                d.output,
                json_shape(batch, &d.output_rest),
                json_array(&y),
                d.atol
            )?;
            cases.push(case);
        }
        let sep = if i + 1 < demos.len() { "," } else { "" };
        writeln!(
            json,
            "  {{\"path\": \"{}\", \"cases\": [\n    {}\n  ]}}{sep}",
            d.file,
            cases.join(",\n    ")
        )?;
    }
    json.push_str("]}\n");
    let json_path = out.join("expected.json");
    std::fs::write(&json_path, json)?;
    println!("wrote {}", json_path.display());
    Ok(())
}

//! The ONNX export, proven by two other runtimes on the MNIST test set: tract (pure Rust,
//! always) and ONNX Runtime (through `scripts/ort_check.py`, whenever `onnxruntime` is
//! importable, and always under CI). Every check compares logits and accuracy with
//! quantlab's own engine, so a file that loads but computes something else fails.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use quantlab_data::{DatasetName, LabeledSet, Splits, load, npy};
use quantlab_models::{ModelKind, ModelSpec};
use quantlab_onnx::export::{OnnxTarget, to_onnx};
use quantlab_quant::{
    ActDtype, BitWidths, Engine, Granularity, MethodKind, Network, QuantModel, QuantizeOptions,
    quantize, with_fallback,
};
use quantlab_train::{FitOptions, TrainConfig, fit};
use tract_onnx::prelude::*;

/// Largest |tract - quantlab| on a float logit.
const FLOAT_TOL: f32 = 1e-4;
/// Least top-1 agreement of an int8 file with quantlab's int8 engine.
const MIN_AGREEMENT: f64 = 0.999;
/// Largest accuracy difference (percentage points) from quantlab's int8 row.
const MAX_ACC_DIFF_PP: f64 = 0.05;
/// Batch tract runs at.
const BATCH: usize = 500;
/// ONNX Runtime on an x86 CPU with no 8-bit dot product (`CpuFeatures::int8_dot`) sums u8 x
/// s8 pairs in 16 bits, which saturates (the "saturation issue" its quantization guide names
/// for U8S8 on such CPUs): its int8 logits are then close to the exact ones, not equal.
/// Measured on an AMD EPYC without an 8-bit dot product (2026-11-29): 99.2%
/// and 98.9% top-1 agreement, 0.26 and 0.12 pp of accuracy, logits off by up to 2.6 where
/// tract, exact, agreed on 100%. On such a CPU ORT is held to these bounds instead.
const SATURATING_MIN_AGREEMENT: f64 = 0.98;
/// Largest accuracy difference (pp) from quantlab's int8 row for a saturating ORT. Seen:
/// 0.26 and 0.12 pp, and 0.61 pp for the MLP selected on the validation split (trained on
/// 54,000 images): how much ORT's saturation costs depends on the weights, so the bound is
/// 1 pp; the exact comparison is tract's, above.
const SATURATING_MAX_ACC_DIFF_PP: f64 = 1.0;

/// Whether ONNX Runtime's int8 GEMM saturates on this CPU (see [`SATURATING_MIN_AGREEMENT`]).
fn ort_saturates() -> bool {
    cfg!(target_arch = "x86_64") && !quantlab_linalg::CpuFeatures::get().int8_dot()
}

fn mnist(kind: ModelKind, train_limit: Option<usize>, batch_size: usize) -> (Splits, Network) {
    let cfg = TrainConfig {
        dataset: DatasetName::Mnist,
        model: ModelSpec::of(kind),
        epochs: 1,
        batch_size,
        lr: 1e-3,
        train_limit,
        ..TrainConfig::default()
    };
    let splits = load(DatasetName::Mnist, &cfg.data_options(None)).unwrap();
    let out = fit(&cfg, &splits, &Device::flex(), &FitOptions::default()).unwrap();
    let graph = out.model.to_graph(&splits.train.sample_shape).unwrap();
    (splits, Network::from_graph(&graph).unwrap())
}

fn engine_logits(m: &QuantModel, set: &LabeledSet) -> Vec<f32> {
    let e = Engine {
        threads: 2,
        ..Engine::default()
    };
    let d = set.dim();
    let mut out = Vec::new();
    for start in (0..set.len()).step_by(BATCH) {
        let n = BATCH.min(set.len() - start);
        out.extend(
            e.run_once(m, &set.features[start * d..(start + n) * d], n)
                .unwrap(),
        );
    }
    out
}

fn tract_logits(path: &Path, set: &LabeledSet) -> Vec<f32> {
    let mut shape = vec![BATCH];
    shape.extend(&set.sample_shape);
    let plan = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap()
        .with_input_fact(0, f32::fact(&shape).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let d = set.dim();
    let mut out = Vec::new();
    for start in (0..set.len()).step_by(BATCH) {
        let x = &set.features[start * d..(start + BATCH) * d];
        let t = Tensor::from_shape(&shape, x).unwrap();
        let r = plan.run(tvec!(t.into_tvalue())).unwrap();
        out.extend(r[0].to_plain_array_view::<f32>().unwrap().iter().copied());
    }
    out
}

/// (accuracy, top-1 agreement with `reference`, max |diff|).
fn compare(logits: &[f32], reference: &[f32], labels: &[u8]) -> (f64, f64, f32) {
    // First maximum, as quantlab's scorer and numpy break ties (int8 logits tie often).
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &x)| if x > b.1 { (i, x) } else { b },
            )
            .0
    };
    let (mut right, mut agree, mut worst) = (0usize, 0usize, 0f32);
    for ((a, b), &y) in logits.chunks(10).zip(reference.chunks(10)).zip(labels) {
        right += usize::from(argmax(a) == y as usize);
        agree += usize::from(argmax(a) == argmax(b));
        worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(worst, f32::max);
    }
    let n = labels.len() as f64;
    (right as f64 / n, agree as f64 / n, worst)
}

/// ONNX Runtime's (accuracy, agreement, max diff) on the file, or `None` where no Python
/// with onnxruntime and numpy is installed (the project's skip rule: one line, and a
/// failure under CI). Once the modules are there, any failure of the script fails the test.
fn ort(file: &Path, dir: &Path, set: &LabeledSet, reference: &[f32]) -> Option<(f64, f64, f64)> {
    let py = quantlab_testkit::python_with(
        "quant_onnx_export: ONNX Runtime",
        &["onnxruntime", "numpy"],
    )?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ort_check.py");
    let (x, y, r) = (dir.join("x.npy"), dir.join("y.npy"), dir.join("ref.npy"));
    let mut shape = vec![set.len()];
    shape.extend(&set.sample_shape);
    npy::write(&x, &shape, &set.features).unwrap();
    let labels: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
    npy::write(&y, &[set.len()], &labels).unwrap();
    npy::write(&r, &[set.len(), 10], reference).unwrap();
    let out = std::process::Command::new(&py)
        .arg(&script)
        .args([file, &x, &y, &r])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", py.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {text} {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let f = |k: &str| v[k].as_f64().unwrap();
    Some((f("accuracy"), f("agreement"), f("max_abs_diff")))
}

struct Case {
    name: &'static str,
    model: QuantModel,
    target: OnnxTarget,
}

fn check_cases(kind: ModelKind, splits: &Splits, net: &Network) {
    let e = Engine::default();
    let calib = &splits.train.features;
    let q = |gran, act| {
        let opts = QuantizeOptions {
            granularity: gran,
            act_dtype: act,
            ..QuantizeOptions::default()
        };
        quantize(net, &opts, calib, &e).unwrap()
    };
    let per_channel = q(Granularity::PerChannel, ActDtype::U8Affine);
    let first_dense = net.dense_indices()[0];
    let cases = [
        Case {
            name: "f32",
            model: QuantModel::float(net.clone()),
            target: OnnxTarget::Qdq,
        },
        Case {
            name: "static-per-channel-u8",
            model: per_channel.clone(),
            target: OnnxTarget::Qdq,
        },
        Case {
            name: "static-per-tensor-u8",
            model: q(Granularity::PerTensor, ActDtype::U8Affine),
            target: OnnxTarget::Qdq,
        },
        Case {
            name: "static-per-channel-i8",
            model: q(Granularity::PerChannel, ActDtype::I8Symmetric),
            target: OnnxTarget::Qdq,
        },
        Case {
            name: "tensorrt-i8",
            model: q(Granularity::PerChannel, ActDtype::I8Symmetric),
            target: OnnxTarget::Tensorrt,
        },
        Case {
            name: "mixed",
            model: with_fallback(&per_channel, &[first_dense]),
            target: OnnxTarget::Qdq,
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let test = &splits.test;
    for c in cases {
        let file: PathBuf = dir.path().join(format!("{kind}-{}.onnx", c.name));
        let exported = to_onnx(&c.model, c.target).unwrap();
        quantlab_onnx::write(&file, &exported.model, false).unwrap();
        let back = quantlab_onnx::read(&file).unwrap();
        assert_eq!(back, exported.model, "{}: round trip", c.name);
        let want = engine_logits(&c.model, test);
        let (q_acc, _, _) = compare(&want, &want, &test.labels);
        let got = tract_logits(&file, test);
        let (acc, agree, worst) = compare(&got, &want, &test.labels);
        eprintln!(
            "{kind} {}: quantlab {:.2}%, tract {:.2}%, agreement {:.4}, max |diff| {worst:.2e}",
            c.name,
            q_acc * 100.0,
            acc * 100.0,
            agree
        );
        // An int8 logit may differ by one output step where a rounding tie broke the
        // other way (tract multiplies by 1/scale, ONNX Runtime rounds half to even).
        let step = c
            .model
            .points
            .last()
            .copied()
            .flatten()
            .map_or(0.0, |q| q.scale)
            * 1.001;
        if c.name == "f32" {
            assert!(worst < FLOAT_TOL, "{kind} f32: tract logits off by {worst}");
        } else {
            assert!(
                worst <= step,
                "{kind} {}: tract logits off by {worst} > one step {step}",
                c.name
            );
            assert!(
                agree >= MIN_AGREEMENT,
                "{kind} {}: tract agrees on {agree}",
                c.name
            );
            assert!(
                (acc - q_acc).abs() * 100.0 <= MAX_ACC_DIFF_PP,
                "{kind} {}: tract {acc} vs quantlab {q_acc}",
                c.name
            );
        }
        if let Some((acc, agree, worst)) = ort(&file, dir.path(), test, &want) {
            eprintln!(
                "{kind} {}: ONNX Runtime {:.2}%, agreement {agree:.4}, max |diff| {worst:.2e}",
                c.name,
                acc * 100.0
            );
            if c.name == "f32" {
                assert!(
                    worst < FLOAT_TOL as f64,
                    "{kind} f32: ORT logits off by {worst}"
                );
            } else if ort_saturates() {
                eprintln!(
                    "{kind} {}: this CPU has no 8-bit dot product, so ONNX Runtime's u8 x s8 GEMM saturates; \
                     held to {SATURATING_MIN_AGREEMENT} agreement and \
                     {SATURATING_MAX_ACC_DIFF_PP} pp (tract above is held to the exact bounds)",
                    c.name
                );
                assert!(
                    agree >= SATURATING_MIN_AGREEMENT,
                    "{kind} {}: ORT agrees on {agree}",
                    c.name
                );
                assert!(
                    (acc - q_acc).abs() * 100.0 <= SATURATING_MAX_ACC_DIFF_PP,
                    "{kind} {}: ORT {acc} vs {q_acc}",
                    c.name
                );
            } else {
                assert!(
                    agree >= MIN_AGREEMENT,
                    "{kind} {}: ORT agrees on {agree}",
                    c.name
                );
                assert!(
                    worst <= step as f64,
                    "{kind} {}: ORT logits off by {worst}",
                    c.name
                );
                assert!(
                    (acc - q_acc).abs() * 100.0 <= MAX_ACC_DIFF_PP,
                    "{kind} {}: ORT {acc} vs {q_acc}",
                    c.name
                );
            }
        }
    }
}

#[test]
fn mnist_mlp_exports_run_the_same_in_tract_and_onnx_runtime() {
    let (s, net) = mnist(ModelKind::Mlp, None, 10);
    check_cases(ModelKind::Mlp, &s, &net);
}

#[test]
fn mnist_cnn_exports_run_the_same_in_tract_and_onnx_runtime() {
    let (s, net) = mnist(ModelKind::Cnn, Some(6000), 64);
    check_cases(ModelKind::Cnn, &s, &net);
}

#[test]
fn methods_onnx_cannot_express_are_refused_with_a_reason() {
    let (s, net) = mnist(ModelKind::Logreg, Some(2000), 64);
    let e = Engine::default();
    let with = |method, act| {
        let opts = QuantizeOptions {
            method,
            act_dtype: act,
            ..QuantizeOptions::default()
        };
        quantize(&net, &opts, &s.train.features, &e).unwrap()
    };
    let err = |m: &QuantModel, t| to_onnx(m, t).unwrap_err().to_string();
    let fixed = with(MethodKind::NaiveFixed, ActDtype::U8Affine);
    assert!(err(&fixed, OnnxTarget::Qdq).contains("naive-fixed"));
    let dynamic = with(MethodKind::Dynamic, ActDtype::U8Affine);
    assert!(err(&dynamic, OnnxTarget::Qdq).contains("dynamic"));
    let u8_model = with(MethodKind::Static, ActDtype::U8Affine);
    let msg = err(&u8_model, OnnxTarget::Tensorrt);
    assert!(
        msg.contains("zero points of 0") && msg.contains("i8-symmetric"),
        "{msg}"
    );
    let notes = to_onnx(&u8_model, OnnxTarget::Qdq).unwrap().notes;
    assert!(notes.iter().any(|n| n.contains("TensorRT")), "{notes:?}");
}

/// Below 8 bits: W4A4 and W2A4 (affine) export as opset-21 INT4 weights and UINT4
/// activations and run in ONNX Runtime at the engine's accuracy; widths ONNX cannot
/// express (3-bit or 2-bit activations, symmetric 4-bit ones) are refused with the reason.
#[test]
fn four_bit_exports_run_in_onnx_runtime_and_other_widths_are_refused() {
    let (s, net) = mnist(ModelKind::Mlp, Some(6000), 16);
    let e = Engine::default();
    let with = |bits: BitWidths, act| {
        let opts = QuantizeOptions {
            bits,
            act_dtype: act,
            ..QuantizeOptions::default()
        };
        quantize(&net, &opts, &s.train.features[..1000 * net.in_len()], &e).unwrap()
    };
    for (bits, act) in [
        (BitWidths::wa(2, 2), ActDtype::U8Affine),
        (BitWidths::wa(4, 3), ActDtype::U8Affine),
        (BitWidths::wa(4, 4), ActDtype::I8Symmetric),
    ] {
        let msg = to_onnx(&with(bits, act), OnnxTarget::Qdq)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains(&bits.tag()) && msg.contains("QuantizeLinear"),
            "{msg}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let test = &s.test;
    for bits in [
        BitWidths::wa(4, 4),
        BitWidths::wa(2, 4),
        BitWidths::wa(4, 8),
    ] {
        let m = with(bits, ActDtype::U8Affine);
        let exported = to_onnx(&m, OnnxTarget::Qdq).unwrap();
        assert_eq!(exported.model.opset_import[0].version, Some(21));
        assert_eq!(exported.model.ir_version, Some(10));
        let file = dir.path().join(format!("mlp-{}.onnx", bits.tag()));
        quantlab_onnx::write(&file, &exported.model, false).unwrap();
        assert_eq!(quantlab_onnx::read(&file).unwrap(), exported.model);
        let want = engine_logits(&m, test);
        let (q_acc, _, _) = compare(&want, &want, &test.labels);
        if let Some((acc, agree, worst)) = ort(&file, dir.path(), test, &want) {
            eprintln!(
                "mlp {}: quantlab {:.2}%, ONNX Runtime {:.2}%, agreement {agree:.4}, max |diff| {worst:.2e}",
                bits.tag(),
                q_acc * 100.0,
                acc * 100.0
            );
            assert!(
                agree >= MIN_AGREEMENT,
                "{}: ORT agrees on {agree}",
                bits.tag()
            );
            assert!(
                (acc - q_acc).abs() * 100.0 <= MAX_ACC_DIFF_PP,
                "{}: ORT {acc} vs {q_acc}",
                bits.tag()
            );
        }
    }
}

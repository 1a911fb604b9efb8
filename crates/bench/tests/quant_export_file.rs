//! The int8 file: reload gives bit-identical logits, and every kind of damage is a clear
//! error naming the file, never a panic.

mod common;

use std::path::Path;

use quantlab_models::ModelKind;
use quantlab_quant::export::{from_bytes, to_bytes};
use quantlab_quant::{Engine, KernelPath, MethodKind, QuantizeOptions, quantize};
use serde_json::{Value, json};

/// Least f32/int8 size ratio for the small digits MLP.
const SMALL_MODEL_MIN_RATIO: f64 = 3.0;

fn engine() -> Engine {
    Engine {
        path: KernelPath::Scalar,
        threads: 1,
    }
}

/// Splits a safetensors file into its JSON header and data section.
fn split(bytes: &[u8]) -> (Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&bytes[8..8 + n]).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn err_of(bytes: &[u8]) -> String {
    from_bytes(bytes, Path::new("model.safetensors"))
        .unwrap_err()
        .to_string()
}

#[test]
fn reload_is_bit_identical_for_every_method() {
    for kind in [ModelKind::Mlp, ModelKind::Cnn] {
        let (s, net) = common::trained(kind);
        let e = engine();
        for method in [
            MethodKind::F32,
            MethodKind::Naive,
            MethodKind::NaiveFixed,
            MethodKind::Dynamic,
            MethodKind::Static,
        ] {
            let q = quantize(
                &net,
                &QuantizeOptions {
                    method,
                    ..Default::default()
                },
                &s.train.features,
                &e,
            )
            .unwrap();
            let bytes = to_bytes(&q, json!({"dataset": "digits"})).unwrap();
            let (back, meta) = from_bytes(&bytes, Path::new("x")).unwrap();
            // Quantized layers travel as integers only; their float weights are not in the file.
            assert_eq!(
                (&back.layers, &back.points, &back.scheme),
                (&q.layers, &q.points, &q.scheme),
                "{kind} {method:?}"
            );
            assert_eq!(meta.provenance["dataset"], "digits");
            let x = &s.test.features[..32 * s.test.dim()];
            let (a, b) = (
                e.run_once(&q, x, 32).unwrap(),
                e.run_once(&back, x, 32).unwrap(),
            );
            assert!(
                a.iter().zip(&b).all(|(u, v)| u.to_bits() == v.to_bits()),
                "{kind} {method:?}"
            );
        }
    }
}

#[test]
fn int8_file_is_about_four_times_smaller() {
    let (s, net) = common::trained(ModelKind::Mlp);
    let e = engine();
    let f32_file = to_bytes(
        &quantize(
            &net,
            &QuantizeOptions {
                method: MethodKind::F32,
                ..Default::default()
            },
            &[],
            &e,
        )
        .unwrap(),
        json!({}),
    )
    .unwrap();
    let int8_file = to_bytes(
        &quantize(&net, &QuantizeOptions::default(), &s.train.features, &e).unwrap(),
        json!({}),
    )
    .unwrap();
    let ratio = f32_file.len() as f64 / int8_file.len() as f64;
    // The digits MLP is small (9,900 weights), so the JSON header weighs more than on MNIST.
    assert!(
        ratio > SMALL_MODEL_MIN_RATIO,
        "f32 {} B / int8 {} B = {ratio:.2}",
        f32_file.len(),
        int8_file.len()
    );
}

#[test]
fn damaged_files_are_errors() {
    let (s, net) = common::trained(ModelKind::Mlp);
    let e = engine();
    let q = quantize(&net, &QuantizeOptions::default(), &s.train.features, &e).unwrap();
    let good = to_bytes(&q, json!({})).unwrap();
    let (header, data) = split(&good);
    assert!(from_bytes(&good, Path::new("ok")).is_ok());

    // Truncated file.
    assert!(err_of(&good[..good.len() - 100]).contains("model.safetensors"));
    // Header length larger than the file.
    let mut b = good.clone();
    b[..8].copy_from_slice(&(good.len() as u64 * 2).to_le_bytes());
    assert!(
        err_of(&b).contains("not a valid safetensors"),
        "{}",
        err_of(&b)
    );
    // Empty file.
    assert!(err_of(&[]).contains("not a valid safetensors"));
    // Offsets beyond the data.
    let mut h = header.clone();
    let first = h
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.starts_with('n'))
        .unwrap()
        .clone();
    h[&first]["data_offsets"][1] = json!(data.len() * 4);
    assert!(!err_of(&join(&h, &data)).is_empty());
    // Dtype that disagrees with the graph (same byte count, so only quantlab can tell).
    let mut h = header.clone();
    h["n1.weight"]["dtype"] = json!("U8");
    let msg = err_of(&join(&h, &data));
    assert!(msg.contains("n1.weight") && msg.contains("I8"), "{msg}");
    // Shape that disagrees with the graph (same element count, transposed).
    let mut h = header.clone();
    let shape = h["n1.weight"]["shape"].clone();
    h["n1.weight"]["shape"] = json!([shape[1], shape[0]]);
    let msg = err_of(&join(&h, &data));
    assert!(msg.contains("node 1"), "{msg}");
    // A weight that is not a matrix.
    let mut h = header.clone();
    h["n1.weight"]["shape"] = json!([shape[0].as_u64().unwrap() * shape[1].as_u64().unwrap()]);
    let msg = err_of(&join(&h, &data));
    assert!(
        msg.contains("n1.weight") && msg.contains("2 dimensions"),
        "{msg}"
    );
    // Missing tensor.
    let mut h = header.clone();
    let t = h.as_object_mut().unwrap().remove("n2.weight").unwrap();
    h["n2.weight_renamed"] = t;
    let msg = err_of(&join(&h, &data));
    assert!(msg.contains("missing tensor n2.weight"), "{msg}");
    // Shared bias tensor shorter than the layers need (same bytes, fewer declared values).
    let mut h = header.clone();
    let n = h["bias_i32"]["shape"][0].as_u64().unwrap();
    let start = h["bias_i32"]["data_offsets"][0].as_u64().unwrap();
    h["bias_i32"]["shape"] = json!([n - 1]);
    h["bias_i32"]["data_offsets"][1] = json!(start + 4 * (n - 1));
    let msg = err_of(&join(&h, &data));
    assert!(!msg.is_empty(), "{msg}");
    // NaN weight scale.
    let off = header["w_scale"]["data_offsets"][0].as_u64().unwrap() as usize;
    let mut d = data.clone();
    d[off..off + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    let msg = err_of(&join(&header, &d));
    assert!(msg.contains("weight scale NaN"), "{msg}");
    // Activation scale that is not positive.
    let mut h = header.clone();
    let mut meta: Value =
        serde_json::from_str(h["__metadata__"]["quantlab"].as_str().unwrap()).unwrap();
    meta["points"][0]["scale"] = json!(-1.0);
    h["__metadata__"]["quantlab"] = json!(meta.to_string());
    let msg = err_of(&join(&h, &data));
    assert!(
        msg.contains("activation point 0") && msg.contains("scale -1"),
        "{msg}"
    );
    // Each invalid parameter names itself, not the scale.
    for (field, value, expect) in [
        ("zero_point", json!(300), "zero_point 300"),
        ("zero_point", json!(-5), "zero_point -5"),
        ("qmin", json!(-1), "qmin -1"),
        ("qmax", json!(256), "qmax 256"),
    ] {
        let mut h = header.clone();
        let mut meta: Value =
            serde_json::from_str(h["__metadata__"]["quantlab"].as_str().unwrap()).unwrap();
        meta["points"][0][field] = value;
        h["__metadata__"]["quantlab"] = json!(meta.to_string());
        let msg = err_of(&join(&h, &data));
        assert!(
            msg.contains(expect) && !msg.contains("scale must"),
            "{field}: {msg}"
        );
    }
    // No quantlab metadata.
    let mut h = header.clone();
    h.as_object_mut().unwrap().remove("__metadata__");
    assert!(err_of(&join(&h, &data)).contains("not a quantlab model file"));
    // Corrupt metadata JSON.
    let mut h = header.clone();
    h["__metadata__"]["quantlab"] = json!("{ nope");
    assert!(err_of(&join(&h, &data)).contains("corrupt"));
}

#[test]
fn dynamic_and_f32_layers_round_trip_too() {
    let (s, net) = common::trained(ModelKind::Cnn);
    let e = engine();
    let q = quantize(&net, &QuantizeOptions::default(), &s.train.features, &e).unwrap();
    let mixed = quantlab_quant::with_fallback(&q, &[0]);
    let (back, _) = from_bytes(&to_bytes(&mixed, json!({})).unwrap(), Path::new("x")).unwrap();
    assert_eq!(back.scheme.fallback, vec![0]);
    assert_eq!(back.layers, mixed.layers);
    let x = &s.test.features[..8 * s.test.dim()];
    assert_eq!(
        e.run_once(&back, x, 8).unwrap(),
        e.run_once(&mixed, x, 8).unwrap()
    );
}

//! Low-bit models in the file: weights below 5 bits packed (two or four to a byte), the
//! width in the metadata, reloaded bit-identical; a file whose packing or width disagrees
//! with its tensors is refused naming the tensor.

use std::path::Path;

use quantlab_data::rng::Rng;
use quantlab_quant::export::{from_bytes, to_bytes};
use quantlab_quant::{
    BitWidths, Dense, Engine, KernelPath, LayerImpl, MethodKind, Network, Node, QuantizeOptions,
    quantize,
};

fn mlp() -> Network {
    let mut rng = Rng::new(21);
    let mut dense = |k: usize, n: usize, relu: bool| {
        Node::Dense(Dense {
            conv: None,
            k,
            n,
            weight: (0..n * k).map(|_| rng.normal() as f32 * 0.2).collect(),
            bias: (0..n).map(|_| rng.normal() as f32 * 0.1).collect(),
            relu,
            cap: None,
            depthwise: false,
        })
    };
    let nodes = vec![
        dense(64, 33, true),
        dense(33, 17, true),
        dense(17, 10, false),
    ];
    Network::from_nodes(vec![64], nodes).unwrap()
}

fn engine() -> Engine {
    Engine {
        path: KernelPath::Scalar,
        threads: 1,
    }
}

fn quantized(bits: BitWidths) -> (quantlab_quant::QuantModel, Vec<f32>) {
    let net = mlp();
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..64 * 64).map(|_| rng.normal() as f32).collect();
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        bits,
        calib: 64,
        ..Default::default()
    };
    (quantize(&net, &opts, &x, &engine()).unwrap(), x)
}

#[test]
fn every_width_reloads_bit_identical_and_packs() {
    let mut sizes = Vec::new();
    for w in 2..=8u8 {
        let bits = BitWidths::wa(w, w.max(3));
        let (q, x) = quantized(bits);
        // The weights and every activation point honour the width.
        let qmax = (1i32 << (w - 1)) - 1;
        for l in q.layers.iter().flatten() {
            let LayerImpl::Static(l) = l else {
                panic!("static")
            };
            assert!(l.w.w.iter().all(|v| (*v as i32).abs() <= qmax), "w{w}");
            assert!(
                l.w.w.iter().any(|v| (*v as i32).abs() == qmax),
                "w{w} uses its range"
            );
        }
        let inner = q.points[1].unwrap();
        assert_eq!(inner.levels(), 1 << bits.acts, "{bits:?}");
        assert_eq!(q.points[0].unwrap().levels(), 256, "input stays 8-bit");
        assert_eq!(q.points[3].unwrap().levels(), 256, "logits stay 8-bit");
        let bytes = to_bytes(&q, serde_json::json!({})).unwrap();
        let (back, meta) = from_bytes(&bytes, Path::new("m.safetensors")).unwrap();
        assert_eq!(back.layers, q.layers, "w{w}");
        assert_eq!(back.points, q.points, "w{w}");
        assert_eq!(meta.scheme.widths, bits);
        let s = engine().prepare(&q).unwrap();
        let r = engine().prepare(&back).unwrap();
        assert_eq!(s.run(&x, 64).unwrap(), r.run(&x, 64).unwrap(), "w{w}");
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let weight_bytes: usize = (0..3)
            .map(|i| st.tensor(&format!("n{i}.weight")).unwrap().data().len())
            .sum();
        sizes.push((w, weight_bytes, bytes.len()));
    }
    let size = |w: u8| sizes.iter().find(|s| s.0 == w).unwrap().1;
    // [33, 64], [17, 33], [10, 17]: a byte each at 5..=8 bits, rows of ceil(k/2) bytes at
    // 3..=4, ceil(k/4) at 2.
    assert_eq!(size(8), 64 * 33 + 33 * 17 + 17 * 10);
    assert_eq!(size(5), size(8), "5..=7 bits stay a byte");
    assert_eq!(size(4), 32 * 33 + 17 * 17 + 9 * 10);
    assert_eq!(size(3), size(4), "3 bits share the 4-bit packing");
    assert_eq!(size(2), 16 * 33 + 9 * 17 + 5 * 10);
    let file = |w: u8| sizes.iter().find(|s| s.0 == w).unwrap().2;
    assert!(file(4) < file(8) && file(2) < file(4), "{sizes:?}");
    assert_eq!(
        quantized(BitWidths::wa(4, 4)).0.scheme.name(),
        "static-minmax-per-channel-w4a4"
    );
}

fn with_meta(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let (tensors, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let _ = tensors;
    let mut j: serde_json::Value =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["quantlab"]).unwrap();
    edit(&mut j);
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let views: Vec<(String, safetensors::tensor::TensorView)> = st.tensors().into_iter().collect();
    safetensors::tensor::serialize(
        views,
        Some(std::collections::HashMap::from([(
            "quantlab".to_string(),
            j.to_string(),
        )])),
    )
    .unwrap()
}

#[test]
fn a_width_that_disagrees_with_the_tensors_is_refused_naming_it() {
    let (q, _) = quantized(BitWidths::wa(4, 4));
    let bytes = to_bytes(&q, serde_json::json!({})).unwrap();
    let p = Path::new("w4.safetensors");
    let err = |b: &[u8]| from_bytes(b, p).unwrap_err().to_string();
    // Declared 2-bit: the tensor's bytes per row do not fit.
    let e = err(&with_meta(&bytes, |j| {
        j["nodes"][0]["weight_bits"] = 2.into()
    }));
    assert!(
        e.contains("n0.weight") && e.contains("w4.safetensors"),
        "{e}"
    );
    // Declared 3-bit (same nibble packing): values of +-7 are outside -3..=3.
    let e = err(&with_meta(&bytes, |j| {
        j["nodes"][1]["weight_bits"] = 3.into()
    }));
    assert!(e.contains("n1.weight") && e.contains("outside"), "{e}");
    // Declared 8-bit: the tensor is U8 packed, not I8.
    let e = err(&with_meta(&bytes, |j| {
        j["nodes"][2]["weight_bits"] = 8.into();
    }));
    assert!(e.contains("n2.weight"), "{e}");
    // A width quantlab never writes.
    let e = err(&with_meta(&bytes, |j| {
        j["nodes"][0]["weight_bits"] = 1.into()
    }));
    assert!(e.contains("weight_bits 1"), "{e}");
    // Wrong k for the packed row.
    let e = err(&with_meta(&bytes, |j| j["nodes"][0]["k"] = 70.into()));
    assert!(e.contains("n0.weight") && e.contains("70"), "{e}");
    // An 8-bit file whose metadata claims 4-bit weights holds values beyond +-7.
    let (q8, _) = quantized(BitWidths::default());
    let b8 = to_bytes(&q8, serde_json::json!({})).unwrap();
    let e = err(&with_meta(&b8, |j| j["nodes"][0]["weight_bits"] = 5.into()));
    assert!(e.contains("n0.weight") && e.contains("outside"), "{e}");
}

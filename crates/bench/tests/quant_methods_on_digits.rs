//! Every quantization method on models trained on the real digits set: the float engine
//! matches the graph's reference, calibrated int8 keeps accuracy, every observer and
//! granularity works, and the uncalibrated shortcut is scored honestly beside them.

mod common;

use quantlab_models::ModelKind;
use quantlab_quant::methods::DEFAULT_CALIB;
use quantlab_quant::{
    Engine, Granularity, KernelPath, MethodKind, ObserverKind, QuantModel, QuantizeOptions,
    quantize, score,
};

/// Largest |engine - reference| on a float logit.
const FLOAT_TOL: f32 = 1e-4;
/// Accuracy a calibrated static int8 model may lose on the 359 digits test images (pp).
const STATIC_BUDGET_PP: f64 = 2.0;
/// Same for dynamic int8.
const DYNAMIC_BUDGET_PP: f64 = 2.0;

fn engine() -> Engine {
    Engine {
        path: KernelPath::Scalar,
        threads: 1,
    }
}

#[test]
fn float_engine_matches_the_graph_reference() {
    for kind in [ModelKind::Mlp, ModelKind::Cnn] {
        let (s, net) = common::trained(kind);
        let x = &s.test.features[..20 * s.test.dim()];
        let got = engine()
            .run_once(&QuantModel::float(net.clone()), x, 20)
            .unwrap();
        // Rebuild the reference graph from the network's own weights via the model crate.
        let reference = reference_logits(&net, x, 20);
        let worst = got
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < FLOAT_TOL, "{kind}: {worst}");
    }
}

fn reference_logits(net: &quantlab_quant::Network, x: &[f32], batch: usize) -> Vec<f32> {
    net.to_graph().forward_reference(x, batch).unwrap()
}

#[test]
fn calibrated_int8_keeps_accuracy_for_every_observer_and_granularity() {
    for kind in [ModelKind::Mlp, ModelKind::Cnn] {
        let (s, net) = common::trained(kind);
        let e = engine();
        let float = score(&e, &QuantModel::float(net.clone()), &s.test).unwrap();
        assert!(
            float.accuracy > 0.9,
            "{kind}: float model under-trained: {float:?}"
        );
        for observer in ObserverKind::ALL {
            for granularity in [Granularity::PerTensor, Granularity::PerChannel] {
                let opts = QuantizeOptions {
                    observer,
                    granularity,
                    ..QuantizeOptions::default()
                };
                let q = quantize(&net, &opts, &s.train.features, &e).unwrap();
                assert_eq!(q.scheme.calib_samples, DEFAULT_CALIB);
                let acc = score(&e, &q, &s.test).unwrap().accuracy;
                let drop = (float.accuracy - acc) * 100.0;
                assert!(
                    drop < STATIC_BUDGET_PP,
                    "{kind} {}: {:.2}% vs float {:.2}%",
                    q.scheme.name(),
                    acc * 100.0,
                    float.accuracy * 100.0
                );
            }
        }
        let dynamic = quantize(
            &net,
            &QuantizeOptions {
                method: MethodKind::Dynamic,
                ..Default::default()
            },
            &[],
            &e,
        )
        .unwrap();
        let acc = score(&e, &dynamic, &s.test).unwrap().accuracy;
        assert!(
            (float.accuracy - acc) * 100.0 < DYNAMIC_BUDGET_PP,
            "{kind} dynamic: {acc} vs {}",
            float.accuracy
        );
    }
}

#[test]
fn static_layers_track_the_float_activations() {
    let (s, net) = common::trained(ModelKind::Mlp);
    let e = engine();
    let q = quantize(&net, &QuantizeOptions::default(), &s.train.features, &e).unwrap();
    let x = &s.test.features[..64 * s.test.dim()];
    let f = e.run_once(&QuantModel::float(net), x, 64).unwrap();
    let i = e.run_once(&q, x, 64).unwrap();
    let (num, den) = f.iter().zip(&i).fold((0f64, 0f64), |(n, d), (a, b)| {
        (n + (*a as f64).powi(2), d + ((a - b) as f64).powi(2))
    });
    let sqnr = 10.0 * (num / den).log10();
    assert!(sqnr > 20.0, "logit SQNR {sqnr:.1} dB");
}

#[test]
fn naive_methods_run_and_naive_fixed_is_worse_than_calibrated() {
    let (s, net) = common::trained(ModelKind::Mlp);
    let e = engine();
    let calibrated = score(
        &e,
        &quantize(&net, &QuantizeOptions::default(), &s.train.features, &e).unwrap(),
        &s.test,
    )
    .unwrap();
    let naive = score(
        &e,
        &quantize(
            &net,
            &QuantizeOptions {
                method: MethodKind::Naive,
                ..Default::default()
            },
            &[],
            &e,
        )
        .unwrap(),
        &s.test,
    )
    .unwrap();
    let fixed = score(
        &e,
        &quantize(
            &net,
            &QuantizeOptions {
                method: MethodKind::NaiveFixed,
                ..Default::default()
            },
            &[],
            &e,
        )
        .unwrap(),
        &s.test,
    )
    .unwrap();
    assert!(naive.accuracy > 0.5, "{naive:?}");
    assert!(
        fixed.accuracy < calibrated.accuracy,
        "naive-fixed {fixed:?} vs calibrated {calibrated:?}"
    );
}

#[test]
fn every_kernel_path_gives_bit_identical_logits() {
    for kind in [ModelKind::Mlp, ModelKind::Cnn] {
        let (s, net) = common::trained(kind);
        let x = &s.test.features[..37 * s.test.dim()];
        for method in [
            MethodKind::Static,
            MethodKind::Dynamic,
            MethodKind::NaiveFixed,
        ] {
            let q = quantize(
                &net,
                &QuantizeOptions {
                    method,
                    ..Default::default()
                },
                &s.train.features,
                &engine(),
            )
            .unwrap();
            let want = engine().run_once(&q, x, 37).unwrap();
            for path in KernelPath::ALL.into_iter().filter(|p| p.available()) {
                for threads in [1, 2] {
                    let got = Engine { path, threads }.run_once(&q, x, 37).unwrap();
                    assert!(
                        got.iter()
                            .zip(&want)
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{kind} {method:?} {path:?} x{threads}"
                    );
                }
            }
        }
    }
}

//! The GPU int8 GEMM (WGSL, through burn's wgpu runtime) against the CPU reference: the
//! same u8 x i8 products, the same integer requantization, so the same bytes. Runs on
//! lavapipe where there is no GPU (`.ci/run` installs it); without any wgpu device it says
//! so and skips, except under CI.

// The digits-trained fixtures the quantizer's end-to-end tests use (bench/tests).
#[path = "../../bench/tests/common/mod.rs"]
mod common;

use quantlab_data::rng::Rng;
use quantlab_gpu::{GpuError, GpuLayer, GpuModel};
use quantlab_linalg::{Epilogue, KernelPath, OutLayout, QWeights, Requant};
use quantlab_models::ModelKind;
use quantlab_quant::{Engine, Granularity, MethodKind, QuantizeOptions, quantize};

/// Whether a wgpu device answers (lavapipe counts). Only "no adapter" skips (the project's
/// rule: one line, and a failure under CI); any other error of the probe, such as a shader
/// or pipeline that does not build, fails the test. The probe also runs its one product.
fn gpu_here(test: &str) -> bool {
    match GpuLayer::new(&QWeights::new(vec![1; 4], 1, 4), &[0], &[Requant::new(0.5)]) {
        Ok(layer) => {
            let out = layer
                .run(&[2; 4], 1, 4, (0, 0, 255))
                .expect("the probe GEMM runs");
            assert_eq!(out, vec![4], "1x4 probe: 0.5 * (4 * 2 * 1)");
            true
        }
        Err(GpuError::NoDevice) => {
            quantlab_testkit::missing(test, &quantlab_testkit::Missing::gpu(GpuError::NoDevice));
            false
        }
        Err(e) => panic!("{test}: the GPU int8 path failed to set up: {e}"),
    }
}

#[test]
fn static_models_on_the_gpu_give_the_cpu_engines_logits_bit_for_bit() {
    if !gpu_here("static_models_on_the_gpu_give_the_cpu_engines_logits_bit_for_bit") {
        return;
    }
    for kind in [ModelKind::Mlp, ModelKind::Cnn] {
        let (s, net) = common::trained(kind);
        for granularity in [Granularity::PerChannel, Granularity::PerTensor] {
            let q = quantize(
                &net,
                &QuantizeOptions {
                    method: MethodKind::Static,
                    granularity,
                    ..Default::default()
                },
                &s.train.features,
                &Engine::default(),
            )
            .unwrap();
            let gpu = GpuModel::new(&q).unwrap();
            // Past the model's cache of per-batch shape buffers (8 sizes) and back.
            let batches: &[usize] =
                if kind == ModelKind::Mlp && granularity == Granularity::PerChannel {
                    &[1, 37, 2, 3, 4, 5, 6, 7, 8, 9, 1, 37]
                } else {
                    &[1, 37]
                };
            for &batch in batches {
                let x = &s.test.features[..batch * s.test.dim()];
                let want = Engine::default()
                    .prepare(&q)
                    .unwrap()
                    .run(x, batch)
                    .unwrap();
                let got = gpu.run(x, batch).unwrap();
                assert_eq!(got.len(), want.len());
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{kind} {granularity:?} batch {batch}"
                );
            }
        }
    }
    // A float model, or layers whose quantization points disagree, have no GPU path: an
    // error naming why, not a panic.
    let (s, net) = common::trained(ModelKind::Mlp);
    let opts = QuantizeOptions {
        method: MethodKind::Static,
        ..Default::default()
    };
    let q = quantize(&net, &opts, &s.train.features, &Engine::default()).unwrap();
    // An empty batch gives no logits, as on the CPU; a wrong input length is an error.
    let gpu = GpuModel::new(&q).unwrap();
    assert_eq!(
        gpu.run(&[], 0).unwrap(),
        Engine::default().prepare(&q).unwrap().run(&[], 0).unwrap()
    );
    let err = gpu
        .run(&s.test.features[..s.test.dim() + 1], 1)
        .err()
        .unwrap();
    assert!(err.to_string().contains("expected"), "{err}");
    let mut bad = q.clone();
    let second = bad.network.dense_indices()[1];
    if let Some(quantlab_quant::LayerImpl::Static(l)) = &mut bad.layers[second] {
        l.in_q.zero_point += 1;
    }
    let err = GpuModel::new(&bad).err().unwrap();
    assert!(err.to_string().contains("requantizing"), "{err}");
    let err = GpuModel::new(&quantlab_quant::QuantModel::float(net))
        .err()
        .unwrap();
    assert!(err.to_string().contains("static int8"), "{err}");
}

#[test]
fn gpu_int8_gemm_is_bit_identical_to_the_cpu_reference() {
    if !gpu_here("gpu_int8_gemm_is_bit_identical_to_the_cpu_reference") {
        return;
    }
    let mut rng = Rng::new(77);
    let mut shapes = vec![(1, 10, 30), (64, 50, 784), (7, 128, 1568), (3, 17, 5)];
    for _ in 0..40 {
        shapes.push((1 + rng.below(40), 1 + rng.below(90), 1 + rng.below(300)));
    }
    for (case, (m, n, k)) in shapes.into_iter().enumerate() {
        let a: Vec<u8> = (0..m * k).map(|_| rng.below(256) as u8).collect();
        let w = QWeights::new(
            (0..n * k)
                .map(|_| (rng.below(255) as i32 - 127) as i8)
                .collect(),
            n,
            k,
        );
        let offset: Vec<i32> = (0..n)
            .map(|_| rng.below(200_001) as i32 - 100_000)
            .collect();
        let per_channel = case % 2 == 0;
        let mut requant: Vec<Requant> = (0..if per_channel { n } else { 1 })
            .map(|_| Requant::new(10f64.powf(-7.0 + 7.5 * rng.uniform())))
            .collect();
        if case == 3 {
            requant[0] = Requant::new(0.0); // multiplier 0
        }
        let (zo, lo, hi) = (
            rng.below(256) as i32,
            if case % 3 == 0 { 17 } else { 0 },
            255,
        );
        let mut want = vec![0u8; m * n];
        let mut epi = Epilogue::Requant {
            offset: &offset,
            requant: &requant,
            zo,
            lo,
            hi,
            layout: OutLayout::RowMajor,
            out: &mut want,
        };
        let reference = KernelPath::Scalar.ops();
        reference.qgemm(m, &a, k, &reference.pack(&w), &mut epi);
        let got = GpuLayer::new(&w, &offset, &requant)
            .unwrap()
            .run(&a, m, k, (zo, lo, hi))
            .unwrap();
        let bad = got.iter().zip(&want).position(|(g, c)| g != c);
        assert!(
            bad.is_none(),
            "case {case} m={m} n={n} k={k}: first difference at {:?}: gpu {} cpu {}",
            bad,
            got[bad.unwrap()],
            want[bad.unwrap()]
        );
    }
}

#[test]
fn gpu_int8_gemm_refuses_inputs_that_do_not_fit() {
    if !gpu_here("gpu_int8_gemm_refuses_inputs_that_do_not_fit") {
        return;
    }
    let layer = GpuLayer::new(
        &QWeights::new(vec![1; 8], 2, 4),
        &[0, 0],
        &[Requant::new(0.5)],
    )
    .unwrap();
    let err = layer.run(&[1; 7], 2, 4, (0, 0, 255)).err().unwrap();
    assert!(err.to_string().contains("expected 8"), "{err}");
    let err = layer.run(&[1; 18], 2, 9, (0, 0, 255)).err().unwrap();
    assert!(err.to_string().contains("4 inputs"), "{err}");
    assert!(layer.run(&[], 0, 4, (0, 0, 255)).unwrap().is_empty());
}

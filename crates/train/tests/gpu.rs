//! The wgpu backend trains like the CPU one. On a machine without a GPU this runs on a
//! software Vulkan device (Debian `mesa-vulkan-drivers`, installed by `.ci/run`). One test,
//! one device per process: the first wgpu step compiles shaders and is slow.

use burn::tensor::Device;
use quantlab_data::{DatasetName, load};
use quantlab_models::{ModelKind, ModelSpec};
use quantlab_train::{Backend, FitOptions, OptimizerKind, TrainConfig, fit, logits};

/// Largest |gpu - cpu| on a logit after the same few training steps.
const CPU_GPU_TOL: f32 = 1e-3;

#[test]
fn a_few_steps_on_wgpu_agree_with_flex() {
    // Skips only where wgpu finds no adapter (CI has lavapipe, so there it fails).
    if let Err(e) = quantlab_train::gpu() {
        let test = "a_few_steps_on_wgpu_agree_with_flex";
        return quantlab_testkit::missing(test, &quantlab_testkit::Missing::gpu(e));
    }
    let c = TrainConfig {
        dataset: DatasetName::Digits,
        model: ModelSpec {
            hidden: vec![32],
            ..ModelSpec::of(ModelKind::Mlp)
        },
        optimizer: OptimizerKind::Sgd,
        lr: 0.05,
        batch_size: 32,
        train_limit: Some(128),
        test_limit: Some(64),
        ..TrainConfig::default()
    };
    let s = load(DatasetName::Digits, &c.data_options(None)).unwrap();
    let cpu = Device::flex();
    let gpu = Backend::Gpu.device().unwrap();
    let a = fit(&c, &s, &cpu, &FitOptions::default()).unwrap();
    let b = fit(&c, &s, &gpu, &FitOptions::default()).unwrap();
    let idx: Vec<usize> = (0..64).collect();
    let la = logits(&a.model, &s.test, &idx, &cpu).unwrap();
    let lb = logits(&b.model, &s.test, &idx, &gpu).unwrap();
    let worst = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        worst < CPU_GPU_TOL,
        "max |gpu - cpu| logit difference {worst}"
    );
    assert!((a.best.val_loss - b.best.val_loss).abs() < 1e-3);
}

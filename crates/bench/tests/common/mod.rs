//! Shared fixtures: small models trained on the real digits set (seconds on flex).

use burn::tensor::Device;
use quantlab_data::{DatasetName, Splits, load};
use quantlab_models::{ModelKind, ModelSpec};
use quantlab_quant::Network;
use quantlab_train::{FitOptions, TrainConfig, fit};

/// Digits splits and a trained network of `kind`.
pub fn trained(kind: ModelKind) -> (Splits, Network) {
    let cfg = TrainConfig {
        dataset: DatasetName::Digits,
        model: ModelSpec::of(kind),
        epochs: 8,
        batch_size: 32,
        lr: 3e-3,
        ..TrainConfig::default()
    };
    let splits = load(DatasetName::Digits, &cfg.data_options(None)).unwrap();
    let out = fit(&cfg, &splits, &Device::flex(), &FitOptions::default()).unwrap();
    let graph = out.model.to_graph(&splits.train.sample_shape).unwrap();
    (splits, Network::from_graph(&graph).unwrap())
}

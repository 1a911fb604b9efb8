//! Training on the real small datasets (digits, synthetic) on flex: loss goes down for every
//! model, seeds reproduce, checkpoints round-trip and reject damage.

use burn::tensor::Device;
use quantlab_data::{DatasetName, Splits, load};
use quantlab_models::{ModelKind, ModelSpec};
use quantlab_train::{FitOptions, TrainConfig, checkpoint, fit, logits};

fn splits(name: DatasetName, cfg: &TrainConfig) -> Splits {
    load(name, &cfg.data_options(None)).unwrap()
}

fn cfg(dataset: DatasetName, kind: ModelKind, epochs: usize) -> TrainConfig {
    TrainConfig {
        dataset,
        model: ModelSpec::of(kind),
        epochs,
        batch_size: 32,
        train_limit: Some(512),
        ..TrainConfig::default()
    }
}

#[test]
fn a_few_epochs_lower_the_loss_for_every_model() {
    let device = Device::flex();
    for (ds, kind) in [
        (DatasetName::Synthetic, ModelKind::Logreg),
        (DatasetName::Digits, ModelKind::Mlp),
        (DatasetName::Digits, ModelKind::Cnn),
    ] {
        let c = TrainConfig {
            lr: 1e-2,
            ..cfg(ds, kind, 3)
        };
        let s = splits(ds, &c);
        let out = fit(&c, &s, &device, &FitOptions::default()).unwrap();
        let h = &out.history.epochs;
        assert_eq!(h.len(), 3);
        assert!(h[2].train_loss < h[0].train_loss, "{kind} on {ds}: {h:?}");
        assert!(
            h[2].val_loss < h[0].val_loss * 1.05,
            "{kind} on {ds}: {h:?}"
        );
        // Chance is 50% (synthetic) or 10% (digits).
        assert!(
            out.best.val_accuracy > 0.7 && out.test.accuracy > 0.7,
            "{kind} on {ds}: {:?} {:?}",
            out.best,
            out.test
        );
    }
}

/// The best epoch is the one with the lowest validation loss, whatever the test set says;
/// the test split is scored once, on that epoch's model, and recorded beside the
/// validation score that selected it.
#[test]
fn the_best_epoch_is_chosen_on_validation_data_and_the_test_set_is_scored_once() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let c = TrainConfig {
        lr: 3e-2,
        ..cfg(DatasetName::Digits, ModelKind::Mlp, 4)
    };
    let s = splits(DatasetName::Digits, &c);
    let out = fit(
        &c,
        &s,
        &device,
        &FitOptions {
            out: Some(dir.path()),
            ..Default::default()
        },
    )
    .unwrap();
    let by_val = out
        .history
        .epochs
        .iter()
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .unwrap();
    assert_eq!(out.best.epoch, by_val.epoch, "{:?}", out.history);
    let (ck, model) = checkpoint::load(dir.path(), &device).unwrap();
    assert_eq!(ck.meta.best_epoch, by_val.epoch);
    let v = ck.meta.validation.expect("validation score recorded");
    assert_eq!((v.samples, v.loss), (s.val.len(), by_val.val_loss));
    assert_eq!(ck.meta.score.samples, s.test.len());
    // JSON keeps the score to its last digit or so.
    assert_eq!(ck.meta.score.accuracy, out.test.accuracy);
    assert!((ck.meta.score.loss - out.test.loss).abs() < 1e-12);
    // The recorded test score is that of the saved model, on the test split.
    let again = quantlab_train::evaluate(&model, &s.test, &device).unwrap();
    assert!(
        (again.accuracy - out.test.accuracy).abs() < 1e-12,
        "{again:?} vs {:?}",
        out.test
    );
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let device = Device::flex();
    let c = cfg(DatasetName::Digits, ModelKind::Mlp, 1);
    let s = splits(DatasetName::Digits, &c);
    let shape = s.train.sample_shape.clone();
    let g = |c: &TrainConfig| {
        fit(c, &s, &device, &FitOptions::default())
            .unwrap()
            .model
            .to_graph(&shape)
            .unwrap()
    };
    assert_eq!(g(&c), g(&c));
    assert_ne!(
        g(&c),
        g(&TrainConfig {
            seed: 2,
            ..c.clone()
        })
    );
}

#[test]
fn checkpoint_round_trip_gives_identical_logits_and_damage_is_an_error() {
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(DatasetName::Digits, ModelKind::Cnn, 1);
    let s = splits(DatasetName::Digits, &c);
    let out = fit(
        &c,
        &s,
        &device,
        &FitOptions {
            out: Some(dir.path()),
            ..Default::default()
        },
    )
    .unwrap();
    let (ck, loaded) = checkpoint::load(dir.path(), &device).unwrap();
    assert_eq!(ck.config, c);
    assert_eq!(ck.meta.input_shape, vec![1, 8, 8]);
    let idx: Vec<usize> = (0..50).collect();
    assert_eq!(
        logits(&out.model, &s.test, &idx, &device).unwrap(),
        logits(&loaded, &s.test, &idx, &device).unwrap()
    );
    for f in [
        "history.json",
        "history.csv",
        "train.toml",
        "checkpoint.json",
    ] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }

    let model = dir.path().join(checkpoint::MODEL_FILE);
    let good = std::fs::read(&model).unwrap();
    std::fs::write(&model, &good[..good.len() / 2]).unwrap();
    let err = checkpoint::load(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("truncated") && err.contains("model.bpk"),
        "{err}"
    );

    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&model, &bad).unwrap();
    let err = checkpoint::load(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("corrupt"), "{err}");

    std::fs::write(&model, &good).unwrap();
    std::fs::write(dir.path().join(checkpoint::META_FILE), "{ not json").unwrap();
    let err = checkpoint::load(dir.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("checkpoint.json"), "{err}");

    let empty = tempfile::tempdir().unwrap();
    let err = checkpoint::load(empty.path(), &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a quantlab checkpoint"), "{err}");
}

/// Only in builds with burn's ndarray backend (`--features ndarray`), which is opt-in.
#[cfg(feature = "ndarray")]
#[test]
fn ndarray_and_flex_train_alike() {
    #[allow(deprecated)]
    let nd = Device::ndarray();
    let c = TrainConfig {
        optimizer: quantlab_train::OptimizerKind::Sgd,
        lr: 0.05,
        momentum: 0.9,
        ..cfg(DatasetName::Synthetic, ModelKind::Mlp, 1)
    };
    let s = splits(DatasetName::Synthetic, &c);
    let a = fit(&c, &s, &Device::flex(), &FitOptions::default()).unwrap();
    let b = fit(&c, &s, &nd, &FitOptions::default()).unwrap();
    assert!(
        (a.best.val_loss - b.best.val_loss).abs() < 1e-3,
        "{:?} vs {:?}",
        a.best,
        b.best
    );
}

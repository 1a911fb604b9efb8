//! The training loop: one loop for any autodiff device. Cross-entropy, Adam or SGD
//! (optionally with momentum), a seeded shuffle every epoch, validation loss and accuracy
//! after every epoch, and the best epoch (lowest validation loss) kept and, with an output
//! folder, saved. The test set is scored once, on the selected model, after the last epoch:
//! nothing is chosen on it, so the float accuracy every quantized model is compared against
//! is not flattered by selection.

use std::path::Path;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressStyle};
use quantlab_data::Splits;
use quantlab_data::rng::Rng;
use quantlab_models::Classifier;

use crate::checkpoint::{self, CheckpointMeta};
use crate::config::{OptimizerKind, TrainConfig};
use crate::error::{Result, TrainError};
use crate::evaluate::{Score, evaluate};
use crate::history::{EpochStats, History};

/// Steps between reads of the running loss (each read syncs the device).
pub(crate) const LOSS_READ_EVERY: usize = 20;

/// A finished training run.
#[derive(Debug)]
pub struct TrainOutcome {
    /// The best model (evaluation mode, on the inference device).
    pub model: Classifier,
    /// Per-epoch history.
    pub history: History,
    /// Validation figures of the best epoch.
    pub best: EpochStats,
    /// The best epoch's model scored on the test split, once.
    pub test: Score,
    /// Checkpoint metadata, when saved.
    pub meta: Option<CheckpointMeta>,
}

/// Options of one run that are not part of the model's identity.
#[derive(Debug, Clone, Default)]
pub struct FitOptions<'a> {
    /// Save the best checkpoint and history here.
    pub out: Option<&'a Path>,
    /// Show a progress bar.
    pub progress: bool,
    /// Name of the backend, recorded in the checkpoint.
    pub backend: &'a str,
}

/// The optimiser of a run.
pub(crate) fn optimizer(kind: OptimizerKind, momentum: f64) -> ModuleOptimizer {
    match kind {
        OptimizerKind::Adam => AdamConfig::new().init(),
        OptimizerKind::Sgd if momentum > 0.0 => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(momentum)
                    .with_dampening(0.0),
            ))
            .init(),
        OptimizerKind::Sgd => SgdConfig::new().init(),
    }
}

/// Trains `cfg.model` on `splits` on `device` (an inference device; autodiff is added here).
pub fn fit(
    cfg: &TrainConfig,
    splits: &Splits,
    device: &Device,
    opts: &FitOptions,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let train = match cfg.train_limit {
        Some(n) => splits.train.take(n),
        None => splits.train.clone(),
    };
    let limit = |set: &quantlab_data::LabeledSet| match cfg.test_limit {
        Some(n) => set.take(n),
        None => set.clone(),
    };
    let (val, test) = (limit(&splits.val), limit(&splits.test));
    let ad = device.clone().autodiff();
    let mut model = cfg
        .model
        .build(&train.sample_shape, train.num_classes, cfg.seed, &ad)?;
    let mut optim = optimizer(cfg.optimizer, cfg.momentum);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut rng = Rng::new(cfg.seed ^ 0x5eed_5eed);
    let steps = train.len().div_ceil(cfg.batch_size);
    let bar = progress_bar(opts.progress, (steps * cfg.epochs) as u64);

    let mut history = History::default();
    let mut best: Option<(EpochStats, Classifier)> = None;
    for epoch in 1..=cfg.epochs {
        let order = rng.permutation(train.len());
        let start = Instant::now();
        let mut loss_sum = 0.0;
        let mut pending = Vec::new();
        for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
            let batch = train.batch(chunk, &ad);
            let logits = model.forward(batch.images);
            let loss = loss_fn.forward(logits, batch.targets);
            pending.push((loss.clone().detach(), chunk.len()));
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.lr, model, grads);
            if (step + 1) % LOSS_READ_EVERY == 0 || step + 1 == steps {
                let (sum, n) = drain(&mut pending)?;
                loss_sum += sum;
                bar.set_message(format!(
                    "epoch {epoch}/{} loss {:.4}",
                    cfg.epochs,
                    sum / n as f64
                ));
            }
            bar.inc(1);
        }
        let seconds = start.elapsed().as_secs_f64();
        let train_loss = loss_sum / train.len() as f64;
        check_finite("training", train_loss, cfg.lr, epoch)?;
        let eval_model = model.valid();
        let Score { accuracy, loss, .. } = evaluate(&eval_model, &val, device)?;
        let stats = EpochStats {
            epoch,
            train_loss,
            val_loss: loss,
            val_accuracy: accuracy,
            seconds,
        };
        history.epochs.push(stats);
        bar.println(format!(
            "epoch {epoch}: train loss {train_loss:.4}, validation loss {loss:.4}, validation accuracy {:.2}%, {seconds:.1} s",
            accuracy * 100.0
        ));
        if best.as_ref().is_none_or(|(b, _)| loss < b.val_loss) {
            best = Some((stats, eval_model));
        }
    }
    bar.finish_and_clear();
    let (best, model) = best.expect("at least one epoch ran");
    let test_score = evaluate(&model, &test, device)?;
    let meta = match opts.out {
        Some(dir) => {
            let meta = CheckpointMeta {
                quantlab_version: env!("CARGO_PKG_VERSION").to_string(),
                dataset: splits.name,
                model: cfg.model.clone(),
                input_shape: train.sample_shape.clone(),
                classes: train.num_classes,
                normalization: splits.normalization.clone(),
                best_epoch: best.epoch,
                score: test_score,
                validation: Some(Score {
                    accuracy: best.val_accuracy,
                    loss: best.val_loss,
                    samples: val.len(),
                }),
                backend: opts.backend.to_string(),
                model_bytes: 0,
                model_md5: String::new(),
                method: "f32".into(),
            };
            let meta = checkpoint::save(dir, cfg, meta, &model)?;
            history.save(dir)?;
            Some(meta)
        }
        None => None,
    };
    Ok(TrainOutcome {
        model,
        history,
        best,
        test: test_score,
        meta,
    })
}

/// An epoch whose mean training loss is not finite diverged: an error blaming the learning
/// rate (`what` says which loop: `training`, `QAT`).
pub(crate) fn check_finite(what: &str, train_loss: f64, lr: f64, epoch: usize) -> Result<()> {
    if train_loss.is_finite() {
        return Ok(());
    }
    Err(TrainError::Invalid {
        key: "lr",
        value: lr.to_string(),
        reason: format!("{what} diverged (loss {train_loss}) in epoch {epoch}"),
    })
}

/// Reads the queued per-step losses: (sum of loss * batch size, samples).
pub(crate) fn drain(pending: &mut Vec<(burn::tensor::Tensor<1>, usize)>) -> Result<(f64, usize)> {
    let mut sum = 0.0;
    let mut n = 0;
    for (loss, size) in pending.drain(..) {
        let v: f32 = loss
            .try_into_scalar()
            .map_err(|e| TrainError::Backend(format!("{e:?}")))?;
        sum += v as f64 * size as f64;
        n += size;
    }
    Ok((sum, n))
}

pub(crate) fn progress_bar(show: bool, len: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps {elapsed_precise} {msg}")
            .expect("static template"),
    );
    bar
}

//! `quantlab train`: flags or a TOML config (flags win), then train, or reuse the checkpoint
//! already in `--out` when it was trained with the same config.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use quantlab_data::{DatasetName, load};
use quantlab_models::ModelKind;
use quantlab_train::{Backend, FitOptions, OptimizerKind, TrainConfig, checkpoint, evaluate, fit};

/// Arguments of `quantlab train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML training config. Without it, `configs/train/<dataset>-<model>.toml` supplies the
    /// defaults (the tuned settings the bench uses). Flags override either.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Dataset (default mnist, or the --config's).
    #[arg(long, value_enum)]
    dataset: Option<DatasetName>,
    /// Model (default mlp, or the --config's).
    #[arg(long, value_enum)]
    model: Option<ModelKind>,
    /// Epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Optimiser.
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// SGD momentum.
    #[arg(long)]
    momentum: Option<f64>,
    /// Seed of the weights and the shuffling.
    #[arg(long)]
    seed: Option<u64>,
    /// Train on the first N training samples only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on the first N test samples only.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Output folder for the checkpoint, config and history.
    #[arg(long)]
    out: PathBuf,
    /// Backend: cpu (burn's flex), ndarray, or gpu (wgpu).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    /// Folder holding one sub-folder per dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Load the checkpoint in --out (it must exist) instead of training.
    #[arg(long, conflicts_with = "retrain")]
    resume: bool,
    /// Train even if --out already holds a checkpoint.
    #[arg(long)]
    retrain: bool,
    #[command(flatten)]
    mlflow: crate::mlflow_args::MlflowArgs,
}

impl TrainArgs {
    /// The config: `--config`, else the dataset/model preset, then the flags on top.
    /// Says on one line where the defaults came from.
    fn config(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(p) => TrainConfig::from_toml_file(p)?,
            None => {
                let base = TrainConfig::default();
                let ds = self.dataset.unwrap_or(base.dataset);
                let model = self.model.unwrap_or(base.model.kind);
                let (c, path) = TrainConfig::defaults_for(ds, model)?;
                match path {
                    Some(p) => println!("defaults from {} (flags override)", p.display()),
                    None => {
                        println!("no preset configs/train/{ds}-{model}.toml: built-in defaults")
                    }
                }
                c
            }
        };
        if let Some(v) = self.dataset {
            c.dataset = v;
        }
        if let Some(v) = self.model {
            c.model.kind = v;
        }
        if let Some(v) = self.epochs {
            c.epochs = v;
        }
        if let Some(v) = self.batch_size {
            c.batch_size = v;
        }
        if let Some(v) = self.lr {
            c.lr = v;
        }
        if let Some(v) = self.optimizer {
            c.optimizer = v;
        }
        if let Some(v) = self.momentum {
            c.momentum = v;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        if self.train_limit.is_some() {
            c.train_limit = self.train_limit;
        }
        if self.test_limit.is_some() {
            c.test_limit = self.test_limit;
        }
        c.validate()?;
        Ok(c)
    }
}

/// Runs `quantlab train`.
pub fn run(args: TrainArgs) -> Result<()> {
    let cfg = args.config()?;
    if args.device == Backend::Gpu {
        let (_, adapter) = quantlab_train::gpu().map_err(anyhow::Error::msg)?;
        for line in adapter.report_lines() {
            eprintln!("{line}");
        }
    }
    let device = args.device.device()?;
    let has_checkpoint = args.out.join(checkpoint::META_FILE).is_file();
    if args.resume && !has_checkpoint {
        bail!("--resume: no checkpoint in {}", args.out.display());
    }
    if has_checkpoint && !args.retrain {
        let (ck, model) = checkpoint::load(&args.out, &device)?;
        if ck.config != cfg {
            bail!(
                "{} holds a checkpoint trained with a different config ({}); pass --retrain to overwrite it or choose another --out",
                args.out.display(),
                ck.dir.join(checkpoint::CONFIG_FILE).display()
            );
        }
        println!(
            "found checkpoint in {} (epoch {}): not retraining (--retrain to train again)",
            args.out.display(),
            ck.meta.best_epoch
        );
        let splits = load(cfg.dataset, &cfg.data_options(args.data_dir.as_deref()))?;
        let test = cfg
            .test_limit
            .map_or(splits.test.clone(), |n| splits.test.take(n));
        let s = evaluate(&model, &test, &device)?;
        println!(
            "test accuracy {:.2}%, loss {:.4}, {} samples",
            s.accuracy * 100.0,
            s.loss,
            s.samples
        );
        return Ok(());
    }
    let splits = load(cfg.dataset, &cfg.data_options(args.data_dir.as_deref()))
        .with_context(|| format!("loading {}", cfg.dataset))?;
    for w in &splits.warnings {
        eprintln!("warning: {w}");
    }
    println!(
        "training {} on {} ({} train / {} validation / {} test samples) on {} ({}), {} epoch(s), batch {}, {:?} lr {}",
        cfg.model.kind,
        cfg.dataset,
        cfg.train_limit
            .map_or(splits.train.len(), |n| n.min(splits.train.len())),
        cfg.test_limit
            .map_or(splits.val.len(), |n| n.min(splits.val.len())),
        cfg.test_limit
            .map_or(splits.test.len(), |n| n.min(splits.test.len())),
        args.device,
        args.device.burn_name(),
        cfg.epochs,
        cfg.batch_size,
        cfg.optimizer,
        cfg.lr
    );
    let out = fit(
        &cfg,
        &splits,
        &device,
        &FitOptions {
            out: Some(&args.out),
            progress: true,
            backend: args.device.as_str(),
        },
    )?;
    let total: f64 = out.history.epochs.iter().map(|e| e.seconds).sum();
    let (ds, model) = (cfg.dataset.as_str(), cfg.model.kind.as_str());
    crate::mlflow_args::record(
        &args.mlflow,
        quantlab_bench::tracking::TRAIN_EXPERIMENT,
        &format!("{ds}/{model}"),
        (ds, model, args.device.as_str()),
        |run| {
            quantlab_bench::tracking::log_train_config(run, &cfg)?;
            quantlab_bench::tracking::log_history(run, &out.history)?;
            run.set_tag("checkpoint", &args.out.display().to_string())?;
            run.log_artifact(&args.out.join(checkpoint::CONFIG_FILE), None)?;
            Ok(())
        },
    );
    // The first epoch apart: on wgpu it also pays for compiling and autotuning the kernels.
    let per_epoch = match out.history.epochs.as_slice() {
        [first, rest @ ..] if !rest.is_empty() => format!(
            "first epoch {:.1} s, then {:.1} s/epoch",
            first.seconds,
            (total - first.seconds) / rest.len() as f64
        ),
        _ => format!("{total:.1} s/epoch"),
    };
    println!(
        "best epoch {} (lowest validation loss {:.4}, validation accuracy {:.2}%): test accuracy {:.2}%, test loss {:.4}; training time {:.1} s ({per_epoch}); saved to {}",
        out.best.epoch,
        out.best.val_loss,
        out.best.val_accuracy * 100.0,
        out.test.accuracy * 100.0,
        out.test.loss,
        total,
        args.out.display()
    );
    Ok(())
}

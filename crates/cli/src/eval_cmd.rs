//! `quantlab eval`: score a trained checkpoint on a test split, optionally as one JSON line.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use quantlab_data::{DatasetName, load};
use quantlab_train::{Backend, checkpoint, evaluate};

/// Arguments of `quantlab eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint folder written by `quantlab train --out`.
    #[arg(long)]
    model: PathBuf,
    /// Dataset to score on (default: the one it was trained on).
    #[arg(long, value_enum)]
    dataset: Option<DatasetName>,
    /// Print the result as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Backend: cpu (burn's flex), ndarray, or gpu (wgpu).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    /// Folder holding one sub-folder per dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs `quantlab eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let device = args.device.device();
    let (ck, model) = checkpoint::load(&args.model, &device)?;
    let dataset = args.dataset.unwrap_or(ck.meta.dataset);
    let splits = load(dataset, &ck.config.data_options(args.data_dir.as_deref()))?;
    if splits.test.sample_shape != ck.meta.input_shape {
        bail!(
            "{dataset} samples have shape {:?} but the model in {} takes {:?}",
            splits.test.sample_shape,
            args.model.display(),
            ck.meta.input_shape
        );
    }
    let s = evaluate(&model, &splits.test, &device)?;
    println!(
        "{} {} on {dataset} ({}): accuracy {:.2}%, loss {:.4}, {} samples",
        ck.meta.model.kind,
        "f32",
        args.device,
        s.accuracy * 100.0,
        s.loss,
        s.samples
    );
    if args.json {
        let line = serde_json::json!({
            "dataset": dataset.as_str(),
            "model": ck.meta.model.kind.as_str(),
            "method": "f32",
            "device": args.device.as_str(),
            "accuracy": s.accuracy,
            "loss": s.loss,
            "samples": s.samples,
        });
        println!("{line}");
    }
    Ok(())
}

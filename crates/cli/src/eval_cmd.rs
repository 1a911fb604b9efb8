//! `quantlab eval`: score a float checkpoint, a burn-weights folder, or an int8 file on a
//! test split, optionally as one JSON line.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use quantlab_data::{DatasetName, Normalize, load};
use quantlab_quant::{Engine, KernelPath, QuantModel, score};
use quantlab_train::{Backend, Score, checkpoint, evaluate};

/// Arguments of `quantlab eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A checkpoint folder (`quantlab train --out`, or `quantize --method burn-weights`), an
    /// int8 `.safetensors` file (`quantlab quantize --out`), or a float ONNX file (`.onnx`,
    /// run by quantlab's engine; needs --dataset).
    #[arg(long)]
    model: PathBuf,
    /// Dataset to score on (default: the one it was trained on).
    #[arg(long, value_enum)]
    dataset: Option<DatasetName>,
    /// Input normalisation of an ONNX model: `dataset`, `none` or `MEAN,STD`.
    #[arg(long, default_value_t = Normalize::Dataset)]
    normalize: Normalize,
    /// Evaluation inputs as a `.npy` file `(n, ...input shape)`, used as stored (an ONNX
    /// model or an int8 file; instead of the dataset's test split).
    #[arg(long)]
    eval_npy: Option<PathBuf>,
    /// Class labels of `--eval-npy`, integers of shape `(n,)`.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Print the result as one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Backend for burn checkpoints: cpu (flex), ndarray, or gpu (wgpu).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    /// Folder holding one sub-folder per dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

struct Outcome {
    dataset: String,
    model: String,
    method: String,
    device: String,
    score: Score,
}

/// Runs `quantlab eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let npy = crate::source::NpyData::new(None, args.eval_npy.clone(), args.labels.clone())?;
    let o = if crate::source::is_onnx(&args.model) {
        eval_onnx(&args, &npy)?
    } else if let Some((x, y)) = &npy.eval {
        if args.model.is_dir() {
            bail!(
                "--eval-npy scores an ONNX model or an int8 file; a checkpoint is scored on its dataset"
            );
        }
        eval_file_npy(&args, x, y)?
    } else if args.model.is_dir() {
        eval_checkpoint(&args)?
    } else {
        eval_file(&args)?
    };
    println!(
        "{} {} on {} ({}): accuracy {:.2}%, loss {:.4}, {} samples",
        o.model,
        o.method,
        o.dataset,
        o.device,
        o.score.accuracy * 100.0,
        o.score.loss,
        o.score.samples
    );
    if args.json {
        let line = serde_json::json!({
            "dataset": o.dataset.as_str(),
            "model": o.model,
            "method": o.method,
            "device": o.device,
            "accuracy": o.score.accuracy,
            "loss": o.score.loss,
            "samples": o.score.samples,
        });
        println!("{line}");
    }
    Ok(())
}

fn eval_checkpoint(args: &EvalArgs) -> Result<Outcome> {
    let device = args.device.device()?;
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
    let score = evaluate(&model, &splits.test, &device)?;
    Ok(Outcome {
        dataset: dataset.to_string(),
        model: ck.meta.model.kind.to_string(),
        method: ck.meta.method.clone(),
        device: args.device.to_string(),
        score,
    })
}

/// The engine `eval` scores with: one thread, the kernel path `QUANTLAB_KERNEL` asks for.
fn engine() -> Result<Engine> {
    Ok(Engine {
        path: KernelPath::from_env()?,
        threads: 1,
    })
}

fn eval_onnx(args: &EvalArgs, npy: &crate::source::NpyData) -> Result<Outcome> {
    let src = crate::source::open(
        &args.model,
        args.dataset,
        args.normalize,
        npy,
        args.data_dir.as_deref(),
    )?;
    let engine = engine()?;
    let score = score(&engine, &QuantModel::float(src.net), &src.test)?;
    Ok(Outcome {
        dataset: src.data,
        model: src.label,
        method: "f32 (ONNX)".into(),
        device: format!("cpu ({} kernel)", engine.path.as_str()),
        score,
    })
}

/// An int8 file scored on `.npy` inputs and labels, used as stored.
fn eval_file_npy(args: &EvalArgs, x: &std::path::Path, y: &std::path::Path) -> Result<Outcome> {
    let (model, meta) = quantlab_quant::export::load(&args.model)?;
    let test = quantlab_data::npy::labeled_set(x, y, &meta.input_shape, model.network.out_len())?;
    let engine = engine()?;
    let score = score(&engine, &model, &test)?;
    Ok(Outcome {
        dataset: "npy".into(),
        model: meta.provenance["model"].as_str().unwrap_or("-").to_string(),
        method: model.scheme.name(),
        device: format!("cpu ({} kernel)", engine.path.as_str()),
        score,
    })
}

fn eval_file(args: &EvalArgs) -> Result<Outcome> {
    let f = crate::model_file::load_with_data(&args.model, args.dataset, args.data_dir.clone())?;
    let (model, dataset, splits, model_kind) = (f.model, f.dataset, f.splits, f.kind);
    let engine = engine()?;
    let score = score(&engine, &model, &splits.test)?;
    Ok(Outcome {
        dataset: dataset.to_string(),
        model: model_kind.to_string(),
        method: model.scheme.name(),
        device: format!("cpu ({} kernel)", engine.path.as_str()),
        score,
    })
}

//! `quantlab quantize`: a trained checkpoint in, a quantized model out, with the accuracy,
//! size and per-layer report printed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use quantlab_data::{DatasetName, LabeledSet, Normalize, Splits, load};
use quantlab_quant::report::{LayerReport, fit_budget, layer_report};
use quantlab_quant::{
    ActDtype, BitWidths, Engine, Granularity, MethodKind, ObserverKind, QuantModel,
    QuantizeOptions, export, quantize, score,
};
use quantlab_train::qat::{ActRanges, QatConfig, fit_qat};
use quantlab_train::{Backend, Checkpoint, checkpoint, evaluate};

/// Method names as the command line takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Weights rounded to 2^-7 steps, float compute.
    Naive,
    /// Weights and activations int8 with the fixed scale 2^-7, no calibration.
    NaiveFixed,
    /// burn's own weight-only quantization, saved as a burn record (--out is a folder).
    BurnWeights,
    /// Int8 weights, activations quantized per batch.
    Dynamic,
    /// Int8 weights and calibrated activations, integer end to end.
    Static,
    /// Quantization-aware training from the checkpoint (configs/qat.toml), then the same
    /// integer model as static.
    Qat,
}

/// Arguments of `quantlab quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// Checkpoint folder written by `quantlab train`, or a float ONNX file (`.onnx`, e.g.
    /// from `torch.onnx.export`; needs --dataset).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset to calibrate and score an ONNX model on (a checkpoint knows its own).
    #[arg(long, value_enum)]
    dataset: Option<DatasetName>,
    /// Input normalisation an ONNX model expects: `dataset` (the dataset's usual
    /// statistics, as quantlab trains), `none` (raw values in [0, 1]) or `MEAN,STD`.
    #[arg(long, default_value_t = Normalize::Dataset)]
    normalize: Normalize,
    /// Calibration inputs of an ONNX model as a `.npy` file, `(n, ...input shape)`, used as
    /// stored (instead of the dataset's training images).
    #[arg(long)]
    calib_npy: Option<PathBuf>,
    /// Evaluation inputs of an ONNX model as a `.npy` file (instead of the test split).
    #[arg(long)]
    eval_npy: Option<PathBuf>,
    /// Class labels of `--eval-npy`, integers of shape `(n,)`.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Quantization method.
    #[arg(long, value_enum, default_value_t = MethodArg::Static)]
    method: MethodArg,
    /// Activation observer (static).
    #[arg(long, value_enum, default_value_t = ObserverKind::Minmax)]
    observer: ObserverKind,
    /// Weight granularity (static, dynamic).
    #[arg(long, value_enum, default_value_t = Granularity::PerChannel)]
    granularity: Granularity,
    /// Activation storage (static): u8 affine or i8 symmetric.
    #[arg(long, value_enum, default_value_t = ActDtype::U8Affine)]
    act_dtype: ActDtype,
    /// Calibration samples, taken from the training split (never the validation or test split).
    #[arg(long, default_value_t = quantlab_quant::methods::DEFAULT_CALIB)]
    calib: usize,
    /// Weight bit width, 2..=8 (static, qat; dynamic too): symmetric, -(2^(b-1)-1)..=2^(b-1)-1.
    #[arg(long, default_value_t = 8)]
    wbits: u8,
    /// Activation bit width, 2..=8 (static, qat): the points between layers.
    #[arg(long, default_value_t = 8)]
    abits: u8,
    /// Bit width of the network's input and logits, 2..=8 (static, qat).
    #[arg(long, default_value_t = 8)]
    edge_bits: u8,
    /// Accuracy budget in percentage points: keep the most sensitive layers in f32 until the
    /// drop on the validation split (held out from the training data) fits.
    #[arg(long)]
    max_drop: Option<f64>,
    /// Output: a .safetensors file (a folder for burn-weights).
    #[arg(long)]
    out: PathBuf,
    /// Folder holding one sub-folder per dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// QAT settings (default: configs/qat.toml); the flags below override it.
    #[arg(long)]
    qat_config: Option<PathBuf>,
    /// QAT epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// QAT learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// QAT activation ranges: moving averages frozen after an epoch, or learned steps (LSQ).
    #[arg(long, value_enum)]
    act_ranges: Option<ActRanges>,
    /// QAT on the first N training samples only.
    #[arg(long)]
    train_limit: Option<usize>,
    /// QAT backend: cpu (burn's flex), ndarray, or gpu (wgpu).
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    device: Backend,
    #[command(flatten)]
    mlflow: crate::mlflow_args::MlflowArgs,
}

impl QuantizeArgs {
    /// The QAT config: `--qat-config` or the checked-in preset, the flags on top.
    fn qat_config(&self) -> Result<QatConfig> {
        let mut c = match &self.qat_config {
            Some(p) => QatConfig::from_toml_file(p)?,
            None => QatConfig::preset()?,
        };
        if let Some(v) = self.epochs {
            c.epochs = v;
        }
        if let Some(v) = self.lr {
            c.set_lr(v);
        }
        if let Some(v) = self.act_ranges {
            c.act_ranges = v;
        }
        if self.train_limit.is_some() {
            c.train_limit = self.train_limit;
        }
        c.calib = self.calib;
        c.validate()?;
        Ok(c)
    }
}

/// Validation samples used for sensitivities and the accuracy budget: the first ones of
/// the validation split (held out from the training data; calibration draws from the rest
/// of the training data, and nothing is tuned on the test set).
pub const VALIDATION_SAMPLES: usize = 2000;

/// The slice of the validation split the sensitivities and the accuracy budget use.
pub fn validation_slice(val: &LabeledSet) -> LabeledSet {
    val.take(VALIDATION_SAMPLES)
}

/// Dataset of a checkpoint, with its shape checked against the model.
pub fn checkpoint_data(ck: &Checkpoint, data_dir: Option<&Path>) -> Result<Splits> {
    let splits = load(ck.config.dataset, &ck.config.data_options(data_dir))
        .with_context(|| format!("loading {} for {}", ck.config.dataset, ck.dir.display()))?;
    if splits.train.sample_shape != ck.meta.input_shape {
        bail!(
            "{} samples have shape {:?}, the checkpoint expects {:?}",
            ck.config.dataset,
            splits.train.sample_shape,
            ck.meta.input_shape
        );
    }
    Ok(splits)
}

/// Runs `quantlab quantize`.
pub fn run(args: QuantizeArgs) -> Result<()> {
    let npy = crate::source::NpyData::new(
        args.calib_npy.clone(),
        args.eval_npy.clone(),
        args.labels.clone(),
    )?;
    let src = crate::source::open(
        &args.checkpoint,
        args.dataset,
        args.normalize,
        &npy,
        args.data_dir.as_deref(),
    )?;
    if args.method == MethodArg::BurnWeights {
        let (Some((ck, model)), Some(splits)) = (src.checkpoint, src.splits) else {
            bail!(
                "--method burn-weights quantizes a burn checkpoint; {} is an ONNX file",
                args.checkpoint.display()
            );
        };
        let device = burn::tensor::Device::flex();
        return burn_weights_row(&ck, model, &splits, &args.out, &device);
    }
    if src.val.is_none() && args.max_drop.is_some() {
        bail!(
            "--max-drop selects layers on a validation split held out from the data; with .npy data only there is none (give --dataset for it)"
        );
    }
    let method = match args.method {
        MethodArg::Naive => MethodKind::Naive,
        MethodArg::NaiveFixed => MethodKind::NaiveFixed,
        MethodArg::Dynamic => MethodKind::Dynamic,
        MethodArg::Static => MethodKind::Static,
        MethodArg::Qat => MethodKind::Qat,
        MethodArg::BurnWeights => unreachable!("handled above"),
    };
    if args.calib == 0 {
        bail!("--calib must be at least 1");
    }
    if args.max_drop.is_some_and(|b| !(b.is_finite() && b >= 0.0)) {
        bail!("--max-drop must be a non-negative number of percentage points");
    }
    let engine = Engine {
        path: quantlab_quant::KernelPath::from_env()?,
        threads: 1,
    };
    let net = src.net.clone();
    let d = net.in_len();
    if src.calib.0 == 0 {
        bail!("no calibration data: give --dataset or --calib-npy");
    }
    let calib = args.calib.min(src.calib.0);
    let calib_x = &src.calib.1[..calib * d];
    let opts = QuantizeOptions {
        method,
        observer: args.observer,
        granularity: args.granularity,
        act_dtype: args.act_dtype,
        calib,
        bits: BitWidths {
            weights: args.wbits,
            acts: args.abits,
            edges: args.edge_bits,
        }
        .check()?,
    };
    let float = QuantModel::float(net.clone());
    let mut qat_history = None;
    let mut quant = if method == MethodKind::Qat {
        let cfg = args.qat_config()?;
        println!(
            "qat {} from {}: {} epoch(s), batch {}, {:?} lr {}, activation ranges {:?}{} on {}",
            opts.bits.tag(),
            src.origin.display(),
            cfg.epochs,
            cfg.batch_size,
            cfg.optimizer,
            cfg.lr_for(opts.bits),
            cfg.act_ranges,
            if cfg.act_ranges == ActRanges::MovingAverage {
                format!(" (frozen after epoch {})", cfg.freeze_ranges_after)
            } else {
                String::new()
            },
            args.device.burn_name()
        );
        let Some(splits) = src.splits.as_ref().filter(|_| npy.calib.is_none()) else {
            bail!(
                "QAT trains on a labelled dataset's training split: give --dataset (and no --calib-npy)"
            );
        };
        let out = fit_qat(&net, &cfg, opts.bits, splits, &args.device.device()?, true)?;
        let total: f64 = out.history.epochs.iter().map(|e| e.seconds).sum();
        println!(
            "qat: best epoch {} (validation loss {:.4}, accuracy {:.2}%), fake-quantized test accuracy {:.2}%, {total:.1} s training",
            out.best.epoch,
            out.best.val_loss,
            out.best.val_accuracy * 100.0,
            out.test.accuracy * 100.0
        );
        qat_history = Some((cfg, out.history));
        out.model
    } else {
        quantize(&net, &opts, calib_x, &engine)?
    };
    let val = match &src.val {
        Some(v) => validation_slice(v),
        None => {
            println!(
                "  note: with .npy data only there is no validation split; the sensitivities are measured on the evaluation data"
            );
            validation_slice(&src.test)
        }
    };
    let report = layer_report(&engine, &float, &quant, calib_x, Some(&val))?;
    if let Some(budget) = args.max_drop {
        let (m, fb) = fit_budget(&engine, &float, &quant, &report, &val, budget)?;
        println!(
            "accuracy budget {budget} pp on {} validation samples: {} layer(s) back in f32 {:?}, drop {:.2} pp{}",
            val.len(),
            fb.layers.len(),
            fb.layers,
            (fb.float_accuracy - fb.accuracy) * 100.0,
            if fb.met { "" } else { " (budget not met)" }
        );
        quant = m;
    }
    let f_score = score(&engine, &float, &src.test)?;
    let q_score = score(&engine, &quant, &src.test)?;
    let size = export::save(&quant, src.provenance.clone(), &args.out)?;
    let f32_size = export::to_bytes(&float, src.provenance.clone())?.len() as u64;
    println!(
        "{} {} on {}: method {} (kernel {})",
        src.label,
        net.input_shape
            .iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join("x"),
        src.data,
        quant.scheme.name(),
        engine.path.as_str()
    );
    println!(
        "  test accuracy: f32 {:.2}% -> {:.2}% ({:+.2} pp), loss {:.4} -> {:.4}",
        f_score.accuracy * 100.0,
        q_score.accuracy * 100.0,
        (q_score.accuracy - f_score.accuracy) * 100.0,
        f_score.loss,
        q_score.loss
    );
    println!(
        "  file {}: {size} bytes; f32 safetensors {f32_size} bytes ({:.2}x), {} {} bytes ({:.2}x)",
        args.out.display(),
        f32_size as f64 / size as f64,
        src.original.1,
        src.original.0,
        src.original.0 as f64 / size as f64
    );
    print_layers(&report, src.node_names.as_deref());
    let (ds, kind) = (src.data.as_str(), src.label.as_str());
    let name = quant.scheme.name();
    crate::mlflow_args::record(
        &args.mlflow,
        quantlab_bench::tracking::QUANTIZE_EXPERIMENT,
        &format!("{ds}/{kind} {name}"),
        (ds, kind, "quantlab"),
        |run| {
            let act = match quant.scheme.act_dtype {
                Some(quantlab_quant::ActDtype::U8Affine) => "u8-affine",
                Some(quantlab_quant::ActDtype::I8Symmetric) => "i8-symmetric",
                None => "-",
            };
            run.log_params([
                ("method", name.as_str()),
                (
                    "observer",
                    quant.scheme.observer.map_or("-", |o| o.as_str()),
                ),
                (
                    "granularity",
                    quant.scheme.granularity.map_or("-", |g| g.as_str()),
                ),
                ("act_dtype", act),
                ("kernel", engine.path.as_str()),
            ])?;
            run.log_param("calib_size", quant.scheme.calib_samples)?;
            run.log_param("fallback_layers", format!("{:?}", quant.scheme.fallback))?;
            run.log_param("checkpoint", src.origin.display())?;
            if let Some(n) = src.provenance.get("input_normalize") {
                run.log_param("input_normalize", n.as_str().unwrap_or("-"))?;
            }
            for (k, v) in [
                ("f32_accuracy", f_score.accuracy),
                ("accuracy", q_score.accuracy),
                ("loss", q_score.loss),
                (
                    "accuracy_drop_pp",
                    (f_score.accuracy - q_score.accuracy) * 100.0,
                ),
                ("size_bytes", size as f64),
                ("f32_size_bytes", f32_size as f64),
                ("size_ratio", f32_size as f64 / size as f64),
                ("params", net.params() as f64),
            ] {
                run.log_metric(k, v, 0)?;
            }
            quantlab_bench::tracking::log_layers(run, &report)?;
            run.log_param("wbits", quant.scheme.widths.weights)?;
            run.log_param("abits", quant.scheme.widths.acts)?;
            if let Some((cfg, history)) = &qat_history {
                run.log_param("qat_epochs", cfg.epochs)?;
                run.log_param("qat_lr", cfg.lr_for(opts.bits))?;
                run.log_param("qat_act_ranges", format!("{:?}", cfg.act_ranges))?;
                quantlab_bench::tracking::log_history(run, history)?;
            }
            run.log_artifact(&args.out, Some("model"))?;
            Ok(())
        },
    );
    Ok(())
}

/// Prints the per-layer table; `names` (per network node) adds the user's node names of an
/// imported model.
pub fn print_layers(report: &[LayerReport], names: Option<&[String]>) {
    println!(
        "  {:<4} {:<34} {:<13} {:>9} {:>8} {:>9} {:>9} {:>9}{}",
        "node",
        "layer",
        "precision",
        "SQNR dB",
        "cosine",
        "sens. pp",
        "f32 us",
        "int8 us",
        if names.is_some() { "  ONNX node" } else { "" }
    );
    for r in report {
        println!(
            "  {:<4} {:<34} {:<13} {:>9.1} {:>8.5} {:>9} {:>9.1} {:>9.1}{}",
            r.node,
            r.name,
            r.precision,
            r.sqnr_db,
            r.cosine,
            r.sensitivity_pp.map_or("-".into(), |v| format!("{v:.2}")),
            r.f32_us,
            r.int8_us,
            names
                .and_then(|n| n.get(r.node))
                .map_or(String::new(), |n| format!("  {n}"))
        );
    }
}

fn burn_weights_row(
    ck: &Checkpoint,
    model: quantlab_models::Classifier,
    splits: &Splits,
    out: &Path,
    device: &burn::tensor::Device,
) -> Result<()> {
    let before = evaluate(&model, &splits.test, device)?;
    let q = quantlab_bench::burn_weights::quantize_weights(model, device);
    let after = evaluate(&q, &splits.test, device)?;
    let mut meta = ck.meta.clone();
    meta.method = "burn-weights".into();
    meta.score = after;
    let meta = checkpoint::save(out, &ck.config, meta, &q)?;
    println!(
        "{} on {}: burn-weights (burn quantize_weights, MinMax, Q8S per tensor, weights only)",
        ck.meta.model.kind, ck.meta.dataset
    );
    println!(
        "  test accuracy: f32 {:.2}% -> {:.2}% ({:+.2} pp)",
        before.accuracy * 100.0,
        after.accuracy * 100.0,
        (after.accuracy - before.accuracy) * 100.0
    );
    println!(
        "  burn record {}: {} bytes; f32 record {} bytes ({:.2}x)",
        out.join(checkpoint::MODEL_FILE).display(),
        meta.model_bytes,
        ck.meta.model_bytes,
        ck.meta.model_bytes as f64 / meta.model_bytes as f64
    );
    Ok(())
}

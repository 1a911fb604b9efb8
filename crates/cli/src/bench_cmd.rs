//! `quantlab bench`: run the float-vs-int8 matrix, write the reports and plots, print a
//! one-screen summary. `quantlab plots RUN` redraws the plots of a saved run.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use quantlab_bench::{BenchOptions, DeviceKind, Row, plots, write};
use quantlab_data::DatasetName;
use quantlab_models::ModelKind;

/// Devices on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// CPU only.
    Cpu,
    /// GPU (wgpu) float rows, with quantlab's int8 rows on the CPU.
    Gpu,
    /// Both.
    All,
}

/// Arguments of `quantlab bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The matrix.
    #[arg(long, default_value = "configs/bench.toml")]
    config: PathBuf,
    /// Small subsets and one epoch (CI, first contact).
    #[arg(long)]
    quick: bool,
    /// Only `dataset` or `dataset/model`, e.g. `mnist/mlp`.
    #[arg(long)]
    only: Option<String>,
    /// Devices (default: the config's).
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
    /// Retrain even if a cached checkpoint matches.
    #[arg(long)]
    retrain: bool,
    /// Results folder.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Folder holding one sub-folder per dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Instead of the config's models: a float ONNX classifier (imported as `quantize
    /// --checkpoint FILE.onnx` does), measured on --dataset with every method of the config.
    #[arg(long, requires = "dataset", conflicts_with = "only")]
    onnx: Option<PathBuf>,
    /// The dataset an --onnx model takes.
    #[arg(long, value_enum, requires = "onnx")]
    dataset: Option<DatasetName>,
    /// Input normalisation of an --onnx model: `dataset`, `none` or `MEAN,STD`.
    #[arg(long, default_value = "dataset", requires = "onnx")]
    normalize: quantlab_data::Normalize,
    #[command(flatten)]
    mlflow: crate::mlflow_args::MlflowArgs,
}

fn parse_only(s: &str) -> Result<(DatasetName, Option<ModelKind>)> {
    let (ds, model) = match s.split_once('/') {
        Some((d, m)) => (d, Some(m)),
        None => (s, None),
    };
    let ds: DatasetName = ds.parse().with_context(|| format!("--only {s}"))?;
    let model = match model {
        Some(m) => Some(ModelKind::from_str(m, true).map_err(|_| {
            anyhow::anyhow!("--only {s}: unknown model {m:?}; known: logreg, mlp, cnn")
        })?),
        None => None,
    };
    Ok((ds, model))
}

/// Runs `quantlab bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let only = args.only.as_deref().map(parse_only).transpose()?;
    let devices = args.device.map(|d| match d {
        DeviceArg::Cpu => vec![DeviceKind::Cpu],
        DeviceArg::Gpu => vec![DeviceKind::Gpu],
        DeviceArg::All => vec![DeviceKind::Cpu, DeviceKind::Gpu],
    });
    let onnx = match (&args.onnx, args.dataset) {
        (Some(path), Some(ds)) => {
            if !crate::source::is_onnx(path) {
                bail!("--onnx {}: not an .onnx file", path.display());
            }
            let src = crate::source::open(
                path,
                Some(ds),
                args.normalize,
                &crate::source::NpyData::default(),
                args.data_dir.as_deref(),
            )?;
            Some(quantlab_bench::OnnxModel {
                name: src.label.clone(),
                path: path.clone(),
                dataset: ds,
                normalize: args.normalize,
                network: src.net.clone(),
                provenance: src.provenance.clone(),
            })
        }
        _ => None,
    };
    // Each pair's runs are recorded as soon as it is measured and, with a tracking server,
    // sent in the background while the next pair is (hushed while rows are timed).
    let mut tracking =
        crate::bench_tracking::BenchTracking::new(&args.mlflow, &args.config, args.quick);
    let opts = BenchOptions {
        onnx,
        config: args.config.clone(),
        quick: args.quick,
        only,
        devices,
        retrain: args.retrain,
        results_dir: args.results.clone(),
        data_dir: args.data_dir,
        progress: true,
        quiet: tracking.gate(),
    };
    let start = std::time::Instant::now();
    let outcome = quantlab_bench::run_with(&opts, &mut |pair| tracking.pair(&pair));
    let finished = outcome
        .map_err(anyhow::Error::from)
        .and_then(|(dir, results)| {
            if results.rows.is_empty() {
                bail!("no dataset/model pair ran (see the skipped notes above)");
            }
            write::write_all(&dir, &results)?;
            let files = plots::draw_all(&dir, &results)?;
            let latest = write::update_latest(&args.results, &dir)?;
            summary(&results.rows);
            if let Some(n) = quantlab_bench::summary::kernel_note(&results.meta.machine.kernel) {
                println!("{n}");
            }
            println!(
                "\n{} rows in {:.0} s; int8 kernel {}; report {}, {} plot files; {} -> {}",
                results.rows.len(),
                start.elapsed().as_secs_f64(),
                results.meta.machine.kernel,
                dir.join("REPORT.md").display(),
                files.len(),
                latest.display(),
                dir.display()
            );
            anyhow::Ok(dir)
        });
    // Sending went on while the reports and plots were written.
    tracking.end(finished.as_ref().ok().map(|d| d.as_path()));
    finished.map(|_| ())
}

/// One line per dataset/model: float vs the best static int8 row.
fn summary(rows: &[Row]) {
    println!();
    for l in quantlab_bench::summary::table(rows) {
        println!("{l}");
    }
}

/// Runs `quantlab plots RUN`.
pub fn plots_run(dir: PathBuf) -> Result<()> {
    let results = write::read(&dir)?;
    let files = plots::draw_all(&dir, &results)?;
    for f in &files {
        println!("{}", f.display());
    }
    Ok(())
}

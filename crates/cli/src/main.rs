//! The `quantlab` binary: parses the command line and calls the library crates. Errors
//! are printed on one line (`error: what: why`) with a non-zero exit status.

mod bench_cmd;
mod bench_tracking;
mod data_cmd;
mod eval_cmd;
mod export_cmd;
mod inspect_cmd;
mod mlflow_args;
mod model_file;
mod quantize_cmd;
mod source;
mod time_cmd;
mod track_cmd;
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Counts heap bytes so the benchmark can report peak memory during inference.
#[global_allocator]
static ALLOC: quantlab_bench::CountingAlloc = quantlab_bench::CountingAlloc;
use quantlab_data::DatasetName;

/// Train small classifiers, quantize them to real int8, and measure float against int8.
#[derive(Debug, Parser)]
#[command(name = "quantlab", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load and validate datasets; print sizes, shapes, class counts and where they were read.
    Data {
        /// Folder holding one sub-folder per dataset (mnist/, fashion-mnist/, digits/).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Only this dataset (default: every one that is found).
        #[arg(long, value_enum)]
        dataset: Option<DatasetName>,
        /// Also write the dataset's normalised arrays as .npy into this folder (for ONNX
        /// Runtime and other Python tools): the first --npy-train training samples and the
        /// whole test split.
        #[arg(long)]
        npy_out: Option<PathBuf>,
        /// Training samples written by --npy-out (quantlab calibrates on the first ones).
        #[arg(long, default_value_t = 1000)]
        npy_train: usize,
        /// Normalisation of the --npy-out arrays: `dataset` (quantlab's), `none` or
        /// `MEAN,STD` (how an imported model was trained).
        #[arg(long, default_value = "dataset")]
        normalize: quantlab_data::Normalize,
    },
    /// Train a model and save its best checkpoint (lowest validation loss).
    Train(train_cmd::TrainArgs),
    /// Quantize a trained checkpoint (naive, naive-fixed, burn-weights, dynamic, static).
    Quantize(quantize_cmd::QuantizeArgs),
    /// Evaluate a checkpoint folder or an int8 file on a test split.
    Eval(eval_cmd::EvalArgs),
    /// Run the float-vs-int8 benchmark matrix (configs/bench.toml) and write its reports.
    Bench(bench_cmd::BenchArgs),
    /// Redraw the plots of a saved benchmark run (a folder under results/).
    Plots {
        /// The run folder, e.g. results/latest.
        run: PathBuf,
    },
    /// Time a model file on quantlab's engine (batch sizes x thread counts, median and p90).
    Time(time_cmd::TimeArgs),
    /// Export a model file (f32 or static int8) as ONNX (QDQ, or TensorRT's form).
    Export(export_cmd::ExportArgs),
    /// MLflow: send the file store's runs to a tracking server (`track push`).
    Track {
        #[command(subcommand)]
        cmd: track_cmd::TrackCmd,
    },
    /// Print the layers, dtypes, shapes, scales and size of an int8 file, or the graph of
    /// an .onnx file.
    Inspect {
        /// The .safetensors or .onnx file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data {
            data_dir,
            dataset,
            npy_out,
            npy_train,
            normalize,
        } => data_cmd::run(data_dir, dataset, npy_out, npy_train, normalize),
        Command::Train(args) => train_cmd::run(args),
        Command::Quantize(args) => quantize_cmd::run(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Export(args) => export_cmd::run(args),
        Command::Inspect { file } if file.extension().is_some_and(|e| e == "onnx") => {
            export_cmd::inspect(&file)
        }
        Command::Inspect { file } => inspect_cmd::run(file),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Time(args) => time_cmd::run(args),
        Command::Plots { run } => bench_cmd::plots_run(run),
        Command::Track { cmd } => track_cmd::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, `what: why`, leaving out a cause whose text the
/// message before it already says (library errors that print their source, as
/// `path: io error`, would otherwise repeat it).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !line.contains(&c) {
            line.push_str(": ");
            line.push_str(&c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        // A library error that prints its source, as `thiserror`'s `{path}: {source}` does.
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cfg.toml: {}", self.0)
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Wrapped(io)).context("loading the bench config");
        assert_eq!(
            one_line(&e),
            "loading the bench config: cfg.toml: no such file"
        );
    }
}

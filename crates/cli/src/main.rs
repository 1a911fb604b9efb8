//! The `quantlab` binary: parses the command line and calls the library crates. Errors
//! are printed on one line (`error: what: why`) with a non-zero exit status.

mod bench_cmd;
mod data_cmd;
mod eval_cmd;
mod inspect_cmd;
mod model_file;
mod quantize_cmd;
mod time_cmd;
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
    },
    /// Train a model and save its best checkpoint (lowest test loss).
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
    /// Print the layers, dtypes, shapes, scales and size of an int8 file.
    Inspect {
        /// The .safetensors file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Data { data_dir, dataset } => data_cmd::run(data_dir, dataset),
        Command::Train(args) => train_cmd::run(args),
        Command::Quantize(args) => quantize_cmd::run(args),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Inspect { file } => inspect_cmd::run(file),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Time(args) => time_cmd::run(args),
        Command::Plots { run } => bench_cmd::plots_run(run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

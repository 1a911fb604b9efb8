//! The `quantlab` binary: parses the command line and calls the library crates. Errors
//! are printed on one line (`error: what: why`) with a non-zero exit status.

mod data_cmd;
mod eval_cmd;
mod inspect_cmd;
mod quantize_cmd;
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

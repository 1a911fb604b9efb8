//! `cargo xtask`: the project's chores, kept quick to compile (std + anyhow only).
//!
//! - `cargo xtask bench [ARGS]`: the main job, `quantlab bench ARGS` (configs/bench.toml on
//!   the shipped data; `--quick`, `--only mnist/mlp`, `--device cpu|gpu|all`, `--retrain`).
//! - `cargo xtask plots RUN`: redraw the plots of a saved run.
//! - `cargo xtask ci`: what CI runs (`.ci/run`).
//!
//! The `quantlab` binary is built by `cargo test --workspace --no-run`, the README's test
//! build: the same feature set as the tests, so burn is compiled once for both. A plain
//! `cargo run -p quantlab` would resolve features for that package alone and rebuild half
//! the dependency tree.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match task.as_str() {
        "bench" => quantlab(&["bench"], &rest),
        "plots" => quantlab(&["plots"], &rest),
        "ci" => run(Command::new("bash").arg(".ci/run")),
        "" | "help" | "-h" | "--help" => {
            println!("usage: cargo xtask <bench [ARGS] | plots RUN | ci>");
            Ok(())
        }
        other => bail!("unknown task {other:?}; known: bench, plots, ci"),
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace's target directory, from `cargo metadata`.
fn target_dir() -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let key = "\"target_directory\":\"";
    let start = text
        .find(key)
        .context("cargo metadata gave no target_directory")?
        + key.len();
    let end = text[start..]
        .find('"')
        .context("malformed cargo metadata")?
        + start;
    Ok(PathBuf::from(text[start..end].replace("\\\\", "\\")))
}

/// Builds (with the test feature set) and runs the `quantlab` binary.
///
/// The build shows cargo's own progress (crate lines and the progress bar): a silent first
/// build of a quarter of an hour looks like a hang. A warm build prints one `Finished` line.
fn quantlab(sub: &[&str], rest: &[String]) -> Result<()> {
    let exe = target_dir()?
        .join("debug")
        .join(format!("quantlab{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        eprintln!(
            "xtask: first build of quantlab and burn (cargo test --workspace --no-run): about a \
             quarter of an hour on 2 cores; later runs reuse it"
        );
    }
    run(Command::new(cargo()).args(["test", "--workspace", "--no-run"]))?;
    if !exe.is_file() {
        bail!(
            "{} was not built by cargo test --workspace --no-run",
            exe.display()
        );
    }
    run(Command::new(exe).args(sub).args(rest))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

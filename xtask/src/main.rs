//! `cargo xtask`: the project's chores, kept quick to compile (std + anyhow only). Each task
//! shells out to cargo so that everything is built once, in the one shared dev profile.
//!
//! - `cargo xtask bench [ARGS]`: the main job, `quantlab bench ARGS` (configs/bench.toml on
//!   the shipped data; `--quick`, `--only mnist/mlp`, `--device cpu|gpu|all`, `--retrain`).
//! - `cargo xtask plots RUN`: redraw the plots of a saved run.
//! - `cargo xtask ci`: what CI runs (`.ci/run`).

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

/// Runs the `quantlab` binary through cargo with `sub` then `rest` as arguments.
fn quantlab(sub: &[&str], rest: &[String]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--quiet", "--package", "quantlab", "--"])
        .args(sub)
        .args(rest);
    run(&mut cmd)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

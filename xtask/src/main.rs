//! `cargo xtask`: the project's chores, kept quick to compile (std + anyhow only).
//!
//! - `cargo xtask bench [--features F] [ARGS]`: the main job, `quantlab bench ARGS`
//!   (configs/bench.toml on the shipped data; `--quick`, `--only mnist/mlp`,
//!   `--device cpu|gpu|all`, `--retrain`). `--features ndarray` builds the binary with burn's
//!   opt-in ndarray backend (the `x ndarray` column).
//! - `cargo xtask plots RUN`: redraw the plots of a saved run.
//! - `cargo xtask peers [--run DIR] [--rounds R] [--reps K]`: quantlab against ONNX Runtime
//!   on the same weights (`scripts/peers.py` in a venv this task makes from the registry).
//!   `--onnx FILE --dataset NAME [--normalize MEAN,STD]` does the same for a float ONNX
//!   model brought from elsewhere, quantized by quantlab and by ONNX Runtime.
//! - `cargo xtask ci`: what CI runs (`.ci/run`).
//!
//! The `quantlab` binary is built by `cargo build -p quantlab`: the main job builds what it
//! runs and none of the test-only dependencies (tract-onnx, criterion). Test-only
//! dependencies change no feature of what the binary shares with the tests, so the README's
//! test command afterwards reuses burn and everything else already built (checked when the
//! split was made: one fingerprint per burn crate after both builds; see docs/build.md).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Usage of every task, printed by `cargo xtask help` and by `--help` after any task.
const USAGE: &str = "usage: cargo xtask <task> [ARGS]
  bench [--features ndarray] [ARGS]   the main job: quantlab bench ARGS (configs/bench.toml;
                                      --quick, --only mnist/mlp, --device cpu|gpu|all, --retrain)
  plots RUN                           redraw the plots of a saved run
  peers [--run DIR] [--rounds R] [--reps K] [--threads 1,2] [--batches 1,64,256] [--models mlp,cnn]
                                      quantlab against ONNX Runtime on the bench run's MNIST models
  peers --onnx FILE --dataset NAME [--normalize MEAN,STD|none] [same timing options]
                                      the same for a float ONNX model brought from elsewhere
  ci                                  what CI runs (bash .ci/run)";

/// Errors end the task with one `error:` line and its causes, not a backtrace (which
/// `anyhow` prints from `main`'s `Result` whenever `RUST_BACKTRACE` is set).
fn main() -> std::process::ExitCode {
    match xtask() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn xtask() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    // `--help` after a task (bench's own options are quantlab's: it answers for itself).
    if task != "bench" && rest.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    match task.as_str() {
        "bench" | "plots" => {
            // `--features F` (first) is cargo's, for the build; the rest is quantlab's.
            let (features, rest) = match rest.as_slice() {
                [flag, f, tail @ ..] if flag == "--features" => (Some(f.as_str()), tail),
                _ => (None, rest.as_slice()),
            };
            let exe = build_quantlab(features)?;
            run(Command::new(exe).arg(&task).args(rest))
        }
        "peers" => peers(&rest),
        "ci" => run(Command::new("bash").arg(".ci/run")),
        "" | "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task {other:?}; known: bench, plots, peers, ci"),
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

/// Builds the binary (only what it needs), with cargo `features` if given, and returns its
/// path. The build shows cargo's own progress (crate lines and the progress bar): a silent
/// first build of a quarter of an hour looks like a hang. A warm build prints one line.
fn build_quantlab(features: Option<&str>) -> Result<PathBuf> {
    let exe = target_dir()?
        .join("debug")
        .join(format!("quantlab{}", std::env::consts::EXE_SUFFIX));
    if !exe.is_file() {
        eprintln!(
            "xtask: first build of quantlab and burn (cargo build -p quantlab): see docs/build.md \
             for how long it takes on 2 cores; later runs reuse it"
        );
    }
    let mut build = Command::new(cargo());
    build.args(["build", "-p", "quantlab", "--bin", "quantlab"]);
    if let Some(f) = features {
        build.args(["--features", f]);
    }
    run(&mut build)?;
    if !exe.is_file() {
        bail!("{} was not built by cargo build -p quantlab", exe.display());
    }
    Ok(exe)
}

/// A Python with onnxruntime, onnx and numpy: a venv under the target dir, made from the
/// package registry on first use. `None` (after a one-line note) without python3.
fn peers_python() -> Result<Option<PathBuf>> {
    if Command::new("python3").arg("--version").output().is_err() {
        println!("peers: skipped, python3 not found (ONNX Runtime runs from a Python venv)");
        return Ok(None);
    }
    let venv = target_dir()?.join("peers-venv");
    let py = venv.join("bin").join("python");
    let ready = |py: &PathBuf| {
        Command::new(py)
            .args(["-c", "import onnxruntime, onnx, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ready(&py) {
        println!(
            "peers: making {} with onnxruntime, onnx, numpy from the package registry",
            venv.display()
        );
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(&py).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "onnxruntime",
            "onnx",
            "numpy",
        ]))?;
    }
    Ok(Some(py))
}

/// `cargo xtask peers`: exports the bench run's MNIST MLP and CNN (f32 and static
/// per-channel int8) to ONNX and times them against ONNX Runtime in one interleaved run.
fn peers(rest: &[String]) -> Result<()> {
    let mut run_dir = PathBuf::from("results/latest");
    let mut extra: Vec<String> = Vec::new();
    let (mut onnx, mut dataset, mut normalize) = (None, None, None);
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--run" => run_dir = PathBuf::from(it.next().context("--run needs a folder")?),
            "--onnx" => onnx = Some(PathBuf::from(it.next().context("--onnx needs a file")?)),
            "--dataset" => dataset = Some(it.next().context("--dataset needs a name")?.clone()),
            "--normalize" => {
                normalize = Some(it.next().context("--normalize needs MEAN,STD")?.clone())
            }
            "--rounds" | "--reps" | "--threads" | "--batches" | "--models" => {
                extra.push(a.clone());
                extra.push(
                    it.next()
                        .with_context(|| format!("{a} needs a value"))?
                        .clone(),
                );
            }
            other => bail!(
                "peers: unknown option {other:?}; known: --run, --rounds, --reps, --threads, --batches, --models, --onnx, --dataset, --normalize"
            ),
        }
    }
    if onnx.is_none() && (dataset.is_some() || normalize.is_some()) {
        bail!("peers: --dataset and --normalize go with --onnx FILE");
    }
    if let Some(file) = &onnx {
        if !file.is_file() {
            bail!("peers: --onnx {}: no such file", file.display());
        }
        if dataset.is_none() {
            bail!(
                "peers: --onnx needs --dataset NAME (the data its input takes: mnist, fashion-mnist, digits)"
            );
        }
    }
    let exe = build_quantlab(None)?;
    let Some(py) = peers_python()? else {
        return Ok(());
    };
    if let (Some(file), Some(ds)) = (&onnx, &dataset) {
        return peers_onnx(&exe, &py, file, ds, normalize.as_deref(), &extra);
    }
    if !run_dir.join("bench.json").is_file() {
        println!(
            "peers: no bench run in {}; running `quantlab bench --only mnist` first",
            run_dir.display()
        );
        run(Command::new(&exe).args(["bench", "--only", "mnist"]))?;
        run_dir = PathBuf::from("results/latest");
    }
    let run_dir = run_dir
        .canonicalize()
        .with_context(|| format!("{}", run_dir.display()))?;
    let dir = run_dir.join("peers");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    run(Command::new(&exe)
        .args(["data", "--dataset", "mnist", "--npy-out"])
        .arg(&dir))?;
    for m in ["mlp", "cnn"] {
        for (method, tag) in [("f32", "f32"), ("static-minmax-per-channel", "int8")] {
            let src = run_dir
                .join("models")
                .join(format!("mnist-{m}-{method}.safetensors"));
            run(Command::new(&exe)
                .arg("export")
                .arg(&src)
                .arg("--out")
                .arg(dir.join(format!("mnist-{m}-{tag}.onnx")))
                .arg("--force"))?;
        }
    }
    let script = std::env::current_dir()?.join("scripts/peers.py");
    run(Command::new(&py)
        .arg(script)
        .arg("--quantlab")
        .arg(&exe)
        .arg("--run")
        .arg(&run_dir)
        .arg("--dir")
        .arg(&dir)
        .args(&extra))?;
    println!(
        "peers: wrote {} and a section of {}",
        run_dir.join("peers.json").display(),
        run_dir.join("REPORT.md").display()
    );
    Ok(())
}

/// `cargo xtask peers --onnx FILE --dataset D`: quantlab quantizes the user's float file
/// (static, per channel, MinMax, the first 1,000 training images) and exports it; the data
/// goes out as .npy at the file's normalisation; `scripts/peers.py --imported` then times
/// and scores quantlab and ONNX Runtime on them, in results/peers/<file stem>/.
fn peers_onnx(
    exe: &PathBuf,
    py: &PathBuf,
    file: &std::path::Path,
    ds: &str,
    normalize: Option<&str>,
    extra: &[String],
) -> Result<()> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .context("--onnx: the file name is not valid UTF-8")?
        .to_string();
    let dir = PathBuf::from("results/peers").join(&stem);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let norm: Vec<&str> = normalize.map_or(vec![], |n| vec!["--normalize", n]);
    run(Command::new(exe)
        .args(["data", "--dataset", ds, "--npy-out"])
        .arg(&dir)
        .args(&norm))?;
    let f32_copy = dir.join(format!("{stem}-f32.onnx"));
    std::fs::copy(file, &f32_copy)
        .with_context(|| format!("copying {} to {}", file.display(), f32_copy.display()))?;
    let int8 = dir.join(format!("{stem}-int8.safetensors"));
    std::fs::remove_file(&int8).ok();
    run(Command::new(exe)
        .arg("quantize")
        .arg("--checkpoint")
        .arg(&f32_copy)
        .args(["--dataset", ds])
        .args(&norm)
        .arg("--no-mlflow")
        .arg("--out")
        .arg(&int8))?;
    run(Command::new(exe)
        .arg("export")
        .arg(&int8)
        .arg("--out")
        .arg(dir.join(format!("{stem}-int8.onnx")))
        .arg("--force"))?;
    let script = std::env::current_dir()?.join("scripts/peers.py");
    run(Command::new(py)
        .arg(script)
        .arg("--quantlab")
        .arg(exe)
        .arg("--run")
        .arg(&dir)
        .arg("--dir")
        .arg(&dir)
        .args(["--imported", &stem, "--dataset", ds])
        // `=`: a negative mean must not read as an option.
        .args(normalize.map(|n| format!("--normalize={n}")))
        .args(extra))?;
    println!(
        "peers: wrote {} and {}",
        dir.join("peers.json").display(),
        dir.join("REPORT.md").display()
    );
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

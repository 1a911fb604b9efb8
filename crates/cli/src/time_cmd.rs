//! `quantlab time`: latency of one model file on quantlab's engine, at chosen batch sizes
//! and thread counts, on the first test images of its dataset. `cargo xtask peers` calls it
//! between ONNX Runtime's timings, so both engines are measured in one run on the same
//! inputs; `--json` prints every raw sample for the caller to pool.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use quantlab_data::{DatasetName, LabeledSet, Normalize};
use quantlab_quant::report::{StepTime, layer_name, session_step_times};
use quantlab_quant::{Engine, KernelPath, QuantModel};

/// Arguments of `quantlab time`.
#[derive(Debug, Args)]
pub struct TimeArgs {
    /// A model `.safetensors` file (f32 or int8, from `quantize`, `bench` or `export`), or a
    /// float ONNX file (run by quantlab's engine in f32; needs --dataset).
    model: PathBuf,
    /// Batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    batch: Vec<usize>,
    /// Thread counts, comma separated (0 = every core).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// Timed runs per batch and thread count.
    #[arg(long, default_value_t = 50)]
    reps: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Dataset whose test images are the input (default: the one it was trained on).
    #[arg(long, value_enum)]
    dataset: Option<DatasetName>,
    /// Folder holding one sub-folder per dataset.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Input normalisation of an ONNX model: `dataset`, `none` or `MEAN,STD`.
    #[arg(long, default_value_t = Normalize::Dataset)]
    normalize: Normalize,
    /// Print one JSON object (with every sample) instead of a table.
    #[arg(long)]
    json: bool,
    /// Run on the wgpu device with quantlab's GPU int8 kernels (static int8 models only),
    /// host transfers included; `--threads` does not apply.
    #[arg(long, conflicts_with = "threads")]
    gpu: bool,
    /// Also time each step of the model as the engine runs it (a convolution and its fused
    /// pool are one step) at each batch size, on one thread pinned to one core: where the
    /// time goes, with each layer's GMAC/s and its share of this core's measured peak.
    #[arg(long, conflicts_with = "gpu")]
    layers: bool,
}

/// What is timed, on which inputs.
struct Timed {
    model: QuantModel,
    kind: String,
    dataset: String,
    test: LabeledSet,
    /// The ONNX file's node names, by node.
    names: Option<Vec<String>>,
}

/// Runs `quantlab time`.
pub fn run(args: TimeArgs) -> Result<()> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if args.batch.is_empty() || args.batch.contains(&0) {
        bail!("--batch: every batch size must be at least 1");
    }
    let f = if crate::source::is_onnx(&args.model) {
        let src = crate::source::open(
            &args.model,
            args.dataset,
            args.normalize,
            &crate::source::NpyData::default(),
            args.data_dir.as_deref(),
        )?;
        Timed {
            model: QuantModel::float(src.net),
            kind: src.label,
            dataset: src.data,
            test: src.test,
            names: src.node_names,
        }
    } else {
        let f =
            crate::model_file::load_with_data(&args.model, args.dataset, args.data_dir.clone())?;
        Timed {
            model: f.model,
            kind: f.kind,
            dataset: f.dataset.to_string(),
            test: f.splits.test,
            names: None,
        }
    };
    let test = &f.test;
    let path = KernelPath::from_env()?;
    let gpu = if args.gpu {
        let (_, adapter) = quantlab_train::gpu().map_err(anyhow::Error::msg)?;
        for line in adapter.report_lines() {
            eprintln!("{line}");
        }
        Some(quantlab_gpu::GpuModel::new(&f.model)?)
    } else {
        None
    };
    let threads_list = if gpu.is_some() {
        vec![1]
    } else {
        args.threads.clone()
    };
    // The first `batch` test images, repeating the split if it is smaller.
    let inputs = |batch: usize| -> Vec<f32> {
        (0..batch)
            .flat_map(|i| test.sample(i % test.len()).to_vec())
            .collect()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results = Vec::new();
    for &threads in &threads_list {
        let threads = if threads == 0 { cores } else { threads };
        let session = Engine { path, threads }.prepare(&f.model)?;
        let run_once = |x: &[f32], batch: usize| -> Result<Vec<f32>> {
            Ok(match &gpu {
                Some(g) => g.run(x, batch)?,
                None => session.run(x, batch)?,
            })
        };
        for &batch in &args.batch {
            let x = inputs(batch);
            let measure = || -> Result<Vec<f64>> {
                for _ in 0..args.warmup {
                    run_once(&x, batch)?;
                }
                let mut samples = Vec::with_capacity(args.reps);
                for _ in 0..args.reps {
                    let t = Instant::now();
                    let out = run_once(&x, batch)?;
                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                    std::hint::black_box(out);
                }
                Ok(samples)
            };
            // One thread: pinned to one core (no migrations), as the bench does.
            let samples = if threads == 1 && gpu.is_none() {
                quantlab_bench::measure::pinned(measure)?
            } else {
                measure()?
            };
            let (median, p90) = quantlab_bench::measure::median_p90(&mut samples.clone());
            results.push(serde_json::json!({
                "batch": batch,
                "threads": threads,
                "median_us": median,
                "p90_us": p90,
                "samples_us": samples,
            }));
        }
    }
    // Per step: timed on one pinned thread (a session with more splits the batch, and each
    // slice runs every step), so labelled as one thread.
    let mut layers = Vec::new();
    if args.layers {
        let session = Engine { path, threads: 1 }.prepare(&f.model)?;
        for &batch in &args.batch {
            let x = inputs(batch);
            let times = quantlab_bench::measure::pinned(|| {
                session_step_times(&session, &x, batch, args.reps)
            })?;
            layers.push(serde_json::json!({
                "batch": batch,
                "threads": 1,
                "steps": layer_rows(&f, &times, batch),
            }));
        }
    }
    let method = f.model.scheme.name();
    let kernel = if gpu.is_some() {
        "gpu wgsl"
    } else {
        path.as_str()
    };
    if args.json {
        let out = serde_json::json!({
            "model": args.model.display().to_string(),
            "dataset": f.dataset.as_str(),
            "arch": f.kind.as_str(),
            "method": method,
            "kernel": kernel,
            "results": results,
            "layers": args.layers.then_some(&layers),
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "{} {} ({}, {} kernel), {} timed runs each:",
        f.kind, method, f.dataset, kernel, args.reps
    );
    println!(
        "{:>6} {:>8} {:>12} {:>12}",
        "batch", "threads", "median us", "p90 us"
    );
    for r in &results {
        println!(
            "{:>6} {:>8} {:>12.1} {:>12.1}",
            r["batch"],
            r["threads"],
            r["median_us"].as_f64().unwrap_or(f64::NAN),
            r["p90_us"].as_f64().unwrap_or(f64::NAN)
        );
    }
    if args.layers {
        let peak = quantlab_bench::measure::pinned(|| quantlab_linalg::peak::measure(path));
        for l in &layers {
            print_layers(l, peak, f.names.is_some());
        }
    }
    Ok(())
}

/// Each step's line of `--layers`: the nodes it runs (a convolution and its fused pool
/// together; none for the input's preparation), how its layer runs, its multiply-accumulates
/// and its median time.
fn layer_rows(f: &Timed, steps: &[StepTime], batch: usize) -> Vec<serde_json::Value> {
    let model = &f.model;
    steps
        .iter()
        .map(|st| {
            let nodes = st.nodes.clone();
            let dense = nodes.clone().find_map(|i| model.dense(i));
            let macs: usize = nodes
                .clone()
                .filter_map(|i| model.dense(i))
                .map(|(d, _)| d.macs())
                .sum();
            let layer = if nodes.is_empty() {
                "input".to_string()
            } else {
                nodes
                    .clone()
                    .map(|i| layer_name(model, i))
                    .collect::<Vec<_>>()
                    .join(" + ")
            };
            let onnx: Vec<&String> = nodes
                .clone()
                .filter_map(|i| f.names.as_ref().and_then(|n| n.get(i)))
                .collect();
            serde_json::json!({
                "nodes": [nodes.start, nodes.end],
                "layer": layer,
                "onnx_nodes": onnx,
                "precision": dense.map_or("-", |(_, l)| l.as_str()),
                "macs_per_sample": macs,
                "median_us": st.us,
                "gmacs": (macs * batch) as f64 / st.us.max(1e-9) / 1e3,
            })
        })
        .collect()
}

/// The `--layers` table of one batch size; shares of the peak measured on this core (the
/// kernels' inner instructions in a throughput loop, as the bench's report).
fn print_layers(r: &serde_json::Value, peak: quantlab_linalg::Peak, names: bool) {
    let Some(steps) = r["steps"].as_array() else {
        return;
    };
    let total: f64 = steps.iter().filter_map(|l| l["median_us"].as_f64()).sum();
    let gmacs = |p: Option<f64>| p.map_or("-".into(), |g| format!("{g:.1} GMAC/s"));
    println!(
        "\nbatch {}, one thread, each step as the engine runs it (a convolution and its fused \
         pool are one step), {:.1} us in all; peaks measured on this core: f32 {}, int8 {}",
        r["batch"],
        total,
        gmacs(peak.f32_gmacs),
        gmacs(peak.int8_gmacs)
    );
    println!(
        "  {:<6} {:<52} {:<12} {:>6} {:>10} {:>6} {:>7} {:>7}{}",
        "nodes",
        "step",
        "precision",
        "MMAC",
        "median us",
        "share",
        "GMAC/s",
        "% peak",
        if names { "  ONNX nodes" } else { "" }
    );
    for l in steps {
        let us = l["median_us"].as_f64().unwrap_or(0.0);
        let macs = l["macs_per_sample"].as_u64().unwrap_or(0);
        let precision = l["precision"].as_str().unwrap_or("-");
        let rate = l["gmacs"].as_f64().unwrap_or(0.0);
        let of_peak = match precision {
            "f32" => peak.f32_gmacs,
            "int8-static" | "int8-dynamic" => peak.int8_gmacs,
            _ => None,
        };
        let (rate_s, peak_s) = if macs == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            (
                format!("{rate:.1}"),
                of_peak
                    .and_then(|p| quantlab_bench::write::peak_share(rate, p))
                    .unwrap_or_else(|| "-".into()),
            )
        };
        let (a, b) = (
            l["nodes"][0].as_u64().unwrap_or(0),
            l["nodes"][1].as_u64().unwrap_or(0),
        );
        let nodes = match b.saturating_sub(a) {
            0 => "-".to_string(),
            1 => a.to_string(),
            _ => format!("{a}-{}", b - 1),
        };
        let onnx: Vec<&str> = l["onnx_nodes"]
            .as_array()
            .map_or(vec![], |v| v.iter().filter_map(|n| n.as_str()).collect());
        println!(
            "  {:<6} {:<52} {:<12} {:>6.2} {:>10.1} {:>5.0}% {:>7} {:>7}{}",
            nodes,
            l["layer"].as_str().unwrap_or(""),
            precision,
            macs as f64 / 1e6,
            us,
            100.0 * us / total.max(1e-9),
            rate_s,
            peak_s,
            if onnx.is_empty() {
                String::new()
            } else {
                format!("  {}", onnx.join(", "))
            }
        );
    }
}

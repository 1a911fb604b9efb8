//! CubeCL's autotuner bounds its candidates with throughput probes (`MemoryDirectThroughput`,
//! `LaunchOverhead`, `ComputeDirectThroughput` kernels). They belong to the first steps (a
//! new shape is tuned once, then cached); on an H100 they were seen in every training step
//! (issue 11). This test trains on wgpu with CubeCL's profile log on and checks that the
//! steady state launches none and tunes nothing: with three epochs of identical shapes,
//! epochs two and three must hold no probe and no autotune (the log's `Fastest result`
//! line, one per tuned key). On a machine without a GPU it
//! runs on lavapipe (`.ci/run` installs it); without any wgpu device it says so and skips,
//! except under CI.

use std::path::Path;
use std::process::Command;

/// Kernels CubeCL launches to measure the device, not to compute.
const PROBES: [&str; 4] = [
    "MemoryDirectThroughput",
    "LaunchOverhead",
    "ComputeDirectThroughput",
    "PrimeBuffer",
];

/// Kernel names in launch order from a profile log: lines `| <duration> | <name>`, where a
/// name may itself hold `|` (summary tables start with a name, not a duration).
fn launches(log: &str) -> Vec<&str> {
    log.lines()
        .filter_map(|l| {
            let (dur, name) = l.strip_prefix('|')?.split_once('|')?;
            let dur = dur.trim();
            let timed = dur.ends_with('s') && dur.starts_with(|c: char| c.is_ascii_digit());
            timed.then(|| name.trim())
        })
        .collect()
}

#[test]
fn no_throughput_probe_after_the_first_epoch_on_wgpu() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("cubecl.log");
    let out = Command::new(env!("CARGO_BIN_EXE_quantlab"))
        .args([
            "train",
            "--dataset",
            "digits",
            "--model",
            "mlp",
            "--epochs",
            "3",
        ])
        .args([
            "--batch-size",
            "32",
            "--train-limit",
            "256",
            "--test-limit",
            "64",
        ])
        .args(["--device", "gpu", "--no-mlflow", "--out"])
        .arg(tmp.path().join("run"))
        .env("CUBECL_DEBUG_LOG", &log)
        .env("CUBECL_DEBUG_OPTION", "profile")
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("the quantlab binary runs");
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() && text.contains("no wgpu device") {
        let why = quantlab_testkit::Missing::gpu(text.trim());
        return quantlab_testkit::missing("gpu_probes", &why);
    }
    assert!(out.status.success(), "training on wgpu failed: {text}");
    let log = std::fs::read_to_string(&log).expect("CubeCL wrote its profile log");
    let per_step = probes_per_step(&launches(&log));
    eprintln!("probe launches per training step (step 0 = before the first): {per_step:?}");
    let tunes = tunes_per_step(&log);
    eprintln!("autotuned keys per training step: {tunes:?}");
    assert_eq!(tunes.len(), per_step.len());
    assert!(
        tunes[0] > 0,
        "the log records autotuning (its format changed?)"
    );
    let late_tunes: usize = tunes[10..].iter().sum();
    assert_eq!(late_tunes, 0, "autotuning in steady state: {tunes:?}");
    // 256 samples at batch 32: 8 steps an epoch, 24 in all; burn's cross-entropy gathers
    // once per step, the marker this count relies on.
    assert_eq!(
        per_step.len(),
        25,
        "expected 24 step markers (GatherKernel) in the log"
    );
    // Epochs 2 and 3 (steps 10..) repeat epoch 1's shapes; the first evaluation runs in
    // step 8's segment and the first step of epoch 2 may still tune the evaluation's tail.
    let late: usize = per_step[10..].iter().sum();
    assert_eq!(late, 0, "probes in steady state: {per_step:?}");
}

/// Keys autotuned (`Fastest result ...` lines of the autotune log, which `CUBECL_DEBUG_LOG`
/// writes into the same file) before the first `GatherKernel` launch, then between
/// consecutive ones.
fn tunes_per_step(log: &str) -> Vec<usize> {
    let mut counts = vec![0];
    for line in log.lines() {
        if line.starts_with("Fastest result") {
            *counts.last_mut().expect("starts non-empty") += 1;
        } else if launches(line)
            .first()
            .is_some_and(|n| n.starts_with("GatherKernel"))
        {
            counts.push(0);
        }
    }
    counts
}

/// Probe launches before the first `GatherKernel` launch, then between consecutive ones.
fn probes_per_step(seq: &[&str]) -> Vec<usize> {
    let mut counts = vec![0];
    for name in seq {
        if name.starts_with("GatherKernel") {
            counts.push(0);
        } else if PROBES.iter().any(|p| name.starts_with(p)) {
            *counts.last_mut().expect("starts non-empty") += 1;
        }
    }
    counts
}

#[test]
fn launch_lines_are_parsed_and_tables_are_not() {
    let log = "| 44.716µs   | LaunchOverhead_a577d7f7\n\
               | Name | Duration | Num Computed | Ratio |\n\
               | LaunchOverhead_a577d7f7 | 94.4ms | 1563 | 1 % |\n\
               | 2.1ms | MatmulEntry | TensorArgs_dd29065e\n";
    let seq = launches(log);
    assert_eq!(
        seq,
        [
            "LaunchOverhead_a577d7f7",
            "MatmulEntry | TensorArgs_dd29065e"
        ]
    );
    let steps = [
        "LaunchOverhead_1",
        "GatherKernel_2",
        "MatmulEntry",
        "GatherKernel_2",
    ];
    assert_eq!(probes_per_step(&steps), [1, 0, 0]);
    let log = "Fastest result a\n| 1.0ms | GatherKernel_1\nFastest result b\nFastest result c\n";
    assert_eq!(tunes_per_step(log), [1, 2]);
}

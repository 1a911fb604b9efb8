//! Writing a run: `bench.json` (the contract), `bench.csv`, `REPORT.md`, and `results/latest`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{BenchError, Result, io};
use crate::row::Row;
use crate::run::Results;
use crate::sweep::{SweepPoint, SweepSummary, summarize};

/// Writes `bench.json`, `bench.csv` and `REPORT.md` into `dir`.
pub fn write_all(dir: &Path, r: &Results) -> Result<()> {
    let p = dir.join("bench.json");
    std::fs::write(
        &p,
        serde_json::to_string_pretty(r).expect("results serialise"),
    )
    .map_err(io(&p))?;
    let p = dir.join("bench.csv");
    std::fs::write(&p, csv(&r.rows)).map_err(io(&p))?;
    let p = dir.join("REPORT.md");
    std::fs::write(&p, markdown(r)).map_err(io(&p))?;
    Ok(())
}

/// Reads a saved run's `bench.json`.
pub fn read(dir: &Path) -> Result<Results> {
    let p = dir.join("bench.json");
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    serde_json::from_str(&text).map_err(|e| BenchError::Results {
        path: p,
        message: e.to_string(),
    })
}

/// Points `results/latest` at `dir` (a relative symlink).
pub fn update_latest(results_dir: &Path, dir: &Path) -> Result<PathBuf> {
    let link = results_dir.join("latest");
    let _ = std::fs::remove_file(&link);
    let target = dir
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.to_path_buf());
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &link).map_err(io(&link))?;
    #[cfg(not(unix))]
    std::fs::write(&link, target.display().to_string()).map_err(io(&link))?;
    Ok(link)
}

const CSV_COLUMNS: &str = "dataset,model,method,granularity,device,backend,kernel,threads,supported,accuracy,loss,samples,params,size_bytes,latency_b1_us,latency_b1_p90_us,latency_b64_us,latency_b64_p90_us,throughput_sps,peak_mem_bytes,accuracy_drop_pp,size_ratio,speedup_b64,speedup_b1,speedup_b64_vs_burn_flex,speedup_b64_vs_burn_ndarray,latency_b4096_us,speedup_b4096,latency_b256_us,throughput_b256_sps,note";

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.4}"))
}

/// The rows as CSV.
pub fn csv(rows: &[Row]) -> String {
    let mut s = format!("{CSV_COLUMNS}\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{:.6},{:.6},{},{},{},{:.2},{:.2},{:.2},{:.2},{:.1},{},{},{},{},{},{},{},{},{},{:.2},{:.1},\"{}\"",
            r.dataset,
            r.model,
            r.method,
            r.granularity,
            r.device,
            r.backend,
            r.kernel,
            r.threads,
            r.supported,
            r.accuracy,
            r.loss,
            r.samples,
            r.params,
            r.size_bytes,
            r.latency_b1_us,
            r.latency_b1_p90_us,
            r.latency_b64_us,
            r.latency_b64_p90_us,
            r.throughput_sps,
            r.peak_mem_bytes,
            opt(r.accuracy_drop_pp),
            opt(r.size_ratio),
            opt(r.speedup_b64),
            opt(r.speedup_b1),
            opt(r.speedup_b64_vs_burn_flex),
            opt(r.speedup_b64_vs_burn_ndarray),
            opt(r.latency_b4096_us),
            opt(r.speedup_b4096),
            r.latency_b256_us,
            r.throughput_b256_sps,
            r.note.replace('"', "'")
        );
    }
    s
}

/// A layer's rate `g` and its share of `peak` (GMAC/s), as [`peak_share`] writes it.
fn share(g: f64, peak: f64) -> String {
    match peak_share(g, peak) {
        Some(pct) => format!("{g:.1} ({pct})"),
        None => format!("{g:.1}"),
    }
}

/// A rate's share of the measured `peak`, never above 100%: a rate at or over the peak (a
/// layer timed in a faster moment of a shared machine than the peak loop) reads `100%*`.
/// `None` without a peak.
pub fn peak_share(rate: f64, peak: f64) -> Option<String> {
    if !(peak > 0.0 && rate.is_finite()) {
        return None;
    }
    let pct = 100.0 * rate / peak;
    Some(if pct >= 100.0 {
        "100%*".into()
    } else {
        format!("{pct:.0}%")
    })
}

/// A row's batch-64 speed-up with its min-max over the timing rounds, marked `~` where
/// that spread contains 1.0 (not significant).
fn speedup_cell(r: &Row) -> String {
    let mark = if r.speedup_b64_uncertain() { " ~" } else { "" };
    match (r.speedup_b64_min, r.speedup_b64_max) {
        (Some(lo), Some(hi)) => format!("{} [{:.2}-{:.2}]{mark}", times(r.speedup_b64), lo, hi),
        _ => times(r.speedup_b64),
    }
}

fn times(v: Option<f64>) -> String {
    // Two decimals, or four where that would print a slow-down as 0.00x.
    v.map_or("-".into(), |v| {
        if v >= 0.1 {
            format!("{v:.2}x")
        } else {
            format!("{v:.4}x")
        }
    })
}

/// The Markdown report: machine, then per dataset/model a float-vs-quantized table.
pub fn markdown(r: &Results) -> String {
    let m = &r.meta;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# quantlab benchmark, {}{}\n",
        m.date,
        if m.quick { " (--quick)" } else { "" }
    );
    let _ = writeln!(
        s,
        "- machine: {} ({} CPUs), features: {}",
        m.machine.cpu,
        m.machine.cpus,
        m.machine.cpu_features.join(", ")
    );
    let _ = writeln!(
        s,
        "- int8 GEMM path: **{}**; devices: {:?}",
        m.machine.kernel, m.devices
    );
    for n in &m.notes {
        let _ = writeln!(s, "- {n}");
    }
    for n in &m.skipped {
        let _ = writeln!(s, "- skipped: {n}");
    }
    let mut pairs: Vec<(String, String)> = r
        .rows
        .iter()
        .map(|x| (x.dataset.clone(), x.model.clone()))
        .collect();
    pairs.dedup();
    for (ds, model) in pairs {
        let rows: Vec<&Row> = r
            .rows
            .iter()
            .filter(|x| x.dataset == ds && x.model == model)
            .collect();
        let _ = writeln!(s, "\n## {ds} / {model}\n");
        let _ = writeln!(
            s,
            "| method | backend | threads | device | accuracy | drop pp | size B | size ratio | b1 us | b64 us (p90) | b256 samples/s | speed-up b64 [min-max over rounds] | vs burn flex | vs burn ndarray | peak heap B | note |"
        );
        let _ = writeln!(
            s,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for x in &rows {
            if !x.supported {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | - | - | - | - | - | - | - | - | - | - | - | {} |",
                    x.method, x.backend, x.threads, x.device, x.note
                );
                continue;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2}% | {} | {} | {} | {:.1} | {:.1} ({:.1}) | {:.0} | {} | {} | {} | {} | {} |",
                x.method,
                x.backend,
                x.threads,
                x.device,
                x.accuracy * 100.0,
                x.accuracy_drop_pp
                    .map_or("-".into(), |v| format!("{v:+.2}")),
                x.size_bytes,
                times(x.size_ratio),
                x.latency_b1_us,
                x.latency_b64_us,
                x.latency_b64_p90_us,
                x.throughput_b256_sps,
                speedup_cell(x),
                times(x.speedup_b64_vs_burn_flex),
                times(x.speedup_b64_vs_burn_ndarray),
                x.peak_mem_bytes,
                x.note
            );
        }
        s.push_str(&scaling_markdown(&rows));
        s.push_str(&gpu_markdown(&rows));
        // Headline (one thread): float vs the static int8 row chosen on the validation split.
        let f = rows.iter().find(|x| x.is_reference() && x.threads == 1);
        let q = crate::row::headline(rows.iter().copied());
        if let (Some(f), Some(q)) = (f, q) {
            let _ = writeln!(
                s,
                "\n| metric | float | quantized ({}) | change |\n|---|---|---|---|",
                q.method
            );
            let _ = writeln!(
                s,
                "| accuracy | {:.2}% | {:.2}% | {:+.2} pp |",
                f.accuracy * 100.0,
                q.accuracy * 100.0,
                (q.accuracy - f.accuracy) * 100.0
            );
            let _ = writeln!(
                s,
                "| file size | {} B | {} B | {} smaller |",
                f.size_bytes,
                q.size_bytes,
                times(q.size_ratio)
            );
            let _ = writeln!(
                s,
                "| latency b1 | {:.1} us | {:.1} us | {} faster |",
                f.latency_b1_us,
                q.latency_b1_us,
                times(q.speedup_b1)
            );
            let _ = writeln!(
                s,
                "| latency b64 | {:.1} us | {:.1} us | {} faster |",
                f.latency_b64_us,
                q.latency_b64_us,
                speedup_cell(q)
            );
            let _ = writeln!(
                s,
                "| peak heap b64 | {} B | {} B | |",
                f.peak_mem_bytes, q.peak_mem_bytes
            );
            if !q.layers.is_empty() {
                let mc = &m.machine;
                let (f32_peak, int8_peak) = mc.peaks_gmacs();
                let source = |measured: f64| {
                    if measured > 0.0 {
                        "measured"
                    } else {
                        "nominal"
                    }
                };
                let _ = writeln!(
                    s,
                    "\nPer layer ({}), error and speed at batch 64, one thread, each layer as the engine runs it (a convolution's time includes the max pool fused after it); GMAC/s and the share of one core's peak: f32 {:.1} GMAC/s ({}), int8 {:.1} GMAC/s ({}); measured peaks come from the kernels' inner instructions in a throughput loop on this core, nominal ones from the clock ({:.2} GHz) and the instruction set. A share at 100% marked `*` ran at or above the measured peak (timing noise):\n\n| node | layer | SQNR dB | cosine | MMAC | f32 us | f32 GMAC/s (% peak) | int8 us | int8 GMAC/s (% peak) |\n|---|---|---|---|---|---|---|---|---|",
                    q.method,
                    f32_peak,
                    source(mc.f32_peak_gmacs),
                    int8_peak,
                    source(mc.int8_peak_gmacs),
                    mc.clock_ghz
                );
                let rate = |macs: usize, us: f64, peak: f64| {
                    let g = (macs * quantlab_quant::report::TIMING_BATCH) as f64 / us / 1e3;
                    share(g, peak)
                };
                for l in &q.layers {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {:.1} | {:.5} | {:.2} | {:.1} | {} | {:.1} | {} |",
                        l.node,
                        l.name,
                        l.sqnr_db,
                        l.cosine,
                        l.macs as f64 / 1e6,
                        l.f32_us,
                        rate(l.macs, l.f32_us, f32_peak),
                        l.int8_us,
                        rate(l.macs, l.int8_us, int8_peak)
                    );
                }
            }
        }
    }
    s.push_str(&crate::bitwidth::markdown(&r.bit_sweep, &r.rows));
    s.push_str(&sweep_markdown(&r.calib_sweep));
    s
}

/// Thread scaling of quantlab's rows at batch 64: the all-cores throughput over the
/// one-thread throughput of the same method (empty when only one thread was measured).
fn scaling_markdown(rows: &[&Row]) -> String {
    let mut s = String::new();
    for one in rows
        .iter()
        .filter(|r| r.backend == "quantlab" && r.threads == 1)
    {
        let Some(all) = rows.iter().find(|r| {
            r.backend == one.backend && r.method == one.method && r.threads > 1 && r.supported
        }) else {
            continue;
        };
        if s.is_empty() {
            s.push_str("\nThread scaling at batch 64 (quantlab's engine splits the batch across threads):\n\n| method | 1 thread us | threads | all threads us | scaling |\n|---|---|---|---|---|\n");
        }
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {:.1} | {} |",
            one.method,
            one.latency_b64_us,
            all.threads,
            all.latency_b64_us,
            times((all.latency_b64_us > 0.0).then(|| one.latency_b64_us / all.latency_b64_us))
        );
    }
    s
}

/// The GPU section of one dataset/model: every GPU row at batch 1, 64 and 4096, each int8
/// row against the GPU's float (burn on wgpu) and against the same method's CPU int8 row
/// (quantlab's engine, one thread).
fn gpu_markdown(rows: &[&Row]) -> String {
    let gpu: Vec<&&Row> = rows
        .iter()
        .filter(|r| r.device == "gpu" && r.supported)
        .collect();
    if gpu.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "
On the GPU (host transfers included in every figure; batch 4096 is not timed on a CPU emulator):

| method | backend | b1 us | b64 us | b4096 us | vs wgpu f32 b1 / b64 / b4096 | vs CPU int8 b1 / b64 |
|---|---|---|---|---|---|---|
",
    );
    let us = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    for r in gpu {
        let cpu = rows.iter().find(|c| {
            c.backend == "quantlab" && c.threads == 1 && c.method == r.method && c.supported
        });
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        let vs_cpu = match cpu {
            Some(c) if r.backend == "quantlab-gpu" => format!(
                "{} / {}",
                times(ratio(c.latency_b1_us, r.latency_b1_us)),
                times(ratio(c.latency_b64_us, r.latency_b64_us))
            ),
            _ => "-".into(),
        };
        let vs_gpu = if r.backend == "quantlab-gpu" {
            format!(
                "{} / {} / {}",
                times(r.speedup_b1),
                times(r.speedup_b64),
                times(r.speedup_b4096)
            )
        } else {
            "-".into()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {} | {} | {} |",
            r.method,
            r.backend,
            r.latency_b1_us,
            r.latency_b64_us,
            us(r.latency_b4096_us),
            vs_gpu,
            vs_cpu
        );
    }
    s
}

/// The calibration sweep's section: per model, accuracy drop and weakest-layer SQNR by
/// calibration size and observer, with the spread over seeds.
pub fn sweep_markdown(points: &[SweepPoint]) -> String {
    let summary = summarize(points);
    let mut s = String::new();
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for x in &summary {
        if !pairs.contains(&(&x.dataset, &x.model)) {
            pairs.push((&x.dataset, &x.model));
        }
    }
    for (ds, model) in pairs {
        let rows: Vec<_> = summary
            .iter()
            .filter(|x| x.dataset == ds && x.model == model)
            .collect();
        let mut observers: Vec<&str> = Vec::new();
        let mut sizes: Vec<usize> = Vec::new();
        for x in &rows {
            if !observers.contains(&x.observer.as_str()) {
                observers.push(&x.observer);
            }
            if !sizes.contains(&x.size) {
                sizes.push(x.size);
            }
        }
        let seeds = rows.first().map_or(0, |x| x.seeds);
        let gran = points
            .iter()
            .find(|p| p.dataset == ds && p.model == model)
            .map_or("", |p| p.granularity.as_str());
        let _ = writeln!(
            s,
            "\n## Calibration sweep: {ds} / {model}\n\nStatic int8 ({gran} weights, u8 activations) calibrated on N training images drawn by {seeds} seeds; one calibration per draw serves every observer. Accuracy on the test split; SQNR on the first test images.\n"
        );
        let header = format!(
            "| images | {} |\n|---|{}",
            observers.join(" | "),
            "---|".repeat(observers.len())
        );
        // One table: a row per size, a column per observer, cells from `f`.
        let table = |s: &mut String, title: &str, f: &dyn Fn(&SweepSummary) -> String| {
            let _ = writeln!(s, "{title}\n\n{header}");
            for &n in &sizes {
                let cells: Vec<String> = observers
                    .iter()
                    .map(|o| {
                        rows.iter()
                            .find(|x| x.size == n && x.observer == *o)
                            .map_or("-".into(), |x| f(x))
                    })
                    .collect();
                let _ = writeln!(s, "| {n} | {} |", cells.join(" | "));
            }
        };
        table(
            &mut s,
            "Accuracy drop, pp: mean over seeds (best .. worst seed)",
            &|x| {
                format!(
                    "{:+.2} ({:+.2} .. {:+.2})",
                    x.drop_mean_pp, x.drop_min_pp, x.drop_max_pp
                )
            },
        );
        table(
            &mut s,
            "\nWeakest layer's SQNR, dB: mean over seeds (largest seed-to-seed spread of any layer)",
            &|x| {
                format!(
                    "{:.1} (±{:.1})",
                    x.worst_layer_sqnr_db,
                    x.sqnr_spread_db / 2.0
                )
            },
        );
        if let Some(&small) = sizes.first() {
            let stable = rows
                .iter()
                .filter(|x| x.size == small)
                .min_by(|a, b| a.drop_max_pp.total_cmp(&b.drop_max_pp));
            if let Some(b) = stable {
                let _ = writeln!(
                    s,
                    "\nWith {small} images the steadiest observer is **{}** (worst seed {:+.2} pp).",
                    b.observer, b.drop_max_pp
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_the_peak_never_reads_above_100_percent() {
        assert_eq!(share(25.0, 50.0), "25.0 (50%)");
        assert_eq!(share(50.0, 50.0), "50.0 (100%*)");
        assert_eq!(share(61.0, 50.0), "61.0 (100%*)");
        assert_eq!(share(3.0, 0.0), "3.0");
        // The `time --layers` column: the same rule without the rate.
        assert_eq!(peak_share(46.5, 50.0).as_deref(), Some("93%"));
        assert_eq!(peak_share(52.0, 50.0).as_deref(), Some("100%*"));
        assert_eq!(peak_share(1.0, f64::NAN), None);
    }
}

//! Timing the rows of one model interleaved, in rounds.
//!
//! Timed one after another, a burst of a neighbour's load on a shared machine lands on
//! whichever row is running, and six rows running identical kernels were seen to spread
//! from 915 to 1,579 us. Here every row of a dataset/model pair keeps what it runs (a
//! [`Runner`]) until all are built; then each round times every row once, in an order that
//! rotates by one each round. A row's latency is the median of its round medians, and a
//! speed-up is taken round by round (`row::derive_ratios`): a burst slows every row of its
//! round alike and moves no median, and the rounds' min-max shows how far to trust it.
//!
//! A round of twenty rows lasts about a second, and this project's machines change speed
//! within one (a float row at 171, 340 and 264 us in three rounds while an int8 row held
//! 180 us, so two runs read its speed-up as 0.67x and 1.47x). So each row's batch-64
//! timing is preceded by one of its reference (the float row it is compared with, timed
//! the same way), and the per-round speed-up is taken against that pair.

use burn::tensor::Device;
use quantlab_models::Classifier;
use quantlab_quant::Session;

use crate::error::Result;
use crate::measure::{Latency, Timing, latency, pinned};
use crate::row::{Row, is_reference_for, median_sorted, reference_backend};

/// What a row's latency is measured on.
pub(crate) enum Runner {
    /// quantlab's engine; `pinned`: one thread, pinned to one core.
    Engine { session: Box<Session>, pinned: bool },
    /// burn's forward pass of a float (or weight-quantized) model.
    Burn {
        model: Box<Classifier>,
        device: Device,
    },
    /// quantlab's int8 kernels on the GPU.
    Gpu(quantlab_gpu::GpuModel),
}

impl Runner {
    /// One inference of `batch` samples from `x`, finished (results on the host).
    pub(crate) fn run(&self, x: &[f32], batch: usize) -> Result<()> {
        match self {
            Runner::Engine { session, .. } => {
                session.run(x, batch)?;
            }
            Runner::Burn { model, device } => crate::run::burn_forward(model, x, batch, device)?,
            Runner::Gpu(g) => {
                g.run(x, batch)?;
            }
        }
        Ok(())
    }

    fn pinned(&self) -> bool {
        matches!(self, Runner::Engine { pinned: true, .. })
    }
}

/// Times `runners` (each with the index of its row in `rows`) at `batches` on `inputs`, in
/// `rounds` rounds sharing `t`'s repetitions and budget, and fills each row's latencies,
/// their per-round medians and its throughput.
pub(crate) fn time_in_rounds(
    rows: &mut [Row],
    runners: &[(usize, Runner)],
    inputs: &[Vec<f32>],
    batches: [usize; 3],
    t: &Timing,
    rounds: usize,
) -> Result<()> {
    let rounds = rounds.max(1);
    let per = Timing {
        warmup: 1,
        min_reps: t.min_reps.div_ceil(rounds).max(3),
        max_reps: t.max_reps.div_ceil(rounds).max(3),
        budget_s: t.budget_s / rounds as f64,
    };
    // Warm every runner at every size first (caches, buffers, GPU pipelines).
    for (_, r) in runners {
        for (x, &b) in inputs.iter().zip(&batches) {
            for _ in 0..t.warmup {
                r.run(x, b)?;
            }
        }
    }
    let n = runners.len();
    let reference = references(rows, runners);
    let mut seen: Vec<[Vec<Latency>; 3]> = (0..n)
        .map(|_| [Vec::new(), Vec::new(), Vec::new()])
        .collect();
    let mut beside: Vec<Vec<Latency>> = vec![Vec::new(); n];
    for round in 0..rounds {
        for j in 0..n {
            let k = (j + round) % n;
            let r = &runners[k].1;
            let f = reference[k].map(|i| &runners[i].1);
            let once = || -> Result<([Latency; 3], Option<Latency>)> {
                let b1 = latency(&per, || r.run(&inputs[0], batches[0]))?;
                // The reference right before the row at batch 64: the pair sees the same
                // machine, whatever it did earlier or later in the round.
                let beside64 = match f {
                    Some(f) => Some(latency(&per, || f.run(&inputs[1], batches[1]))?),
                    None => None,
                };
                let b64 = latency(&per, || r.run(&inputs[1], batches[1]))?;
                let b256 = latency(&per, || r.run(&inputs[2], batches[2]))?;
                Ok(([b1, b64, b256], beside64))
            };
            let (ls, paired) = if r.pinned() { pinned(once)? } else { once()? };
            for (s, l) in seen[k].iter_mut().zip(ls) {
                s.push(l);
            }
            beside[k].extend(paired);
        }
    }
    for (((idx, _), [b1, b64, b256]), paired) in runners.iter().zip(&seen).zip(&beside) {
        let row = &mut rows[*idx];
        if !paired.is_empty() {
            row.latency_b64_ref_rounds_us = summarize(paired).2;
        }
        (
            row.latency_b1_us,
            row.latency_b1_p90_us,
            row.latency_b1_rounds_us,
        ) = summarize(b1);
        (
            row.latency_b64_us,
            row.latency_b64_p90_us,
            row.latency_b64_rounds_us,
        ) = summarize(b64);
        row.throughput_sps = batches[1] as f64 / (row.latency_b64_us / 1e6);
        row.latency_b256_us = summarize(b256).0;
        row.throughput_b256_sps = batches[2] as f64 / (row.latency_b256_us / 1e6);
    }
    Ok(())
}

/// For each runner, the runner of the float row its speed-up is taken against, where that
/// row is timed here too and runs the same way (pinned or not).
fn references(rows: &[Row], runners: &[(usize, Runner)]) -> Vec<Option<usize>> {
    runners
        .iter()
        .map(|(idx, run)| {
            let r = &rows[*idx];
            if r.method == "f32" || !r.supported {
                return None;
            }
            let backend = reference_backend(r);
            runners.iter().position(|(j, f)| {
                is_reference_for(&rows[*j], r, backend) && f.pinned() == run.pinned()
            })
        })
        .collect()
}

/// `(median of the round medians, median of the round p90s, the round medians)`.
fn summarize(rounds: &[Latency]) -> (f64, f64, Vec<f64>) {
    let medians: Vec<f64> = rounds.iter().map(|l| l.median_us).collect();
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let p90s = sorted(rounds.iter().map(|l| l.p90_us).collect());
    (
        median_sorted(&sorted(medians.clone())),
        median_sorted(&p90s),
        medians,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_the_median_of_its_rounds() {
        let l = |m: f64, p: f64| Latency {
            median_us: m,
            p90_us: p,
            reps: 3,
        };
        let (m, p90, r) = summarize(&[l(10.0, 12.0), l(30.0, 40.0), l(11.0, 13.0)]);
        assert_eq!((m, p90), (11.0, 13.0));
        assert_eq!(r, vec![10.0, 30.0, 11.0]);
    }
}

//! The QAT loop: calibrate the starting ranges, fine-tune through fake quantization with
//! the training loop's optimiser, shuffling and per-epoch validation, keep the epoch with
//! the lowest validation loss, and convert it to the integer model.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use quantlab_data::rng::Rng;
use quantlab_data::{LabeledSet, Splits};
use quantlab_quant::observer::{AVERAGING_CONSTANT, batch_range};
use quantlab_quant::qparams::{ActDtype, BitWidths, QParams, fake_quantize_in_place};
use quantlab_quant::{Engine, KernelPath, Network, QuantModel, calibrate};

use super::config::QatConfig;
use super::net::{ActRanges, QatNet, is_quant_point};
use crate::error::{Result, TrainError};
use crate::evaluate::{Score, evaluate_with};
use crate::fit::{LOSS_READ_EVERY, check_finite, drain, optimizer, progress_bar};
use crate::history::{EpochStats, History};

/// A finished QAT run.
#[derive(Debug)]
pub struct QatOutcome {
    /// The integer model (method `qat`).
    pub model: QuantModel,
    /// The selected epoch's fake-quantized network (evaluation mode), for comparisons.
    pub net: QatNet,
    /// The ranges of its fixed-grid points.
    pub ranges: Vec<QParams>,
    /// Per-epoch history (fake-quantized validation figures).
    pub history: History,
    /// The selected epoch.
    pub best: EpochStats,
    /// The selected fake-quantized network on the test split, once.
    pub test: Score,
}

/// The moving-average ranges of every point and how they become grids.
struct Ranges {
    /// `(min, max)` per point (pass-through points repeat their input's).
    minmax: Vec<(f32, f32)>,
    bits: BitWidths,
    /// Points whose grid is fixed (not learned), in the order the forward pass reports them.
    fixed: Vec<usize>,
}

impl Ranges {
    fn qparams(&self, net: &Network) -> Vec<QParams> {
        let n = self.minmax.len();
        let mut out: Vec<QParams> = self
            .minmax
            .iter()
            .enumerate()
            .map(|(p, &(lo, hi))| {
                QParams::from_range_bits(lo, hi, ActDtype::U8Affine, self.bits.at_point(p, n))
            })
            .collect();
        for p in 1..n {
            if !is_quant_point(net, p) {
                out[p] = out[p - 1];
            }
        }
        out
    }

    /// One batch's `[min, max]` per fixed point, folded into the moving averages.
    fn update(&mut self, seen: &[f32], c: f32) {
        for (j, &p) in self.fixed.iter().enumerate() {
            let (lo, hi) = (seen[2 * j], seen[2 * j + 1]);
            let (m, x) = &mut self.minmax[p];
            *m += c * (lo - *m);
            *x += c * (hi - *x);
        }
    }
}

fn limit(set: &LabeledSet, n: Option<usize>) -> LabeledSet {
    n.map_or_else(|| set.clone(), |n| set.take(n))
}

/// Fine-tunes `float` (a trained network) with fake quantization at `bits` on `splits`
/// and converts the result. `device` is an inference device; autodiff is added here.
pub fn fit_qat(
    float: &Network,
    cfg: &QatConfig,
    bits: BitWidths,
    splits: &Splits,
    device: &Device,
    progress: bool,
) -> Result<QatOutcome> {
    cfg.validate()?;
    let train = limit(&splits.train, cfg.train_limit);
    let (val, test) = (
        limit(&splits.val, cfg.test_limit),
        limit(&splits.test, cfg.test_limit),
    );
    if train.sample_shape.iter().product::<usize>() != float.in_len() {
        return Err(TrainError::Invalid {
            key: "checkpoint",
            value: format!("{:?}", float.input_shape),
            reason: format!("the data's samples have shape {:?}", train.sample_shape),
        });
    }

    // Starting ranges: MinMax over `calib` training samples, as PTQ's calibration.
    let engine = Engine {
        path: KernelPath::detect(),
        threads: 1,
    };
    let samples = cfg.calib.min(train.len());
    let cal = calibrate(
        float,
        &train.features[..samples * float.in_len()],
        samples,
        false,
        &engine,
    )
    .map_err(|e| TrainError::Backend(e.to_string()))?;
    let points = float.nodes.len() + 1;
    let mut ranges = Ranges {
        minmax: cal.stats.iter().map(|s| (s.min, s.max)).collect(),
        bits,
        fixed: Vec::new(),
    };
    let start_q = ranges.qparams(float);
    debug_assert_eq!(start_q.len(), points);

    let ad = device.clone().autodiff();
    let mut model = QatNet::new(float, bits, cfg.act_ranges, &start_q, &ad)?;
    ranges.fixed = (0..points)
        .filter(|&p| is_quant_point(float, p) && model.plan.learned[p].is_none())
        .collect();
    let c = if cfg.averaging_constant > 0.0 {
        cfg.averaging_constant
    } else {
        AVERAGING_CONSTANT
    };

    let lr = cfg.lr_for(bits);
    let mut optim = optimizer(cfg.optimizer, cfg.momentum);
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut rng = Rng::new(cfg.seed ^ 0x0a7_0a7);
    let steps = train.len().div_ceil(cfg.batch_size);
    let bar = progress_bar(progress, (steps * cfg.epochs) as u64);
    let mut history = History::default();
    let mut best: Option<(EpochStats, QatNet, Vec<QParams>)> = None;
    for epoch in 1..=cfg.epochs {
        let observe = epoch <= cfg.freeze_ranges_after;
        let order = rng.permutation(train.len());
        let start = Instant::now();
        let mut loss_sum = 0.0;
        let mut pending = Vec::new();
        let mut q = ranges.qparams(float);
        for (step, chunk) in order.chunks(cfg.batch_size).enumerate() {
            // The input's observation and quantization, on the host in one pass.
            let mut input_range = (0.0, 0.0);
            let batch = train.batch_with(chunk, &ad, |x| {
                if observe {
                    input_range = batch_range(x);
                }
                fake_quantize_in_place(x, &q[0]);
            });
            let (logits, seen) = model.forward_on_grid(batch.images, &q, observe);
            let loss = loss_fn.forward(logits, batch.targets);
            pending.push((loss.clone().detach(), chunk.len()));
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            if observe {
                let mut v = vec![input_range.0, input_range.1];
                if let Some(seen) = seen {
                    v.extend(
                        seen.into_data()
                            .convert::<f32>()
                            .try_to_vec::<f32>()
                            .map_err(|e| TrainError::Backend(format!("{e:?}")))?,
                    );
                }
                ranges.update(&v, c);
                q = ranges.qparams(float);
            }
            if (step + 1) % LOSS_READ_EVERY == 0 || step + 1 == steps {
                let (sum, n) = drain(&mut pending)?;
                loss_sum += sum;
                bar.set_message(format!(
                    "qat {} epoch {epoch}/{} loss {:.4}",
                    bits.tag(),
                    cfg.epochs,
                    sum / n as f64
                ));
            }
            bar.inc(1);
        }
        let seconds = start.elapsed().as_secs_f64();
        let train_loss = loss_sum / train.len() as f64;
        check_finite("QAT", train_loss, lr, epoch)?;
        let eval_model = model.valid();
        let Score { accuracy, loss, .. } =
            evaluate_with(&val, device, |x| eval_model.forward(x, &q, false).0)?;
        let stats = EpochStats {
            epoch,
            train_loss,
            val_loss: loss,
            val_accuracy: accuracy,
            seconds,
        };
        history.epochs.push(stats);
        let line = format!(
            "qat {} epoch {epoch}: train loss {train_loss:.4}, validation loss {loss:.4}, validation accuracy {:.2}%, {seconds:.1} s{}",
            bits.tag(),
            accuracy * 100.0,
            match (observe, cfg.act_ranges) {
                (true, _) => "",
                (false, ActRanges::MovingAverage) => " (ranges frozen)",
                (false, ActRanges::Learned) => " (input and logit ranges frozen)",
            }
        );
        // A hidden bar (not a terminal) swallows its printed lines: the epochs still show.
        match (progress, bar.is_hidden()) {
            (true, true) => println!("{line}"),
            (true, false) => bar.println(line),
            _ => {}
        }
        if best.as_ref().is_none_or(|(b, _, _)| loss < b.val_loss) {
            best = Some((stats, eval_model, q));
        }
    }
    bar.finish_and_clear();
    let (best, net, q) = best.expect("at least one epoch ran");
    let test_score = evaluate_with(&test, device, |x| net.forward(x, &q, false).0)?;
    let model = net.to_quant_model(&q, samples)?;
    Ok(QatOutcome {
        model,
        net,
        ranges: q,
        history,
        best,
        test: test_score,
    })
}

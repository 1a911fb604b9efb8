//! The per-layer report, error and speed together: for every dense layer, how far its int8
//! output is from the float one (SQNR, cosine) in the fully quantized model, how much
//! accuracy the model keeps with only that layer quantized (sensitivity), and how long the
//! layer takes in f32 and in int8. `--max-drop` uses the sensitivities to put the most
//! sensitive layers back in f32 until the accuracy drop fits the budget.

use std::time::Instant;

use quantlab_data::LabeledSet;
use serde::{Deserialize, Serialize};

use crate::engine::{Act, Engine, Session};
use crate::error::Result;
use crate::methods::{only_layer, with_fallback};
use crate::model::QuantModel;
use crate::network::Node;
use crate::score::score;

/// Samples compared for SQNR and cosine.
pub const ERROR_SAMPLES: usize = 256;
/// Timed repetitions per layer (median kept).
pub const TIMING_REPS: usize = 15;
/// Batch used for per-layer timing.
pub const TIMING_BATCH: usize = 64;

/// One dense layer's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// Node index in the network.
    pub node: usize,
    /// `linear+relu 784x50`, `conv2d+relu 9x16 @28x28`, ...
    pub name: String,
    /// How the layer runs in the quantized model.
    pub precision: String,
    /// Multiply-accumulates per sample.
    pub macs: usize,
    /// Signal-to-quantization-noise ratio of the layer's output (dB), whole model quantized.
    pub sqnr_db: f64,
    /// Cosine similarity of the layer's output with the float one.
    pub cosine: f64,
    /// Accuracy with only this layer quantized (on the evaluation set given).
    pub only_layer_accuracy: Option<f64>,
    /// Float accuracy minus `only_layer_accuracy`, percentage points.
    pub sensitivity_pp: Option<f64>,
    /// Median time of the layer's step at batch [`TIMING_BATCH`], float model
    /// (microseconds; a convolution's includes a max pool fused after it).
    pub f32_us: f64,
    /// The same in the quantized model.
    pub int8_us: f64,
}

/// What node `i` of `model` does, in a report's words: `conv2d+relu 1->16 3x3 @28x28`,
/// `linear 128x10`, `maxpool 2x2 /2 @14x14`, `add (point 3)+relu`.
pub fn layer_name(model: &QuantModel, i: usize) -> String {
    match &model.network.nodes[i] {
        Node::Dense(d) => match d.conv {
            None => format!("{} {}x{}", d.kind(), d.k, d.n),
            Some(g) => format!(
                "{} {}->{} {}x{} @{}x{}",
                d.kind(),
                g.in_channels,
                d.n,
                g.kernel[0],
                g.kernel[1],
                g.out_hw[0],
                g.out_hw[1]
            ),
        },
        Node::MaxPool(g) | Node::AvgPool(g) => format!(
            "{} {}x{} /{} @{}x{}",
            if matches!(model.network.nodes[i], Node::MaxPool(_)) {
                "maxpool"
            } else {
                "avgpool"
            },
            g.kernel[0],
            g.kernel[1],
            g.stride[0],
            g.out_hw[0],
            g.out_hw[1]
        ),
        Node::Add { from, relu } => format!(
            "add{} (+ {})",
            if *relu { "+relu" } else { "" },
            match from {
                0 => "the input".to_string(),
                f => format!("node {}", f - 1),
            }
        ),
        Node::Relu => "relu".into(),
        Node::Flatten => "flatten".into(),
    }
}

/// Activations (as f32) at every point for `n` samples of `x`.
pub fn activations(
    engine: &Engine,
    model: &QuantModel,
    x: &[f32],
    n: usize,
) -> Result<Vec<Vec<f32>>> {
    let mut acts = vec![Vec::new(); model.network.nodes.len() + 1];
    engine
        .prepare(model)?
        .run_traced(x, n, &mut |p, a: &Act| acts[p] = a.to_f32())?;
    Ok(acts)
}

/// SQNR (dB) and cosine similarity of `q` against `f`.
pub fn sqnr_cosine(f: &[f32], q: &[f32]) -> (f64, f64) {
    let (mut sig, mut noise, mut dot, mut qq) = (0f64, 0f64, 0f64, 0f64);
    for (&a, &b) in f.iter().zip(q) {
        let (a, b) = (a as f64, b as f64);
        sig += a * a;
        noise += (a - b) * (a - b);
        dot += a * b;
        qq += b * b;
    }
    let sqnr = if noise == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (sig / noise).log10()
    };
    let cos = if sig == 0.0 || qq == 0.0 {
        if sig == qq { 1.0 } else { 0.0 }
    } else {
        dot / (sig.sqrt() * qq.sqrt())
    };
    (sqnr, cos)
}

/// SQNR (dB) at the output of every dense layer of `quant`, against the float activations
/// `float_acts` ([`activations`] of the float model on the same `n` samples of `x`).
pub fn layer_sqnr(
    engine: &Engine,
    float_acts: &[Vec<f32>],
    quant: &QuantModel,
    x: &[f32],
    n: usize,
) -> Result<Vec<f64>> {
    let qa = activations(engine, quant, x, n)?;
    Ok(quant
        .network
        .dense_indices()
        .into_iter()
        .map(|i| sqnr_cosine(&float_acts[i + 1], &qa[i + 1]).0)
        .collect())
}

/// Median time of every node over [`TIMING_REPS`] runs at batch [`TIMING_BATCH`] (us), as
/// the engine runs them: a step's time goes to its first dense node (a convolution's
/// includes the max pool fused after it, whose own entry is then 0), so the times add up
/// to the model's latency. Timing each node on its own instead (the traced form) put a
/// pooled convolution at up to 2.3x its time in the model, requantizing four times the
/// outputs.
pub fn node_times(engine: &Engine, model: &QuantModel, x: &[f32]) -> Result<Vec<f64>> {
    let d = model.network.in_len();
    let batch = TIMING_BATCH.min(x.len() / d.max(1)).max(1);
    let session = engine.prepare(model)?;
    let steps = session_step_times(&session, &x[..batch * d], batch, TIMING_REPS)?;
    let mut times = vec![0.0; model.network.nodes.len()];
    for st in steps {
        let owner = st
            .nodes
            .clone()
            .find(|&i| matches!(model.network.nodes[i], Node::Dense(_)))
            .or(st.nodes.clone().next());
        if let Some(i) = owner {
            times[i] = st.us;
        }
    }
    Ok(times)
}

/// One step of a session as it runs, timed: the nodes it covers (a convolution and the pool
/// fused with it are one step; an empty range is the input's preparation: quantizing it, or
/// its channels-last copy) and its median time.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTime {
    /// Nodes `nodes.start..nodes.end` of the network.
    pub nodes: std::ops::Range<usize>,
    /// Median time over the runs (us).
    pub us: f64,
}

/// Median time of every step of `session` as it runs (fused, one thread) over `reps` runs
/// of `batch` samples `x`: where a model's time goes, summing to its latency. (A traced
/// run, [`Session::run_traced`], would time a convolution without its pool instead,
/// requantizing four times the outputs a fused 2x2 pool does.)
pub fn session_step_times(
    session: &Session,
    x: &[f32],
    batch: usize,
    reps: usize,
) -> Result<Vec<StepTime>> {
    let mut samples: std::collections::BTreeMap<usize, Vec<f64>> = Default::default();
    session.run_steps(x, batch, &mut |_, _| {})?; // warm-up
    for _ in 0..reps.max(1) {
        // A step's time in this run: its chunks' summed (a batch runs in chunks, see
        // `Session::run`).
        let mut run: std::collections::BTreeMap<usize, f64> = Default::default();
        let mut last = Instant::now();
        session.run_steps(x, batch, &mut |p, _| {
            let now = Instant::now();
            *run.entry(p).or_default() += now.duration_since(last).as_secs_f64() * 1e6;
            last = now;
        })?;
        for (p, us) in run {
            samples.entry(p).or_default().push(us);
        }
    }
    let mut prev = 0;
    Ok(samples
        .into_iter()
        .map(|(p, mut v)| {
            v.sort_by(f64::total_cmp);
            let nodes = prev..p;
            prev = p;
            StepTime {
                nodes,
                us: v[v.len() / 2],
            }
        })
        .collect())
}

/// Builds the per-layer report of `quant` against `float`. `calib_x` (training split) feeds
/// the error and timing measurements; `eval`, when given, the sensitivities.
pub fn layer_report(
    engine: &Engine,
    float: &QuantModel,
    quant: &QuantModel,
    calib_x: &[f32],
    eval: Option<&LabeledSet>,
) -> Result<Vec<LayerReport>> {
    let d = float.network.in_len();
    let n = ERROR_SAMPLES.min(calib_x.len() / d.max(1));
    let x = &calib_x[..n * d];
    let fa = activations(engine, float, x, n)?;
    let qa = activations(engine, quant, x, n)?;
    let ft = node_times(engine, float, calib_x)?;
    let qt = node_times(engine, quant, calib_x)?;
    let float_acc = match eval {
        Some(set) => Some(score(engine, float, set)?.accuracy),
        None => None,
    };
    let mut out = Vec::new();
    for i in quant.network.dense_indices() {
        let (sqnr_db, cosine) = sqnr_cosine(&fa[i + 1], &qa[i + 1]);
        let only = match eval {
            Some(set) => Some(score(engine, &only_layer(quant, i), set)?.accuracy),
            None => None,
        };
        let precision = quant.dense(i).map_or("?", |(_, l)| l.as_str()).to_string();
        let macs = match &quant.network.nodes[i] {
            Node::Dense(dn) => dn.macs(),
            _ => 0,
        };
        out.push(LayerReport {
            node: i,
            name: layer_name(quant, i),
            precision,
            macs,
            sqnr_db,
            cosine,
            only_layer_accuracy: only,
            sensitivity_pp: only.zip(float_acc).map(|(o, f)| (f - o) * 100.0),
            f32_us: ft[i],
            int8_us: qt[i],
        });
    }
    Ok(out)
}

/// Outcome of the accuracy budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    /// Dense nodes put back in f32, most sensitive first.
    pub layers: Vec<usize>,
    /// Accuracy on the evaluation set with those layers in f32.
    pub accuracy: f64,
    /// Float accuracy on the same set.
    pub float_accuracy: f64,
    /// Whether the budget was met (with every layer in f32 it always is).
    pub met: bool,
}

/// Greedily returns the most sensitive layers to f32 until the accuracy drop on `eval` is at
/// most `budget_pp`. Sensitivities come from `report` (layers without one go last).
pub fn fit_budget(
    engine: &Engine,
    float: &QuantModel,
    quant: &QuantModel,
    report: &[LayerReport],
    eval: &LabeledSet,
    budget_pp: f64,
) -> Result<(QuantModel, Fallback)> {
    let float_accuracy = score(engine, float, eval)?.accuracy;
    let mut order: Vec<&LayerReport> = report.iter().collect();
    order.sort_by(|a, b| {
        b.sensitivity_pp
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.sensitivity_pp.unwrap_or(f64::NEG_INFINITY))
    });
    let mut layers = Vec::new();
    let mut model = quant.clone();
    let mut accuracy = score(engine, &model, eval)?.accuracy;
    for r in order {
        if (float_accuracy - accuracy) * 100.0 <= budget_pp {
            break;
        }
        layers.push(r.node);
        model = with_fallback(quant, &layers);
        accuracy = score(engine, &model, eval)?.accuracy;
    }
    let met = (float_accuracy - accuracy) * 100.0 <= budget_pp;
    Ok((
        model,
        Fallback {
            layers,
            accuracy,
            float_accuracy,
            met,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqnr_and_cosine_of_known_signals() {
        let f = [1.0, -1.0, 1.0, -1.0];
        let (s, c) = sqnr_cosine(&f, &f);
        assert!(s.is_infinite() && (c - 1.0).abs() < 1e-12);
        let q = [1.1, -0.9, 1.1, -0.9]; // noise power 0.01 vs signal 1 -> 20 dB
        let (s, _) = sqnr_cosine(&f, &q);
        assert!((s - 20.0).abs() < 1e-5, "{s}");
        let (_, c) = sqnr_cosine(&f, &[-1.0, 1.0, -1.0, 1.0]);
        assert!((c + 1.0).abs() < 1e-12);
    }
}

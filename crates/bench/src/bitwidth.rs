//! The bit-width sweep: where post-training quantization breaks. For one trained model, one
//! calibration (with histograms) serves every observer at every width of `[bit_sweep]`
//! (weights and activations at the same width, the input and logits at 8 bits): each gets
//! its test accuracy and per-layer SQNR against the float activations. The QAT points of
//! the same plots and tables come from the matrix's `qat-wNaN` rows, which train.

use quantlab_data::LabeledSet;
use quantlab_quant::report::{activations, layer_sqnr};
use quantlab_quant::{
    BitWidths, Engine, Granularity, Network, ObserverKind, QuantModel, QuantizeOptions, calibrate,
    score, static_from_calibration,
};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One observer at one width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BitPoint {
    /// Dataset.
    pub dataset: String,
    /// Model.
    pub model: String,
    /// Observer.
    pub observer: String,
    /// Weight and activation width.
    pub bits: u8,
    /// Test accuracy (0..1).
    pub accuracy: f64,
    /// Float accuracy minus this accuracy, in percentage points.
    pub drop_pp: f64,
    /// SQNR (dB) at each dense layer's output, in network order.
    pub layer_sqnr_db: Vec<f64>,
}

/// Every observer of `ObserverKind::ALL` at every width of `widths`, static per channel,
/// calibrated once on `calib_x` (`calib` samples); SQNR on the first `sqnr_samples` of `test`.
#[allow(clippy::too_many_arguments)]
pub fn bit_sweep(
    (dataset, model): (&str, &str),
    net: &Network,
    calib_x: &[f32],
    calib: usize,
    test: &LabeledSet,
    float_accuracy: f64,
    (widths, sqnr_samples): (&[u8], usize),
    engine: &Engine,
) -> Result<Vec<BitPoint>> {
    let d = net.in_len();
    let float = QuantModel::float(net.clone());
    let n_sqnr = sqnr_samples.min(test.len());
    let sqnr_x = &test.features[..n_sqnr * d];
    let float_acts = activations(engine, &float, sqnr_x, n_sqnr)?;
    let cal = calibrate(net, calib_x, calib, true, engine)?;
    let mut out = Vec::new();
    for &bits in widths {
        for observer in ObserverKind::ALL {
            let opts = QuantizeOptions {
                observer,
                granularity: Granularity::PerChannel,
                bits: BitWidths::wa(bits, bits).check()?,
                calib,
                ..QuantizeOptions::default()
            };
            let q = static_from_calibration(net, &opts, &cal);
            let accuracy = score(engine, &q, test)?.accuracy;
            out.push(BitPoint {
                dataset: dataset.into(),
                model: model.into(),
                observer: observer.as_str().into(),
                bits,
                accuracy,
                drop_pp: (float_accuracy - accuracy) * 100.0,
                layer_sqnr_db: layer_sqnr(engine, &float_acts, &q, sqnr_x, n_sqnr)?,
            });
        }
    }
    Ok(out)
}

/// The `(dataset, model)` pairs of `points`, in first-seen order.
pub fn pairs(points: &[BitPoint]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for p in points {
        let k = (p.dataset.clone(), p.model.clone());
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// QAT accuracy at width `b` (weights and activations) from the matrix's `qat-wbab` row.
pub fn qat_accuracy(rows: &[crate::Row], ds: &str, model: &str, b: u8) -> Option<f64> {
    let name = format!("qat-w{b}a{b}");
    rows.iter()
        .find(|r| r.dataset == ds && r.model == model && r.method == name)
        .map(|r| r.accuracy)
}

/// REPORT.md's section: per model, accuracy by width and observer (QAT beside them), and
/// MinMax's per-layer SQNR at each width.
pub fn markdown(points: &[BitPoint], rows: &[crate::Row]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for (ds, model) in pairs(points) {
        let mine: Vec<&BitPoint> = points
            .iter()
            .filter(|p| p.dataset == ds && p.model == model)
            .collect();
        let mut widths: Vec<u8> = mine.iter().map(|p| p.bits).collect();
        widths.dedup();
        let mut observers: Vec<&str> = Vec::new();
        for p in &mine {
            if !observers.contains(&p.observer.as_str()) {
                observers.push(&p.observer);
            }
        }
        let float = rows
            .iter()
            .find(|r| r.dataset == ds && r.model == model && r.method == "f32")
            .map_or(f64::NAN, |r| r.accuracy);
        let _ = writeln!(
            s,
            "\n## Bit width: {ds} / {model}\n\nTest accuracy (%) with weights and activations at W bits (the input and the logits at 8), float {:.2}%. PTQ: static per-channel, one calibration serving every observer and width; QAT: the matrix's `qat-wWaW` rows (fine-tuned from the same float model, `configs/qat.toml`). A collapse is shown where it happens.\n",
            float * 100.0
        );
        let _ = writeln!(
            s,
            "| W=A bits | {} | qat |\n|---|{}---|",
            observers.join(" | "),
            "---|".repeat(observers.len())
        );
        for &b in &widths {
            let cells: Vec<String> = observers
                .iter()
                .map(|o| {
                    mine.iter()
                        .find(|p| p.bits == b && p.observer == *o)
                        .map_or("-".into(), |p| format!("{:.2}", p.accuracy * 100.0))
                })
                .collect();
            let qat = qat_accuracy(rows, &ds, &model, b)
                .map_or("-".into(), |a| format!("{:.2}", a * 100.0));
            let _ = writeln!(s, "| {b} | {} | {qat} |", cells.join(" | "));
        }
        let minmax: Vec<&&BitPoint> = mine.iter().filter(|p| p.observer == "minmax").collect();
        if let Some(first) = minmax.first() {
            let n = first.layer_sqnr_db.len();
            let _ = writeln!(
                s,
                "\nPer-layer SQNR (dB) of MinMax PTQ against the float activations, by width:\n\n| W=A bits | {} |\n|---|{}",
                (1..=n)
                    .map(|i| format!("layer {i}"))
                    .collect::<Vec<_>>()
                    .join(" | "),
                "---|".repeat(n)
            );
            for p in &minmax {
                let cells: Vec<String> =
                    p.layer_sqnr_db.iter().map(|v| format!("{v:.1}")).collect();
                let _ = writeln!(s, "| {} | {} |", p.bits, cells.join(" | "));
            }
        }
    }
    s
}

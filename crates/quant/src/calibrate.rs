//! Calibration: run the float network over samples from the training split (never the test
//! split; the caller hands them in) and record [`Stats`] at every activation point. A second
//! pass fills histograms when the observer needs them.

use crate::engine::{Act, Engine};
use crate::error::{QuantError, Result};
use crate::model::QuantModel;
use crate::network::Network;
use crate::observer::{ObserverKind, Stats};
use crate::qparams::{ActDtype, BitWidths, QParams};

/// Samples per calibration batch (also the unit of the moving-average observer).
pub const CALIB_BATCH: usize = 32;

/// Statistics of every activation point.
#[derive(Debug, Clone)]
pub struct Calibration {
    /// One entry per point (`nodes + 1`); pass-through points share their input's values.
    pub stats: Vec<Stats>,
    /// Samples seen.
    pub samples: usize,
}

/// Whether point `p` is observed directly (the input, or the output of a dense node or an
/// Add); the others (pools, ReLU, flatten) keep their input's range.
fn observed(net: &Network, p: usize) -> bool {
    p == 0 || net.nodes[p - 1].sets_grid()
}

/// Runs calibration over `samples` inputs in `x` (flat, normalised).
pub fn calibrate(
    net: &Network,
    x: &[f32],
    samples: usize,
    histograms: bool,
    engine: &Engine,
) -> Result<Calibration> {
    if samples == 0 {
        return Err(QuantError::Invalid {
            key: "calib",
            reason: "need at least one calibration sample".into(),
        });
    }
    let d = net.in_len();
    if x.len() < samples * d {
        return Err(QuantError::InputSize {
            expected: samples * d,
            found: x.len(),
            batch: samples,
        });
    }
    let float = engine.prepare(&QuantModel::float(net.clone()))?;
    let mut stats = vec![Stats::default(); net.nodes.len() + 1];
    let pass = |stats: &mut Vec<Stats>, second: bool| -> Result<()> {
        for start in (0..samples).step_by(CALIB_BATCH) {
            let n = CALIB_BATCH.min(samples - start);
            float.run_traced(&x[start * d..(start + n) * d], n, &mut |p, act: &Act| {
                if let (true, Act::F32(v)) = (observed(net, p), act) {
                    if second {
                        stats[p].observe_histogram(v)
                    } else {
                        stats[p].observe_range(v)
                    }
                }
            })?;
        }
        Ok(())
    };
    pass(&mut stats, false)?;
    if histograms {
        stats.iter_mut().for_each(Stats::start_histograms);
        pass(&mut stats, true)?;
    }
    for p in 1..stats.len() {
        if !observed(net, p) {
            stats[p] = stats[p - 1].clone();
        }
    }
    Ok(Calibration { stats, samples })
}

impl Calibration {
    /// Quantization parameters of every point for `observer` and `dtype` at 8 bits.
    pub fn qparams(&self, observer: ObserverKind, dtype: ActDtype) -> Vec<QParams> {
        self.qparams_bits(observer, dtype, BitWidths::default())
    }

    /// Quantization parameters of every point for `observer` and `dtype`: the first point
    /// (the network input) and the last (the logits) at `bits.edges`, the others at
    /// `bits.acts`.
    pub fn qparams_bits(
        &self,
        observer: ObserverKind,
        dtype: ActDtype,
        bits: BitWidths,
    ) -> Vec<QParams> {
        let points = self.stats.len();
        self.stats
            .iter()
            .enumerate()
            .map(|(p, s)| s.qparams_bits(observer, dtype, bits.at_point(p, points)))
            .collect()
    }
}

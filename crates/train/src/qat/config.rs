//! QAT settings as data (`configs/qat.toml`): the fine-tune from a float checkpoint.
//! Unknown keys are errors naming the key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use quantlab_quant::qparams::BitWidths;

use super::net::ActRanges;
use crate::config::OptimizerKind;
use crate::error::{Result, TrainError, io};

/// How quantization-aware training runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QatConfig {
    /// Passes over the training split.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate (a tenth of a float run's: it starts from trained weights).
    pub lr: f64,
    /// Learning rate when the weights or the activations are 2 bits wide: the steps and
    /// weights have further to move there than two epochs at `lr` take them (None: `lr`).
    pub lr_at_2_bits: Option<f64>,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// SGD momentum.
    pub momentum: f64,
    /// Activation ranges: moving averages, or learned steps (LSQ).
    pub act_ranges: ActRanges,
    /// Epochs whose steps update the moving-average ranges; frozen after (PyTorch freezes
    /// observers for the last part of QAT so the weights settle on a fixed grid).
    pub freeze_ranges_after: usize,
    /// Weight of each batch in the moving averages (PyTorch's default 0.01).
    pub averaging_constant: f32,
    /// Training samples that calibrate the initial ranges.
    pub calib: usize,
    /// Seed of the per-epoch shuffling.
    pub seed: u64,
    /// Train on only the first N training samples (quick runs).
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N validation and test samples (quick runs).
    pub test_limit: Option<usize>,
}

impl Default for QatConfig {
    fn default() -> Self {
        Self {
            epochs: 2,
            batch_size: 64,
            lr: 1e-4,
            lr_at_2_bits: None,
            optimizer: OptimizerKind::Adam,
            momentum: 0.0,
            act_ranges: ActRanges::MovingAverage,
            freeze_ranges_after: 1,
            averaging_constant: 0.01,
            calib: 1000,
            seed: 1,
            train_limit: None,
            test_limit: None,
        }
    }
}

impl QatConfig {
    /// Reads a TOML file; unknown keys, wrong types and bad values are errors naming them.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let cfg: QatConfig = toml::from_str(&text).map_err(|e| TrainError::Config {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        cfg.validate().map_err(|e| TrainError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// The checked-in `configs/qat.toml` (the working directory's first, then the clone's),
    /// or the built-in defaults when neither exists.
    pub fn preset() -> Result<Self> {
        let clone = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/qat.toml");
        match [Path::new("configs/qat.toml"), clone.as_path()]
            .into_iter()
            .find(|p| p.is_file())
        {
            Some(p) => Self::from_toml_file(p),
            None => Ok(Self::default()),
        }
    }

    /// The learning rate a run at `bits` uses.
    pub fn lr_for(&self, bits: BitWidths) -> f64 {
        match self.lr_at_2_bits {
            Some(lr) if bits.weights.min(bits.acts) <= 2 => lr,
            _ => self.lr,
        }
    }

    /// Sets one learning rate for every width (a `--lr` flag).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
        self.lr_at_2_bits = None;
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &'static str, value: String, reason: &str| {
            Err(TrainError::Invalid {
                key,
                value,
                reason: reason.into(),
            })
        };
        if self.epochs == 0 {
            return bad("epochs", "0".into(), "at least one epoch");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into(), "at least one sample per step");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", self.lr.to_string(), "a finite positive number");
        }
        if let Some(lr) = self.lr_at_2_bits
            && !(lr.is_finite() && lr > 0.0)
        {
            return bad("lr_at_2_bits", lr.to_string(), "a finite positive number");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", self.momentum.to_string(), "in [0, 1)");
        }
        if !(self.averaging_constant > 0.0 && self.averaging_constant <= 1.0) {
            return bad(
                "averaging_constant",
                self.averaging_constant.to_string(),
                "in (0, 1]",
            );
        }
        if self.calib == 0 {
            return bad("calib", "0".into(), "at least one calibration sample");
        }
        if self.train_limit == Some(0) || self.test_limit == Some(0) {
            return bad("train_limit/test_limit", "0".into(), "at least one sample");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_preset_reads_and_bad_values_are_named() {
        let preset = QatConfig::preset().unwrap();
        // The width decides the rate; an explicit rate is used at every width.
        let mut c = QatConfig {
            lr_at_2_bits: Some(1e-3),
            ..preset
        };
        assert_eq!(c.lr_for(BitWidths::wa(2, 2)), 1e-3);
        assert_eq!(c.lr_for(BitWidths::wa(4, 2)), 1e-3);
        assert_eq!(c.lr_for(BitWidths::wa(4, 4)), c.lr);
        c.set_lr(3e-4);
        assert_eq!(c.lr_for(BitWidths::wa(2, 2)), 3e-4);
        let dir = std::env::temp_dir().join(format!("qat-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (text, key) in [
            ("epochs = 0", "epochs"),
            ("lr = -1.0", "lr"),
            ("lr_at_2_bits = 0.0", "lr_at_2_bits"),
            ("act_ranges = \"histogram\"", "act_ranges"),
            ("wbits = 4", "wbits"),
            ("averaging_constant = 2.0", "averaging_constant"),
        ] {
            let p = dir.join("q.toml");
            std::fs::write(&p, text).unwrap();
            let e = QatConfig::from_toml_file(&p).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("q.toml"), "{text}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

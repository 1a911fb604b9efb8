//! Per-epoch training history, saved as JSON and CSV beside the checkpoint (and drawn as
//! training curves by the benchmark).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, io};

/// What one epoch produced.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Validation loss after the epoch (the split held out from the training data).
    pub val_loss: f64,
    /// Validation accuracy after the epoch (0..1).
    pub val_accuracy: f64,
    /// Wall time of the epoch's training steps, seconds (evaluation excluded).
    pub seconds: f64,
}

/// All epochs of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Epochs in order.
    pub epochs: Vec<EpochStats>,
}

impl History {
    /// The epoch with the lowest validation loss.
    pub fn best(&self) -> Option<&EpochStats> {
        self.epochs
            .iter()
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
    }

    /// CSV with a header line.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("epoch,train_loss,val_loss,val_accuracy,seconds\n");
        for e in &self.epochs {
            s.push_str(&format!(
                "{},{:.6},{:.6},{:.6},{:.3}\n",
                e.epoch, e.train_loss, e.val_loss, e.val_accuracy, e.seconds
            ));
        }
        s
    }

    /// Writes `history.json` and `history.csv` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).expect("history serialises");
        let p = dir.join("history.json");
        std::fs::write(&p, json).map_err(io(&p))?;
        let p = dir.join("history.csv");
        std::fs::write(&p, self.to_csv()).map_err(io(&p))
    }
}

//! The training configuration: data, checked in under `configs/`, copied into every
//! checkpoint folder, and reloaded for evaluation and quantization. Unknown keys are errors.

use std::path::{Path, PathBuf};

use quantlab_data::{DataOptions, DatasetName, SyntheticConfig};
use quantlab_models::{ModelKind, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError, io};

/// Optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OptimizerKind {
    /// Adam (beta 0.9/0.999).
    Adam,
    /// Stochastic gradient descent, optionally with momentum.
    Sgd,
}

/// Everything that determines a trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Dataset to train on.
    pub dataset: DatasetName,
    /// Architecture.
    pub model: ModelSpec,
    /// Passes over the training split.
    pub epochs: usize,
    /// Samples per step.
    pub batch_size: usize,
    /// Learning rate.
    pub lr: f64,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// SGD momentum (0 = plain SGD; ignored by Adam).
    pub momentum: f64,
    /// Seed of the initial weights and of the per-epoch shuffling.
    pub seed: u64,
    /// Train on only the first N training samples (quick runs).
    pub train_limit: Option<usize>,
    /// Evaluate on only the first N validation and test samples (quick runs).
    pub test_limit: Option<usize>,
    /// Seed of the train/test split of digits and synthetic, and of the validation split.
    pub split_seed: u64,
    /// Share of the training data held out for validation (selecting the best epoch).
    pub val_fraction: f64,
    /// Parameters of the synthetic dataset.
    pub synthetic: SyntheticConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetName::Mnist,
            model: ModelSpec::default(),
            epochs: 1,
            batch_size: 64,
            lr: 1e-3,
            optimizer: OptimizerKind::Adam,
            momentum: 0.0,
            seed: 1,
            train_limit: None,
            test_limit: None,
            split_seed: 0,
            val_fraction: quantlab_data::DEFAULT_VAL_FRACTION,
            synthetic: SyntheticConfig::default(),
        }
    }
}

impl TrainConfig {
    /// Reads a TOML config; unknown keys and wrong types are errors naming the key.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let cfg: TrainConfig = toml::from_str(&text).map_err(|e| TrainError::Config {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The checked-in preset for `dataset` and `model`,
    /// `configs/train/<dataset>-<model>.toml`: looked up under the working directory first
    /// (a user's edited copy), then in the clone's own `configs/` (fixed at build time, so
    /// `quantlab train` finds it from any folder). `None` when neither has one.
    pub fn preset_path(dataset: DatasetName, model: ModelKind) -> Option<PathBuf> {
        let name = format!("{}-{}.toml", dataset.as_str(), model.as_str());
        let clone = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/train");
        [PathBuf::from("configs/train"), clone]
            .into_iter()
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    }

    /// The defaults for a run given only a dataset and a model: the checked-in preset
    /// (see [`TrainConfig::preset_path`]) with its path, else the built-in defaults. The
    /// preset must be for that dataset and model; one that names others is an error.
    pub fn defaults_for(dataset: DatasetName, model: ModelKind) -> Result<(Self, Option<PathBuf>)> {
        let Some(path) = Self::preset_path(dataset, model) else {
            let mut c = Self {
                dataset,
                ..Self::default()
            };
            c.model.kind = model;
            return Ok((c, None));
        };
        let c = Self::from_toml_file(&path)?;
        if c.dataset != dataset || c.model.kind != model {
            return Err(TrainError::Config {
                path,
                message: format!(
                    "preset is for {}/{}, expected {dataset}/{model}",
                    c.dataset, c.model.kind
                ),
            });
        }
        Ok((c, Some(path)))
    }

    /// The config as TOML (what is written beside a checkpoint).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("TrainConfig is always representable in TOML")
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key, value: String, reason: &str| {
            Err(TrainError::Invalid {
                key,
                value,
                reason: reason.to_string(),
            })
        };
        if self.epochs == 0 {
            return invalid("epochs", "0".into(), "need at least 1");
        }
        if self.batch_size == 0 {
            return invalid("batch_size", "0".into(), "need at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return invalid("lr", self.lr.to_string(), "need a finite value > 0");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return invalid(
                "momentum",
                self.momentum.to_string(),
                "need 0 <= momentum < 1",
            );
        }
        if self.train_limit == Some(0) {
            return invalid("train_limit", "0".into(), "need at least 1 sample");
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return invalid(
                "val_fraction",
                self.val_fraction.to_string(),
                "need 0 < val_fraction < 1 (the best epoch is chosen on this split, never on the test set)",
            );
        }
        if self.test_limit == Some(0) {
            return invalid("test_limit", "0".into(), "need at least 1 sample");
        }
        Ok(())
    }

    /// The data options this config implies.
    pub fn data_options(&self, data_dir: Option<&Path>) -> DataOptions {
        DataOptions {
            data_dir: data_dir.map(Path::to_path_buf),
            split_seed: self.split_seed,
            val_fraction: self.val_fraction,
            synthetic: self.synthetic.clone(),
            ..DataOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn parses_and_round_trips() {
        let (_d, p) = write("dataset = \"digits\"\nepochs = 3\n[model]\nkind = \"cnn\"\n");
        let c = TrainConfig::from_toml_file(&p).unwrap();
        assert_eq!(c.dataset, DatasetName::Digits);
        assert_eq!(c.model.kind, quantlab_models::ModelKind::Cnn);
        assert_eq!(c.epochs, 3);
        let back: TrainConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn every_dataset_model_preset_is_found_and_matches() {
        for ds in [
            DatasetName::Mnist,
            DatasetName::Digits,
            DatasetName::FashionMnist,
        ] {
            for m in [ModelKind::Logreg, ModelKind::Mlp, ModelKind::Cnn] {
                let (c, path) = TrainConfig::defaults_for(ds, m).unwrap();
                assert!(path.is_some(), "no preset for {ds}/{m}");
                assert_eq!((c.dataset, c.model.kind), (ds, m));
            }
        }
        // The digits logreg preset is the bench's tuned setting, not the built-in batch 64.
        let (c, _) = TrainConfig::defaults_for(DatasetName::Digits, ModelKind::Logreg).unwrap();
        assert_eq!(c.batch_size, 16);
        // No preset: the built-in defaults for that dataset and model.
        let (c, path) = TrainConfig::defaults_for(DatasetName::Synthetic, ModelKind::Cnn).unwrap();
        assert_eq!(
            (path, c.dataset, c.model.kind),
            (None, DatasetName::Synthetic, ModelKind::Cnn)
        );
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let (_d, p) = write("epochz = 3\n");
        let err = TrainConfig::from_toml_file(&p).unwrap_err().to_string();
        assert!(err.contains("epochz") && err.contains("c.toml"), "{err}");
        let (_d, p) = write("[model]\nkind = \"mlp\"\nhiden = [3]\n");
        assert!(
            TrainConfig::from_toml_file(&p)
                .unwrap_err()
                .to_string()
                .contains("hiden")
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let (_d, p) = write("lr = -1.0\n");
        assert!(
            TrainConfig::from_toml_file(&p)
                .unwrap_err()
                .to_string()
                .contains("lr")
        );
        let (_d, p) = write("dataset = \"cifar\"\n");
        assert!(TrainConfig::from_toml_file(&p).is_err());
        let (_d, p) = write("epochs = \"three\"\n");
        assert!(
            TrainConfig::from_toml_file(&p)
                .unwrap_err()
                .to_string()
                .contains("epochs")
        );
    }
}

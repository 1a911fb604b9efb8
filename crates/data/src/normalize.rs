//! The input preprocessing a model expects, stated rather than guessed: a model trained
//! elsewhere (an imported ONNX file) may want the dataset's usual normalisation (the one
//! quantlab trains with), its own mean and standard deviation, or the raw `[0, 1]` values.

use std::fmt;
use std::str::FromStr;

use crate::load::Splits;
use crate::set::LabeledSet;

/// How the inputs are normalised.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Normalize {
    /// The dataset's usual statistics, the ones quantlab trains with (its training data's
    /// global mean and standard deviation: 0.1307 / 0.3081 for MNIST).
    #[default]
    Dataset,
    /// The values as stored (pixels in `[0, 1]`).
    None,
    /// `(x - mean) / std` with the user's figures.
    MeanStd(f32, f32),
}

impl fmt::Display for Normalize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Normalize::Dataset => write!(f, "dataset"),
            Normalize::None => write!(f, "none"),
            Normalize::MeanStd(m, s) => write!(f, "{m},{s}"),
        }
    }
}

impl FromStr for Normalize {
    type Err = String;

    /// `dataset`, `none` or `MEAN,STD` (a positive, finite STD).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "dataset" => Ok(Normalize::Dataset),
            "none" => Ok(Normalize::None),
            other => {
                let bad = || {
                    format!("'{other}': expected dataset, none or MEAN,STD (e.g. 0.1307,0.3081)")
                };
                let (m, sd) = other.split_once(',').ok_or_else(bad)?;
                let m: f32 = m.trim().parse().map_err(|_| bad())?;
                let sd: f32 = sd.trim().parse().map_err(|_| bad())?;
                if !(m.is_finite() && sd.is_finite() && sd > 0.0) {
                    return Err(format!(
                        "'{other}': the mean must be finite and the std finite and positive"
                    ));
                }
                Ok(Normalize::MeanStd(m, sd))
            }
        }
    }
}

impl Normalize {
    /// The `(mean, std)` applied to the stored values, given the dataset's own.
    fn stats(self, dataset: (f32, f32)) -> (f32, f32) {
        match self {
            Normalize::Dataset => dataset,
            Normalize::None => (0.0, 1.0),
            Normalize::MeanStd(m, s) => (m, s),
        }
    }
}

fn renormalize_set(set: &mut LabeledSet, from: (f32, f32), to: (f32, f32)) {
    for x in &mut set.features {
        *x = (*x * from.1 + from.0 - to.0) / to.1;
    }
}

impl Splits {
    /// Re-expresses every split (loaded with the dataset's statistics) as `to` asks. Only
    /// image sets carry one global statistic; a per-feature table keeps its own and is
    /// refused anything but [`Normalize::Dataset`].
    pub fn renormalize(&mut self, to: Normalize) -> Result<(), String> {
        if to == Normalize::Dataset {
            return Ok(());
        }
        let n = &self.normalization;
        if n.mean.len() != 1 {
            return Err(format!(
                "{} is normalised per feature; only `dataset` normalisation applies to it",
                self.name
            ));
        }
        let from = (n.mean[0], n.std[0]);
        let target = to.stats(from);
        for set in [&mut self.train, &mut self.val, &mut self.test] {
            renormalize_set(set, from, target);
        }
        self.normalization.mean = vec![target.0];
        self.normalization.std = vec![target.1];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("dataset".parse::<Normalize>(), Ok(Normalize::Dataset));
        assert_eq!("none".parse::<Normalize>(), Ok(Normalize::None));
        assert_eq!(
            "0.5, 0.25".parse::<Normalize>(),
            Ok(Normalize::MeanStd(0.5, 0.25))
        );
        assert_eq!(Normalize::MeanStd(0.5, 0.25).to_string(), "0.5,0.25");
        for bad in ["", "0.5", "a,b", "0.5,0", "0.5,-1", "0.5,inf"] {
            assert!(bad.parse::<Normalize>().is_err(), "{bad}");
        }
    }

    #[test]
    fn renormalised_values_are_the_raw_values_restated() {
        let raw = [0.0f32, 0.25, 1.0];
        let (m, s) = (0.2f32, 0.4f32);
        let mut set = LabeledSet {
            features: raw.iter().map(|x| (x - m) / s).collect(),
            labels: vec![0, 1, 0],
            sample_shape: vec![1],
            num_classes: 2,
        };
        renormalize_set(&mut set, (m, s), Normalize::None.stats((m, s)));
        for (a, b) in set.features.iter().zip(raw) {
            assert!((a - b).abs() < 1e-6);
        }
        renormalize_set(
            &mut set,
            (0.0, 1.0),
            Normalize::MeanStd(0.5, 2.0).stats((m, s)),
        );
        for (a, b) in set.features.iter().zip(raw) {
            assert!((a - (b - 0.5) / 2.0).abs() < 1e-6);
        }
    }
}

//! One entry point: load a named dataset as normalised train, validation and test splits,
//! with where it came from and any checksum warnings, ready for training, calibration and
//! evaluation.
//!
//! The validation split is carved from the training data (stratified, seeded), so that
//! model selection (the best epoch) and anything tuned on held-out data (the accuracy
//! budget, sensitivities) never look at the test set, which is scored once for the report.
//! Calibration reads `train`, which no longer holds the validation samples.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digits::{MAX_PIXEL, read_digits_csv};
use crate::error::{DataError, Result};
use crate::idx::{read_images, read_labels};
use crate::locate::{find_file, md5_warning, search_dirs};
use crate::set::{LabeledSet, Normalization};
use crate::split::stratified_split;
use crate::synthetic::{SyntheticConfig, make_classification};

/// The datasets quantlab knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DatasetName {
    /// MNIST handwritten digits, 28x28.
    Mnist,
    /// Zalando's Fashion-MNIST, 28x28.
    FashionMnist,
    /// UCI 8x8 digits as shipped by scikit-learn.
    Digits,
    /// Seeded `make_classification`-style tabular set.
    Synthetic,
}

impl DatasetName {
    /// Every dataset, in the order reports list them.
    pub const ALL: [DatasetName; 4] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Digits,
        DatasetName::Synthetic,
    ];

    /// The name used on the command line, in folders and in results.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Digits => "digits",
            DatasetName::Synthetic => "synthetic",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            DatasetName::Mnist => {
                "The clone ships it under data/mnist; or pass --data-dir DIR holding mnist/*-ubyte.gz."
            }
            DatasetName::FashionMnist => {
                "Install Debian's dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist), \
                 or pass --data-dir DIR (or set QUANTLAB_DATA_DIR) holding fashion-mnist/*-ubyte.gz."
            }
            DatasetName::Digits => {
                "The clone ships it under data/digits; or pass --data-dir DIR holding digits/digits.csv.gz."
            }
            DatasetName::Synthetic => "",
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        DatasetName::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| DataError::UnknownDataset(s.to_string()))
    }
}

/// The validation split's default share of the training data (MNIST: 6,000 of 60,000).
pub const DEFAULT_VAL_FRACTION: f64 = 0.1;

/// Seed offset of the validation split, so that it is not the same cut as the test split
/// of the sets split with the same seed.
const VAL_SEED: u64 = 0x7a11_da7e;

/// How to load: where to look, how to split and what to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct DataOptions {
    /// Explicit data directory (`--data-dir`); when set, nothing else is searched.
    pub data_dir: Option<PathBuf>,
    /// Seed of the train/test split of digits and synthetic.
    pub split_seed: u64,
    /// Test fraction for the sets without an official split.
    pub test_fraction: f64,
    /// Fraction of the training data held out as the validation split (0 < f < 1).
    pub val_fraction: f64,
    /// Parameters of the synthetic set.
    pub synthetic: SyntheticConfig,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            data_dir: None,
            split_seed: 0,
            test_fraction: 0.2,
            val_fraction: DEFAULT_VAL_FRACTION,
            synthetic: SyntheticConfig::default(),
        }
    }
}

/// A loaded dataset: normalised train, validation and test splits plus provenance.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Which dataset.
    pub name: DatasetName,
    /// Training split without the validation samples (normalised with the statistics of
    /// all training data).
    pub train: LabeledSet,
    /// Validation split: held out from the training data, for model selection.
    pub val: LabeledSet,
    /// Test split (normalised with the training statistics), for the report only.
    pub test: LabeledSet,
    /// The statistics used.
    pub normalization: Normalization,
    /// Folder the files were read from, or `None` for generated data.
    pub source: Option<PathBuf>,
    /// Checksum warnings (files that differ from the official ones).
    pub warnings: Vec<String>,
}

/// Loads `name` as normalised train/validation/test splits.
pub fn load(name: DatasetName, opts: &DataOptions) -> Result<Splits> {
    let mut splits = load_train_test(name, opts)?;
    let (train, val) = stratified_split(
        &splits.train,
        opts.val_fraction,
        opts.split_seed ^ VAL_SEED,
        "val_fraction",
    )?;
    if val.is_empty() || train.is_empty() {
        return Err(DataError::Invalid {
            param: "val_fraction",
            problem: format!(
                "{} leaves {} training and {} validation samples of {} (need at least one each)",
                opts.val_fraction,
                train.len(),
                val.len(),
                splits.train.len()
            ),
        });
    }
    splits.train = train;
    splits.val = val;
    Ok(splits)
}

/// The dataset's train/test splits, `val` still empty.
fn load_train_test(name: DatasetName, opts: &DataOptions) -> Result<Splits> {
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => load_idx(name, opts),
        DatasetName::Digits => load_digits(opts),
        DatasetName::Synthetic => {
            let all = make_classification(&opts.synthetic)?;
            let (mut train, mut test) =
                stratified_split(&all, opts.test_fraction, opts.split_seed, "test_fraction")?;
            let normalization = Normalization::per_feature(&train);
            normalization.apply(&mut train);
            normalization.apply(&mut test);
            Ok(Splits {
                name,
                val: train.take(0),
                train,
                test,
                normalization,
                source: None,
                warnings: Vec::new(),
            })
        }
    }
}

/// Finds the folder of `name`: the first search directory that has a `name/` sub-folder.
pub fn locate(name: DatasetName, data_dir: Option<&Path>) -> Result<PathBuf> {
    let dirs = search_dirs(data_dir);
    dirs.iter()
        .map(|d| d.join(name.as_str()))
        .find(|d| d.is_dir())
        .ok_or_else(|| DataError::NotFound {
            name: name.to_string(),
            searched: dirs
                .iter()
                .map(|d| d.join(name.as_str()).display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            hint: name.hint().to_string(),
        })
}

fn required(dir: &Path, stem: &str) -> Result<PathBuf> {
    find_file(dir, stem).ok_or_else(|| DataError::Io {
        path: dir.join(format!("{stem}.gz")),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "file not found (nor the raw file without .gz)",
        ),
    })
}

fn load_idx(name: DatasetName, opts: &DataOptions) -> Result<Splits> {
    let dir = locate(name, opts.data_dir.as_deref())?;
    let mut warnings = Vec::new();
    let mut part = |prefix: &str| -> Result<LabeledSet> {
        let ip = required(&dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let lp = required(&dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        warnings.extend(md5_warning(name.as_str(), &ip));
        warnings.extend(md5_warning(name.as_str(), &lp));
        let images = read_images(&ip)?;
        let labels = read_labels(&lp, 10)?;
        if images.count != labels.len() {
            return Err(DataError::CountMismatch {
                images: ip,
                labels: lp,
                n_images: images.count,
                n_labels: labels.len(),
            });
        }
        Ok(LabeledSet {
            features: images.pixels.iter().map(|&p| p as f32 / 255.0).collect(),
            labels,
            sample_shape: vec![1, images.rows, images.cols],
            num_classes: 10,
        })
    };
    let mut train = part("train")?;
    let mut test = part("t10k")?;
    if train.sample_shape != test.sample_shape {
        return Err(DataError::BadDims {
            path: dir.join("t10k-images-idx3-ubyte.gz"),
            expected: format!("the training images' {:?}", train.sample_shape),
            found: test.sample_shape.clone(),
        });
    }
    let normalization = Normalization::global(&train);
    normalization.apply(&mut train);
    normalization.apply(&mut test);
    Ok(Splits {
        name,
        val: train.take(0),
        train,
        test,
        normalization,
        source: Some(dir),
        warnings,
    })
}

fn load_digits(opts: &DataOptions) -> Result<Splits> {
    let dir = locate(DatasetName::Digits, opts.data_dir.as_deref())?;
    let path = dir.join("digits.csv.gz");
    let path = if path.is_file() {
        path
    } else {
        required(&dir, "digits.csv")?
    };
    let warnings: Vec<String> = md5_warning("digits", &path).into_iter().collect();
    let mut all = read_digits_csv(&path)?;
    all.features.iter_mut().for_each(|x| *x /= MAX_PIXEL);
    let (mut train, mut test) =
        stratified_split(&all, opts.test_fraction, opts.split_seed, "test_fraction")?;
    let normalization = Normalization::global(&train);
    normalization.apply(&mut train);
    normalization.apply(&mut test);
    Ok(Splits {
        name: DatasetName::Digits,
        val: train.take(0),
        train,
        test,
        normalization,
        source: Some(dir),
        warnings,
    })
}

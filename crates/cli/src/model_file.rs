//! Opening a quantlab model file (`.safetensors` from `quantize`, `bench` or `export`) with
//! the dataset it was trained on, as its provenance records it: `eval`, `time` and
//! `export` all need the model and matching test samples.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use quantlab_data::{DataOptions, DatasetName, Normalize, Splits, load};
use quantlab_quant::{QuantModel, export};

/// A model file, its provenance, and the splits of the dataset it is scored on.
pub struct ModelFile {
    /// The runnable model.
    pub model: QuantModel,
    /// The model's name, from the provenance: the architecture (`mlp`), or an imported ONNX
    /// file's stem.
    pub kind: String,
    /// Dataset scored on (the training dataset unless overridden).
    pub dataset: DatasetName,
    /// Its splits, with the model's split seed and synthetic parameters.
    pub splits: Splits,
}

/// A provenance field of a model file.
fn field<T: serde::de::DeserializeOwned>(
    meta: &export::FileMeta,
    key: &str,
    path: &Path,
) -> Result<T> {
    serde_json::from_value(meta.provenance[key].clone())
        .with_context(|| format!("{}: provenance has no valid `{key}`", path.display()))
}

/// Loads `path` and the dataset it names (or `dataset`), checking that the sample shape
/// matches the model's input.
pub fn load_with_data(
    path: &Path,
    dataset: Option<DatasetName>,
    data_dir: Option<PathBuf>,
) -> Result<ModelFile> {
    let (model, meta) = export::load(path)?;
    let kind: String = field(&meta, "model", path)?;
    // A model quantized on .npy data only names no dataset: `--dataset` picks one.
    let trained_on: DatasetName = match (dataset, meta.provenance.get("dataset")) {
        (Some(d), Some(serde_json::Value::Null) | None) => d,
        (None, Some(serde_json::Value::Null)) => bail!(
            "{} was quantized on .npy data: give --dataset (a dataset of its input shape) or, for eval, --eval-npy with --labels",
            path.display()
        ),
        _ => field(&meta, "dataset", path)?,
    };
    let dataset = dataset.unwrap_or(trained_on);
    let opts = DataOptions {
        data_dir,
        split_seed: field(&meta, "split_seed", path)?,
        synthetic: if trained_on == DatasetName::Synthetic {
            field(&meta, "synthetic", path)?
        } else {
            Default::default()
        },
        ..DataOptions::default()
    };
    let mut splits = load(dataset, &opts)?;
    // An imported model records the input normalisation it was quantized with.
    if let Some(v) = meta.provenance.get("input_normalize") {
        let n: Normalize = v.as_str().and_then(|s| s.parse().ok()).with_context(|| {
            format!(
                "{}: provenance has an invalid `input_normalize`",
                path.display()
            )
        })?;
        splits
            .renormalize(n)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    if splits.test.sample_shape != meta.input_shape {
        bail!(
            "{dataset} samples have shape {:?} but the model in {} takes {:?}",
            splits.test.sample_shape,
            path.display(),
            meta.input_shape
        );
    }
    Ok(ModelFile {
        model,
        kind,
        dataset,
        splits,
    })
}

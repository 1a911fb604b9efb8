//! A checkpoint folder: `model.bpk` (burn's burnpack record of the best epoch),
//! `train.toml` (the config that produced it), `checkpoint.json` (shapes, normalisation,
//! score, and the record's size and MD5), `history.json` / `history.csv`.
//!
//! Loading verifies the record's size and MD5 against `checkpoint.json` before burn reads
//! it, so a truncated or corrupted file is a clear error rather than whatever burn's reader
//! does with bad bytes.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use md5::{Digest, Md5};
use quantlab_data::{DatasetName, Normalization};
use quantlab_models::{Classifier, ModelSpec};
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::error::{Result, TrainError, io};
use crate::evaluate::Score;

/// File names inside a checkpoint folder.
pub const MODEL_FILE: &str = "model.bpk";
/// The training config, as TOML.
pub const CONFIG_FILE: &str = "train.toml";
/// Metadata, as JSON.
pub const META_FILE: &str = "checkpoint.json";

/// What `checkpoint.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// quantlab version that wrote it.
    pub quantlab_version: String,
    /// Dataset trained on.
    pub dataset: DatasetName,
    /// Architecture.
    pub model: ModelSpec,
    /// Per-sample input shape.
    pub input_shape: Vec<usize>,
    /// Classes.
    pub classes: usize,
    /// Input normalisation (training-split statistics).
    pub normalization: Normalization,
    /// Epoch this record comes from (lowest validation loss).
    pub best_epoch: usize,
    /// Test score of that epoch's model, measured once after training.
    pub score: Score,
    /// Validation score of that epoch (what selected it); absent in checkpoints written
    /// before the validation split, which were selected on the test set.
    #[serde(default)]
    pub validation: Option<Score>,
    /// Backend it was trained on (`cpu`, `ndarray`, `gpu`).
    pub backend: String,
    /// Size of `model.bpk` in bytes.
    pub model_bytes: u64,
    /// MD5 of `model.bpk`.
    pub model_md5: String,
    /// `f32`, or the weight-quantization method applied to the record (`burn-weights`).
    #[serde(default = "f32_method")]
    pub method: String,
}

fn f32_method() -> String {
    "f32".into()
}

/// A checkpoint read from disk.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Its folder.
    pub dir: PathBuf,
    /// The config it was trained with.
    pub config: TrainConfig,
    /// Its metadata.
    pub meta: CheckpointMeta,
}

impl Checkpoint {
    /// Path of the burnpack record.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join(MODEL_FILE)
    }

    /// The provenance an int8 file quantized from this checkpoint records: enough to
    /// reload its data (dataset, split seed, and the synthetic set's parameters, without
    /// which a synthetic model's file cannot be scored or timed) and to trace it back to
    /// the checkpoint. Compact: every byte counts against the int8 file's size.
    pub fn provenance(&self) -> serde_json::Value {
        let mut p = serde_json::json!({
            "checkpoint": self.dir.display().to_string(),
            "dataset": self.meta.dataset,
            "model": self.meta.model.kind,
            "classes": self.meta.classes,
            "normalization": [self.meta.normalization.mean.first(), self.meta.normalization.std.first()],
            "split_seed": self.config.split_seed,
        });
        if self.meta.dataset == DatasetName::Synthetic {
            p["synthetic"] = serde_json::to_value(&self.config.synthetic).expect("serialisable");
        }
        p
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    format!("{:x}", Md5::digest(bytes))
}

/// Saves `model` (moved to evaluation mode) with its config and metadata into `dir`.
/// `meta.model_bytes` / `meta.model_md5` are filled in here.
pub fn save(
    dir: &Path,
    config: &TrainConfig,
    mut meta: CheckpointMeta,
    model: &Classifier,
) -> Result<CheckpointMeta> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let bytes = model
        .valid()
        .into_record()
        .into_bytes()
        .map_err(|e| TrainError::Checkpoint {
            path: dir.join(MODEL_FILE),
            reason: e.to_string(),
        })?;
    let path = dir.join(MODEL_FILE);
    std::fs::write(&path, &bytes[..]).map_err(io(&path))?;
    meta.model_bytes = bytes.len() as u64;
    meta.model_md5 = md5_hex(&bytes);
    let p = dir.join(CONFIG_FILE);
    std::fs::write(&p, config.to_toml()).map_err(io(&p))?;
    let p = dir.join(META_FILE);
    std::fs::write(
        &p,
        serde_json::to_string_pretty(&meta).expect("meta serialises"),
    )
    .map_err(io(&p))?;
    Ok(meta)
}

/// Reads the config and metadata of the checkpoint in `dir` (not the weights).
pub fn read(dir: &Path) -> Result<Checkpoint> {
    let bad = |path: PathBuf, reason: String| TrainError::Checkpoint { path, reason };
    let meta_path = dir.join(META_FILE);
    if !meta_path.is_file() {
        return Err(bad(
            meta_path,
            "missing: not a quantlab checkpoint folder (train one with `quantlab train --out DIR`)"
                .into(),
        ));
    }
    let text = std::fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
    let meta: CheckpointMeta = serde_json::from_str(&text)
        .map_err(|e| bad(meta_path.clone(), format!("corrupt metadata: {e}")))?;
    let config = TrainConfig::from_toml_file(&dir.join(CONFIG_FILE))?;
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        config,
        meta,
    })
}

/// Loads the checkpoint in `dir` onto `device`: metadata, then the verified record.
pub fn load(dir: &Path, device: &Device) -> Result<(Checkpoint, Classifier)> {
    let ck = read(dir)?;
    let path = ck.model_path();
    let bad = |reason: String| TrainError::Checkpoint {
        path: path.clone(),
        reason,
    };
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    if bytes.len() as u64 != ck.meta.model_bytes {
        return Err(bad(format!(
            "{} bytes, but {} were written ({})",
            bytes.len(),
            ck.meta.model_bytes,
            if (bytes.len() as u64) < ck.meta.model_bytes {
                "truncated"
            } else {
                "extra bytes"
            }
        )));
    }
    let md5 = md5_hex(&bytes);
    if md5 != ck.meta.model_md5 {
        return Err(bad(format!(
            "MD5 {md5} differs from the {} recorded at save time: the file is corrupt",
            ck.meta.model_md5
        )));
    }
    // The record holds every parameter in at least one byte (int8 for burn-weights, f32
    // otherwise): metadata that declares more cannot match it, and building it first would
    // let a damaged checkpoint.json size the allocation.
    let params = ck
        .meta
        .model
        .param_count(&ck.meta.input_shape, ck.meta.classes);
    if params.is_none_or(|p| p as u64 > ck.meta.model_bytes) {
        return Err(TrainError::Checkpoint {
            path: ck.dir.join(META_FILE),
            reason: format!(
                "its architecture ({:?} on input {:?}, {} classes) has more parameters than the {} bytes of {MODEL_FILE} can hold",
                ck.meta.model, ck.meta.input_shape, ck.meta.classes, ck.meta.model_bytes
            ),
        });
    }
    let model = ck
        .meta
        .model
        .build(&ck.meta.input_shape, ck.meta.classes, 0, device)?;
    let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| bad(e.to_string()))?;
    let model = model
        .try_load_record(record)
        .map_err(|e| bad(e.to_string()))?;
    Ok((ck, model))
}

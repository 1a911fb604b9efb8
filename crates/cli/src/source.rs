//! What `quantize` and `eval` start from: a checkpoint folder written by `quantlab train`, or
//! a float ONNX file trained elsewhere (`crates/import`), with the data it is scored on.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use quantlab_data::npy as npy_file;
use quantlab_data::{DataOptions, DatasetName, LabeledSet, Normalize, Splits, load};
use quantlab_models::Classifier;
use quantlab_quant::{Graph, Network};
use quantlab_train::{Checkpoint, checkpoint};

/// A float model ready to quantize or score.
pub struct Source {
    /// The checkpoint folder or the ONNX file.
    pub origin: PathBuf,
    /// The model's name in reports: the architecture, or the ONNX file's stem.
    pub label: String,
    /// What it is calibrated and scored on: the dataset's name, or `npy`.
    pub data: String,
    /// The network.
    pub net: Network,
    /// The dataset's splits, normalised as the model expects (QAT trains on them); `None`
    /// when the data is `.npy` files only.
    pub splits: Option<Splits>,
    /// Calibration inputs: their count and flat values.
    pub calib: (usize, Vec<f32>),
    /// Labelled samples for the sensitivities and `--max-drop` (held out from training and
    /// calibration); `None` with `.npy` data only.
    pub val: Option<LabeledSet>,
    /// Evaluation samples.
    pub test: LabeledSet,
    /// Provenance for the files written from it.
    pub provenance: serde_json::Value,
    /// Size of the float original (burn record or ONNX file) and what it is.
    pub original: (u64, &'static str),
    /// The burn checkpoint, when the source is one (`burn-weights` needs it).
    pub checkpoint: Option<(Checkpoint, Classifier)>,
    /// Per network node, the name of the ONNX node it came from (imported models).
    pub node_names: Option<Vec<String>>,
}

/// The graph ops' names per network node: a dense op or Add and the ReLU fused after it
/// are one node.
fn node_names(graph: &Graph, names: &[String]) -> Vec<String> {
    quantlab_quant::network::first_ops(graph)
        .into_iter()
        .map(|i| names[i].clone())
        .collect()
}

/// `.npy` data for an ONNX model: calibration inputs, and evaluation inputs with labels.
#[derive(Debug, Clone, Default)]
pub struct NpyData {
    /// `--calib-npy`.
    pub calib: Option<PathBuf>,
    /// `--eval-npy` and `--labels`.
    pub eval: Option<(PathBuf, PathBuf)>,
}

impl NpyData {
    /// From the flags, checking that `--eval-npy` and `--labels` come together.
    pub fn new(
        calib: Option<PathBuf>,
        eval: Option<PathBuf>,
        labels: Option<PathBuf>,
    ) -> Result<Self> {
        let eval = match (eval, labels) {
            (Some(x), Some(y)) => Some((x, y)),
            (None, None) => None,
            (Some(_), None) => bail!("--eval-npy needs --labels (a .npy of class indices)"),
            (None, Some(_)) => bail!("--labels goes with --eval-npy"),
        };
        Ok(Self { calib, eval })
    }

    fn any(&self) -> bool {
        self.calib.is_some() || self.eval.is_some()
    }
}

/// True for a path quantlab reads as an ONNX model.
pub fn is_onnx(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Opens `path`. `dataset` and `normalize` apply to ONNX files (a checkpoint knows its
/// dataset and was trained with the dataset's normalisation).
pub fn open(
    path: &Path,
    dataset: Option<DatasetName>,
    normalize: Normalize,
    npy: &NpyData,
    data_dir: Option<&Path>,
) -> Result<Source> {
    if is_onnx(path) {
        open_onnx(path, dataset, normalize, npy, data_dir)
    } else {
        if npy.any() {
            bail!(
                "--calib-npy and --eval-npy apply to ONNX models; {} is scored on the dataset it was trained on",
                path.display()
            );
        }
        if normalize != Normalize::Dataset {
            bail!(
                "--normalize applies to ONNX models; {} was trained by quantlab with the dataset's normalisation",
                path.display()
            );
        }
        open_checkpoint(path, dataset, data_dir)
    }
}

fn open_checkpoint(
    path: &Path,
    dataset: Option<DatasetName>,
    data_dir: Option<&Path>,
) -> Result<Source> {
    let device = burn::tensor::Device::flex();
    let (ck, model) = checkpoint::load(path, &device)?;
    if let Some(d) = dataset
        && d != ck.config.dataset
    {
        bail!(
            "{} was trained on {}; --dataset {d} applies to ONNX models",
            path.display(),
            ck.config.dataset
        );
    }
    let splits = crate::quantize_cmd::checkpoint_data(&ck, data_dir)?;
    let net = Network::from_graph(&model.to_graph(&ck.meta.input_shape)?)?;
    Ok(Source {
        origin: ck.dir.clone(),
        label: ck.meta.model.kind.to_string(),
        data: ck.meta.dataset.to_string(),
        net,
        calib: (splits.train.len(), splits.train.features.clone()),
        val: Some(splits.val.clone()),
        test: splits.test.clone(),
        splits: Some(splits),
        provenance: ck.provenance(),
        original: (ck.meta.model_bytes, "burn f32 record"),
        checkpoint: Some((ck, model)),
        node_names: None,
    })
}

fn open_onnx(
    path: &Path,
    dataset: Option<DatasetName>,
    normalize: Normalize,
    npy: &NpyData,
    data_dir: Option<&Path>,
) -> Result<Source> {
    let imported = quantlab_import::import_onnx(path)?;
    let shape = &imported.graph.input_shape;
    if npy.any() && normalize != Normalize::Dataset {
        bail!(
            "--normalize applies to the built-in datasets; .npy inputs are used as stored (preprocess them as the model expects)"
        );
    }
    if dataset.is_none() && npy.eval.is_none() {
        bail!(
            "{}: an ONNX model needs --dataset (its input is {shape:?} per sample; quantlab's datasets: mnist and fashion-mnist are [1, 28, 28], digits [1, 8, 8]), or .npy data: --eval-npy with --labels (and --calib-npy to quantize)",
            path.display()
        );
    }
    println!(
        "imported {} (opset {}, input '{}' {shape:?}): {} layers",
        path.display(),
        imported.opset,
        imported.input_name,
        imported.graph.ops.len()
    );
    for note in &imported.notes {
        println!("  {note}");
    }
    let net = Network::from_graph(&imported.graph)?;
    let classes = net.out_len();
    let splits = match dataset {
        Some(dataset) => {
            let opts = DataOptions {
                data_dir: data_dir.map(Path::to_path_buf),
                ..DataOptions::default()
            };
            let mut splits = load(dataset, &opts).with_context(|| format!("loading {dataset}"))?;
            if &splits.train.sample_shape != shape {
                bail!(
                    "{dataset} samples have shape {:?} but the model in {} takes {shape:?}",
                    splits.train.sample_shape,
                    path.display()
                );
            }
            splits
                .renormalize(normalize)
                .map_err(|e| anyhow::anyhow!("--normalize {normalize}: {e}"))?;
            println!(
                "  inputs: {dataset}, normalised {} (mean {}, std {}; --normalize to change)",
                match normalize {
                    Normalize::Dataset => "as quantlab trains (the dataset's statistics)",
                    Normalize::None => "not at all (raw values)",
                    Normalize::MeanStd(..) => "with the given mean and std",
                },
                splits.normalization.mean[0],
                splits.normalization.std[0]
            );
            Some(splits)
        }
        None => None,
    };
    let calib = match (&npy.calib, &splits) {
        (Some(p), _) => {
            let c = npy_file::inputs(p, shape)?;
            println!(
                "  calibration: {} inputs from {}, used as stored",
                c.0,
                p.display()
            );
            c
        }
        (None, Some(s)) => (s.train.len(), s.train.features.clone()),
        // Scoring needs none; `quantize` refuses an empty calibration set.
        (None, None) => (0, Vec::new()),
    };
    let test = match (&npy.eval, &splits) {
        (Some((x, y)), _) => {
            let t = npy_file::labeled_set(x, y, shape, classes)?;
            println!(
                "  evaluation: {} inputs from {} with labels from {}, used as stored",
                t.len(),
                x.display(),
                y.display()
            );
            t
        }
        (None, Some(s)) => s.test.clone(),
        (None, None) => bail!("no evaluation data: give --dataset or --eval-npy with --labels"),
    };
    let val = splits.as_ref().map(|s| s.val.clone());
    let label = path
        .file_stem()
        .map_or("onnx".into(), |s| s.to_string_lossy().into_owned());
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let provenance = serde_json::json!({
        "onnx": path.display().to_string(),
        "dataset": dataset,
        "model": label,
        "classes": classes,
        "input_normalize": normalize.to_string(),
        "npy": npy.any(),
        "split_seed": 0,
        "layer_names": imported.names,
    });
    Ok(Source {
        origin: path.to_path_buf(),
        label,
        data: dataset.map_or("npy".into(), |d| d.to_string()),
        net,
        splits,
        calib,
        val,
        test,
        provenance,
        original: (bytes, "ONNX f32 file"),
        checkpoint: None,
        node_names: Some(node_names(&imported.graph, &imported.names)),
    })
}

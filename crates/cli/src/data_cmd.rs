//! `quantlab data`: load and validate datasets, print what was found.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use quantlab_data::{
    DataError, DataOptions, DatasetName, LabeledSet, Normalize, Splits, load, npy,
};

/// Loads `only` (or every dataset), printing a summary of each; a dataset that is simply
/// absent is noted and skipped unless it was asked for by name. With `npy_out`, also writes
/// the normalised arrays other tools read (see [`write_npy`]), at `normalize`.
pub fn run(
    data_dir: Option<PathBuf>,
    only: Option<DatasetName>,
    npy_out: Option<PathBuf>,
    npy_train: usize,
    normalize: Normalize,
) -> Result<()> {
    if npy_out.is_some() && only.is_none() {
        bail!("--npy-out needs --dataset");
    }
    if normalize != Normalize::Dataset && npy_out.is_none() {
        bail!("--normalize applies to the --npy-out arrays; give --npy-out too");
    }
    let opts = DataOptions {
        data_dir,
        ..DataOptions::default()
    };
    let names: Vec<DatasetName> = match only {
        Some(n) => vec![n],
        None => DatasetName::ALL.to_vec(),
    };
    for name in names {
        match load(name, &opts) {
            Ok(mut s) => {
                print_summary(&s);
                if let Some(dir) = &npy_out {
                    s.renormalize(normalize)
                        .map_err(|e| anyhow::anyhow!("--normalize {normalize}: {e}"))?;
                    if normalize != Normalize::Dataset {
                        println!("  --npy-out arrays normalised with {normalize}");
                    }
                    write_npy(&s, dir, npy_train)?;
                }
            }
            Err(e @ DataError::NotFound { .. }) if only.is_none() => {
                println!("{name:<14} skipped: {e}");
            }
            Err(e) => return Err(e).with_context(|| format!("loading {name}")),
        }
    }
    Ok(())
}

fn print_summary(s: &Splits) {
    let from = s
        .source
        .as_ref()
        .map_or("generated (seeded)".to_string(), |p| {
            p.display().to_string()
        });
    println!("{:<14} from {from}", s.name.as_str());
    for (side, set) in [("train", &s.train), ("val", &s.val), ("test", &s.test)] {
        let counts: Vec<String> = set.class_counts().iter().map(|c| c.to_string()).collect();
        println!(
            "  {side:<5} {:>6} samples of {:?}, {} classes: {}",
            set.len(),
            set.sample_shape,
            set.num_classes,
            counts.join(" ")
        );
    }
    let stat = |v: &[f32]| {
        if v.len() == 1 {
            format!("{:.4}", v[0])
        } else {
            format!("per feature ({} values)", v.len())
        }
    };
    println!(
        "  normalisation (all training data, validation included): mean {}, std {}",
        stat(&s.normalization.mean),
        stat(&s.normalization.std)
    );
    for w in &s.warnings {
        println!("  warning: {w}");
    }
}

/// Writes `<dataset>-{train,test}-{x,y}.npy` into `dir`: the first `train_n` training samples
/// (what quantlab calibrates on) and the whole test split, normalised exactly as quantlab
/// feeds its models, so ONNX Runtime calibrates and scores on the same inputs.
fn write_npy(s: &Splits, dir: &std::path::Path, train_n: usize) -> Result<()> {
    if !dir.is_dir() {
        bail!("--npy-out {}: no such folder", dir.display());
    }
    let name = s.name.as_str();
    let sets: [(&str, LabeledSet); 2] =
        [("train", s.train.take(train_n)), ("test", s.test.clone())];
    for (side, set) in sets {
        let mut shape = vec![set.len()];
        shape.extend(&set.sample_shape);
        let x = dir.join(format!("{name}-{side}-x.npy"));
        npy::write(&x, &shape, &set.features)?;
        let labels: Vec<i64> = set.labels.iter().map(|&l| l as i64).collect();
        npy::write(
            &dir.join(format!("{name}-{side}-y.npy")),
            &[set.len()],
            &labels,
        )?;
        println!("  wrote {} ({shape:?})", x.display());
    }
    Ok(())
}

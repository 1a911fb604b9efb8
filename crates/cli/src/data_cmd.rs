//! `quantlab data`: load and validate datasets, print what was found.

use std::path::PathBuf;

use anyhow::{Context, Result};
use quantlab_data::{DataError, DataOptions, DatasetName, Splits, load};

/// Loads `only` (or every dataset), printing a summary of each; a dataset that is simply
/// absent is noted and skipped unless it was asked for by name.
pub fn run(data_dir: Option<PathBuf>, only: Option<DatasetName>) -> Result<()> {
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
            Ok(s) => print_summary(&s),
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
    for (side, set) in [("train", &s.train), ("test", &s.test)] {
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
        "  normalisation (training split): mean {}, std {}",
        stat(&s.normalization.mean),
        stat(&s.normalization.std)
    );
    for w in &s.warnings {
        println!("  warning: {w}");
    }
}

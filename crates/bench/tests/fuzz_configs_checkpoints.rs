//! The TOML configs (`configs/train/*.toml`, `configs/bench.toml`) and the checkpoint folder
//! under mutation: every truncation, seeded bit flips, byte runs, deletions and
//! duplications, every number set to 0, 1, huge, negative and fractional. For checkpoints,
//! `checkpoint.json` is mutated on its own, and `model.bpk` is damaged with the recorded size
//! and MD5 rewritten to match, so that burn's record reader itself sees the damage. No input
//! may panic quantlab or make it allocate more than ten times the file plus a fixed bound.

use std::path::Path;

use burn::tensor::Device;
use md5::{Digest, Md5};
use quantlab_bench::BenchConfig;
use quantlab_data::{DatasetName, load};
use quantlab_models::{ModelKind, ModelSpec};
use quantlab_testkit::check_reader;
use quantlab_testkit::mutate::{Rng, cases, json_number_cases, random_mutation};
use quantlab_train::{FitOptions, TrainConfig, checkpoint, fit};

#[global_allocator]
static ALLOC: quantlab_testkit::PeakAlloc = quantlab_testkit::PeakAlloc;

const RANDOM: usize = 1500;
/// burn's model, its record and the device's buffers for a digits model on top of 10 x the
/// file (the model's weights are bounded by the record's size, which is checked first).
const FIXED: usize = 64 << 20;

fn configs() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn toml_cases(seed: &[u8], rng: u64) -> Vec<Vec<u8>> {
    let mut all = cases(seed, &[], RANDOM, rng);
    all.extend(json_number_cases(seed, 0..seed.len()));
    all
}

#[test]
fn train_and_bench_configs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    let seed = std::fs::read(configs().join("train/mnist-cnn.toml")).unwrap();
    check_reader("train config toml", &toml_cases(&seed, 41), FIXED, |b| {
        std::fs::write(&p, b).unwrap();
        TrainConfig::from_toml_file(&p)
    });
    let seed = std::fs::read(configs().join("bench.toml")).unwrap();
    check_reader("bench config toml", &toml_cases(&seed, 42), FIXED, |b| {
        std::fs::write(&p, b).unwrap();
        BenchConfig::load(&p)
    });
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn checkpoint_folders_never_panic_or_balloon() {
    let dir = tempfile::tempdir().unwrap();
    let c = TrainConfig {
        dataset: DatasetName::Digits,
        model: ModelSpec::of(ModelKind::Cnn),
        train_limit: Some(64),
        test_limit: Some(32),
        ..TrainConfig::default()
    };
    let s = load(DatasetName::Digits, &c.data_options(None)).unwrap();
    let opts = FitOptions {
        out: Some(dir.path()),
        ..Default::default()
    };
    fit(&c, &s, &Device::flex(), &opts).unwrap();
    let meta_path = dir.path().join(checkpoint::META_FILE);
    let bpk_path = dir.path().join(checkpoint::MODEL_FILE);
    let meta = std::fs::read(&meta_path).unwrap();
    let bpk = std::fs::read(&bpk_path).unwrap();
    let read = || checkpoint::load(dir.path(), &Device::flex()).map(drop);
    assert!(read().is_ok(), "the seed checkpoint loads");

    let o = check_reader("checkpoint.json", &toml_cases(&meta, 43), FIXED, |b| {
        std::fs::write(&meta_path, b).unwrap();
        read()
    });
    assert!(o.refused > 0, "{o:?}");
    std::fs::write(&meta_path, &meta).unwrap();

    // The record damaged, with its size and MD5 recorded as if it had been written so.
    let v: serde_json::Value = serde_json::from_slice(&meta).unwrap();
    let mut rng = Rng::new(44);
    let damaged: Vec<Vec<u8>> = (0..400)
        .map(|_| random_mutation(&bpk, &[], &mut rng))
        .collect();
    let o = check_reader("model.bpk (size and MD5 matched)", &damaged, FIXED, |b| {
        let mut v = v.clone();
        v["model_bytes"] = b.len().into();
        v["model_md5"] = md5_hex(b).into();
        std::fs::write(&meta_path, serde_json::to_vec(&v).unwrap()).unwrap();
        std::fs::write(&bpk_path, b).unwrap();
        read()
    });
    assert!(o.cases == 400, "{o:?}");
}

//! The loaders on the real files: the shipped copies under `data/` and the verified copies
//! in `../shared/data/` (facts from its README). The shipped copies are the ground truth of
//! every clone, so a missing shipped file fails. Data that is not shipped (Fashion-MNIST, the
//! reference copies beside the clone) exists only on CI and developer machines: a test that
//! needs it follows the project's skip rule (`quantlab_testkit::skip`): one line and a return on
//! a fresh clone, a failure under CI (`CI` set), where the data is always present.

use std::path::{Path, PathBuf};

use quantlab_data::idx::{read_images, read_labels};
use quantlab_data::locate::{md5_warning, shipped_data_dir};
use quantlab_data::{DataOptions, DatasetName, load};
use quantlab_testkit::skip::existing_dir as present_or_skip;

const MNIST_TRAIN_FIRST: [u8; 10] = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4];
const MNIST_TEST_FIRST: [u8; 10] = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9];
const MNIST_TRAIN_COUNTS: [usize; 10] =
    [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
const FASHION_TRAIN_FIRST: [u8; 10] = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5];
const FASHION_TEST_FIRST: [u8; 10] = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7];
const DIGITS_COUNTS: [usize; 10] = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];
/// Tolerance on the MNIST normalisation statistics (published to 4 decimals).
const STAT_TOL: f32 = 1e-4;

/// `../shared/data` beside the clone (may be absent: the tests using it skip then).
fn shared_data() -> PathBuf {
    quantlab_testkit::shared_data_dir()
}

/// A folder holding `fashion-mnist/`: `$QUANTLAB_DATA_DIR`, the shared copy, or Debian's
/// package; `None` (after a one-line note) on a machine that has none of them.
fn fashion_root(test: &str) -> Option<PathBuf> {
    let roots: Vec<PathBuf> = std::env::var_os("QUANTLAB_DATA_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([shared_data(), PathBuf::from("/usr/share/datasets")])
        .collect();
    let dirs: Vec<PathBuf> = roots.iter().map(|r| r.join("fashion-mnist")).collect();
    present_or_skip(test, &dirs, "Fashion-MNIST (not shipped)")
        .and_then(|d| d.parent().map(Path::to_path_buf))
}

fn counts(labels: &[u8]) -> Vec<usize> {
    let mut c = vec![0; 10];
    labels.iter().for_each(|&l| c[l as usize] += 1);
    c
}

fn check_idx(
    dir: &Path,
    train_first: &[u8],
    test_first: &[u8],
    train_counts: &[usize],
    test_counts: &[usize],
) {
    let tr = read_labels(&dir.join("train-labels-idx1-ubyte.gz"), 10).unwrap();
    let te = read_labels(&dir.join("t10k-labels-idx1-ubyte.gz"), 10).unwrap();
    assert_eq!((tr.len(), te.len()), (60_000, 10_000));
    assert_eq!(&tr[..10], train_first);
    assert_eq!(&te[..10], test_first);
    assert_eq!(counts(&tr), train_counts);
    assert_eq!(counts(&te), test_counts);
    for (stem, n) in [("train", 60_000), ("t10k", 10_000)] {
        let im = read_images(&dir.join(format!("{stem}-images-idx3-ubyte.gz"))).unwrap();
        assert_eq!((im.count, im.rows, im.cols), (n, 28, 28));
        assert_eq!(im.pixels.len(), n * 784);
        assert_eq!(im.pixels.iter().min(), Some(&0));
        assert_eq!(im.pixels.iter().max(), Some(&255));
    }
}

const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

#[test]
fn mnist_facts_and_md5_on_the_shipped_copy() {
    let dir = shipped_data_dir().join("mnist");
    check_idx(
        &dir,
        &MNIST_TRAIN_FIRST,
        &MNIST_TEST_FIRST,
        &MNIST_TRAIN_COUNTS,
        &MNIST_TEST_COUNTS,
    );
    for f in MNIST_FILES {
        assert_eq!(md5_warning("mnist", &dir.join(f)), None, "{f}");
    }
}

#[test]
fn mnist_facts_on_the_shared_copy_and_md5() {
    let test = "mnist_facts_on_the_shared_copy_and_md5";
    let Some(dir) = present_or_skip(test, &[shared_data().join("mnist")], "../shared/data") else {
        return;
    };
    check_idx(
        &dir,
        &MNIST_TRAIN_FIRST,
        &MNIST_TEST_FIRST,
        &MNIST_TRAIN_COUNTS,
        &MNIST_TEST_COUNTS,
    );
    for f in MNIST_FILES {
        assert_eq!(md5_warning("mnist", &dir.join(f)), None, "{f}");
    }
}

#[test]
fn fashion_mnist_facts_and_md5() {
    let Some(root) = fashion_root("fashion_mnist_facts_and_md5") else {
        return;
    };
    let dir = root.join("fashion-mnist");
    check_idx(
        &dir,
        &FASHION_TRAIN_FIRST,
        &FASHION_TEST_FIRST,
        &[6000; 10],
        &[1000; 10],
    );
    for f in ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        assert_eq!(md5_warning("fashion-mnist", &dir.join(f)), None, "{f}");
    }
}

#[test]
fn mnist_loads_normalised_with_training_statistics() {
    let s = load(DatasetName::Mnist, &DataOptions::default()).unwrap();
    // The validation split is 10% of every class of the 60,000 training images.
    assert_eq!(
        (s.train.len(), s.val.len(), s.test.len()),
        (54_000, 6_000, 10_000)
    );
    assert_eq!(s.train.sample_shape, vec![1, 28, 28]);
    assert!(
        (s.normalization.mean[0] - 0.1307).abs() < STAT_TOL,
        "{:?}",
        s.normalization
    );
    assert!(
        (s.normalization.std[0] - 0.3081).abs() < STAT_TOL,
        "{:?}",
        s.normalization
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    let min = s
        .train
        .features
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min);
    assert!((min - (-0.1307 / 0.3081)).abs() < 1e-3, "{min}");
    let both: Vec<usize> = s
        .train
        .class_counts()
        .iter()
        .zip(s.val.class_counts())
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(both, MNIST_TRAIN_COUNTS);
    for (v, all) in s.val.class_counts().iter().zip(MNIST_TRAIN_COUNTS) {
        assert_eq!(*v, (all as f64 * 0.1).round() as usize, "stratified");
    }
}

#[test]
fn validation_split_is_seeded_disjoint_and_configurable() {
    let a = load(DatasetName::Digits, &DataOptions::default()).unwrap();
    let b = load(DatasetName::Digits, &DataOptions::default()).unwrap();
    assert_eq!(a.val, b.val, "same seed, same split");
    // No validation sample is also a training sample (digits has duplicate-free rows).
    let d = a.train.dim();
    let train: std::collections::HashSet<Vec<u32>> = (0..a.train.len())
        .map(|i| a.train.sample(i).iter().map(|x| x.to_bits()).collect())
        .collect();
    let overlap = (0..a.val.len())
        .filter(|&i| {
            train.contains(
                &a.val
                    .sample(i)
                    .iter()
                    .map(|x| x.to_bits())
                    .collect::<Vec<_>>(),
            )
        })
        .count();
    assert!(
        overlap <= 2,
        "{overlap} of {} validation samples (dim {d}) also train",
        a.val.len()
    );
    let other = load(
        DatasetName::Digits,
        &DataOptions {
            split_seed: 5,
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(a.val, other.val);
    let quarter = load(
        DatasetName::Digits,
        &DataOptions {
            val_fraction: 0.25,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(quarter.val.len() > a.val.len() * 2);
    for bad in [0.0, 1.0, -0.1, f64::NAN] {
        let e = load(
            DatasetName::Digits,
            &DataOptions {
                val_fraction: bad,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("val_fraction"), "{e}");
    }
}

#[test]
fn fashion_mnist_loads_from_an_explicit_data_dir() {
    let Some(root) = fashion_root("fashion_mnist_loads_from_an_explicit_data_dir") else {
        return;
    };
    let opts = DataOptions {
        data_dir: Some(root.clone()),
        ..Default::default()
    };
    let s = load(DatasetName::FashionMnist, &opts).unwrap();
    assert_eq!(s.test.class_counts(), vec![1000; 10]);
    assert_eq!(s.source, Some(root.join("fashion-mnist")));
}

#[test]
fn digits_facts_and_split() {
    let s = load(DatasetName::Digits, &DataOptions::default()).unwrap();
    assert_eq!(s.train.len() + s.val.len() + s.test.len(), 1797);
    let total: Vec<usize> = s
        .train
        .class_counts()
        .iter()
        .zip(s.val.class_counts())
        .zip(s.test.class_counts())
        .map(|((a, v), b)| a + v + b)
        .collect();
    assert_eq!(total, DIGITS_COUNTS);
    assert_eq!(s.train.sample_shape, vec![1, 8, 8]);
    assert!(
        (s.test.len() as f64 - 1797.0 * 0.2).abs() <= 10.0,
        "{}",
        s.test.len()
    );
    // Normalised with the statistics of all training data (validation included).
    let all: Vec<f32> = s
        .train
        .features
        .iter()
        .chain(&s.val.features)
        .copied()
        .collect();
    let mean = all.iter().sum::<f32>() / all.len() as f32;
    assert!(mean.abs() < 1e-4, "training data is not centred: {mean}");
}

#[test]
fn missing_dataset_error_says_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let opts = DataOptions {
        data_dir: Some(empty.path().to_path_buf()),
        ..Default::default()
    };
    let err = load(DatasetName::FashionMnist, &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&empty.path().join("fashion-mnist").display().to_string()),
        "{err}"
    );
    assert!(err.contains("dataset-fashion-mnist"), "{err}");
}

#[test]
fn label_count_that_disagrees_with_images_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("mnist");
    std::fs::create_dir(&m).unwrap();
    let src = shipped_data_dir().join("mnist");
    for f in [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ] {
        std::fs::copy(src.join(f), m.join(f)).unwrap();
    }
    // Test labels: a valid IDX file with 9,999 labels against 10,000 images.
    let mut labels = 0x0801u32.to_be_bytes().to_vec();
    labels.extend(9_999u32.to_be_bytes());
    labels.extend(std::iter::repeat_n(1u8, 9_999));
    std::fs::write(m.join("t10k-labels-idx1-ubyte"), labels).unwrap();
    let opts = DataOptions {
        data_dir: Some(d.path().to_path_buf()),
        ..Default::default()
    };
    let err = load(DatasetName::Mnist, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            quantlab_data::DataError::CountMismatch {
                n_images: 10_000,
                n_labels: 9_999,
                ..
            }
        ),
        "{err}"
    );
}

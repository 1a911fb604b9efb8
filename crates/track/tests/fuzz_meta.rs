//! Reading an MLflow store's experiment `meta.yaml` (what `Store::experiment` and
//! `find_experiment` scan) under mutation: every truncation, seeded bit flips, byte runs,
//! deletions and duplications, every number set to 0, 1, huge, negative and fractional,
//! and YAML's alias bomb. The seed is a file the store wrote, which MLflow reads. No
//! input may panic the store or make it allocate more than ten times the file plus a fixed
//! bound; a file it cannot read is an error naming it.

use quantlab_testkit::check_reader;
use quantlab_testkit::mutate::{cases, json_number_cases};
use quantlab_track::Store;

#[global_allocator]
static ALLOC: quantlab_testkit::PeakAlloc = quantlab_testkit::PeakAlloc;

const RANDOM: usize = 3000;
/// The store's own scan (directory listing, paths) on top of 10 x the file.
const FIXED: usize = 4 << 20;

#[test]
fn experiment_meta_yaml_never_panics_or_balloons() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let id = store.experiment("fuzz: a \"quoted\" name").unwrap();
    let meta = dir.path().join(id.as_str()).join("meta.yaml");
    let seed = std::fs::read(&meta).unwrap();
    let mut all = cases(&seed, &[], RANDOM, 31);
    all.extend(json_number_cases(&seed, 0..seed.len()));
    // A billion-laughs alias bomb: nine levels of nine aliases.
    let mut bomb = String::from("a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n");
    for l in 1..9u8 {
        let prev = (b'a' + l - 1) as char;
        let cur = (b'a' + l) as char;
        bomb.push_str(&format!(
            "{cur}: &{cur} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    bomb.push_str("name: x\nexperiment_id: '1'\n");
    all.push(bomb.into_bytes());
    // The store skips an experiment whose meta.yaml it cannot read, as MLflow does; such
    // a case counts as refused here (the experiment is not found).
    let o = check_reader("mlflow meta.yaml", &all, FIXED, |b| {
        std::fs::write(&meta, b).unwrap();
        match store.find_experiment("fuzz: a \"quoted\" name") {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err("experiment not found: its meta.yaml was skipped".to_string()),
            Err(e) => Err(e.to_string()),
        }
    });
    assert!(o.accepted > 0 && o.refused > 0, "{o:?}");
}

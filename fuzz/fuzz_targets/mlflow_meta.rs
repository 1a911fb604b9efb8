//! An MLflow file store's experiment `meta.yaml`, as `Store::find_experiment` reads it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quantlab_track::Store;

const NAME: &str = "fuzz";

/// One store per process; each input replaces its experiment's meta.yaml.
fn store() -> &'static (tempfile::TempDir, Store, std::path::PathBuf) {
    static S: OnceLock<(tempfile::TempDir, Store, std::path::PathBuf)> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let id = store.experiment(NAME).unwrap();
        let meta = dir.path().join(id.as_str()).join("meta.yaml");
        (dir, store, meta)
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, store, meta) = store();
    std::fs::write(meta, data).unwrap();
    let _ = store.find_experiment(NAME);
});

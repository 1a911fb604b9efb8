//! An MLflow file store's experiment `meta.yaml`, parsed as `Store::find_experiment` parses
//! it (UTF-8, then the YAML fields), from memory: writing a file per input ran at a fifth
//! of the speed. `crates/track/tests/fuzz_meta.rs` covers the path through the store.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quantlab_track::experiment_meta_from_bytes(Path::new("meta.yaml"), data);
});

//! An `.onnx` file as `quantlab inspect` reads it: decode, then the structural check.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = quantlab_onnx::decode(Path::new("model.onnx"), data) {
        let _ = quantlab_onnx::check(&m);
    }
});

//! quantlab's int8 model file (safetensors + JSON metadata), then what `eval` does with an
//! accepted one: prepare an engine session and run one sample.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quantlab_quant::export::from_bytes;
use quantlab_quant::{Engine, KernelPath};

fuzz_target!(|data: &[u8]| {
    let Ok((model, _)) = from_bytes(data, Path::new("model.safetensors")) else {
        return;
    };
    let engine = Engine {
        path: KernelPath::Scalar,
        threads: 1,
    };
    if let Ok(session) = engine.prepare(&model) {
        let x = vec![0f32; model.network.in_len()];
        let _ = session.run(&x, 1);
    }
});

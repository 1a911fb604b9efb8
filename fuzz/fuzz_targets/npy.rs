//! NumPy `.npy` arrays (a user's calibration and evaluation data), read as features and as
//! labels.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quantlab_data::npy::Npy;

fuzz_target!(|data: &[u8]| {
    let p = Path::new("x.npy");
    if let Ok(n) = Npy::from_bytes(data.to_vec(), p) {
        let _ = n.to_f32(p);
        let _ = n.to_labels(p, 10);
    }
});

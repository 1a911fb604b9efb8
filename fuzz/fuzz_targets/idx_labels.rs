//! IDX label files, raw or gzip'd (MNIST's `*-labels-idx1-ubyte[.gz]`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quantlab_data::bytes::decode_maybe_gz;
use quantlab_data::idx::labels_from_bytes;

fuzz_target!(|data: &[u8]| {
    let p = Path::new("labels.idx");
    let _ = decode_maybe_gz(data.to_vec(), p).and_then(|b| labels_from_bytes(b, p, 10));
});

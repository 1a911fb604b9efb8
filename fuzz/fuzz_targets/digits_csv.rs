//! The 8x8 digits CSV, raw or gzip'd.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use quantlab_data::bytes::decode_maybe_gz;
use quantlab_data::digits::digits_from_bytes;

fuzz_target!(|data: &[u8]| {
    let p = Path::new("digits.csv");
    let _ = decode_maybe_gz(data.to_vec(), p).and_then(|b| digits_from_bytes(&b, p));
});

//! The data readers under structure-aware mutation (`quantlab_testkit::mutate`): IDX images
//! and labels, raw and gzip'd, the digits CSV and NumPy `.npy`. Seeds are cut from the shipped files (the
//! first samples, with the header's count set to match). No input may panic a reader or make
//! it allocate more than ten times its size plus a fixed bound; every refusal must say
//! something. The `fuzz/` crate runs the same readers under libFuzzer for longer.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use quantlab_data::bytes::decode_maybe_gz;
use quantlab_data::digits::digits_from_bytes;
use quantlab_data::idx::{images_from_bytes, labels_from_bytes};
use quantlab_data::npy::{Npy, encode};
use quantlab_testkit::check_reader;
use quantlab_testkit::mutate::{Field, cases, json_number_cases};

#[global_allocator]
static ALLOC: quantlab_testkit::PeakAlloc = quantlab_testkit::PeakAlloc;

/// Random mutations per seed (on top of every truncation and every field value).
const RANDOM: usize = 3000;
/// Allocation allowed beyond 10 x the input: a gzip member may expand (deflate's ratio is
/// at most 1032:1, so a mutated seed of a few KB stays far below this).
const FIXED: usize = 16 << 20;

fn shipped(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(rel)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// The first `n` records of an IDX file with `ndims` dimensions, count set to `n`.
fn idx_prefix(path: &Path, ndims: usize, n: u32) -> Vec<u8> {
    let all = gunzip(path);
    let header = 4 + 4 * ndims;
    let per: usize = (1..ndims)
        .map(|i| u32::from_be_bytes(all[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .product();
    let mut b = all[..header + per * n as usize].to_vec();
    b[4..8].copy_from_slice(&n.to_be_bytes());
    b
}

fn idx_fields(ndims: usize) -> Vec<Field> {
    (0..=ndims).map(|i| Field::be(4 * i, 4)).collect()
}

#[test]
fn idx_images_never_panic_or_balloon() {
    let seed = idx_prefix(&shipped("mnist/t10k-images-idx3-ubyte.gz"), 3, 4);
    let p = Path::new("images.idx");
    let o = check_reader(
        "idx images",
        &cases(&seed, &idx_fields(3), RANDOM, 1),
        FIXED,
        |b| images_from_bytes(decode_maybe_gz(b.to_vec(), p)?, p),
    );
    assert!(o.accepted >= 1 && o.refused > o.cases / 2, "{o:?}");
}

#[test]
fn idx_labels_never_panic_or_balloon() {
    let seed = idx_prefix(&shipped("mnist/t10k-labels-idx1-ubyte.gz"), 1, 64);
    let p = Path::new("labels.idx");
    let o = check_reader(
        "idx labels",
        &cases(&seed, &idx_fields(1), RANDOM, 2),
        FIXED,
        |b| labels_from_bytes(decode_maybe_gz(b.to_vec(), p)?, p, 10),
    );
    assert!(o.accepted >= 1 && o.refused > 0, "{o:?}");
}

#[test]
fn gzipped_idx_never_panics_or_balloons() {
    let seed = gzip(&idx_prefix(
        &shipped("mnist/t10k-images-idx3-ubyte.gz"),
        3,
        2,
    ));
    // gzip's header fields: flags, mtime, and the trailer's CRC and size.
    let n = seed.len();
    let fields = [
        Field::le(3, 1),
        Field::le(4, 4),
        Field::le(n - 8, 4),
        Field::le(n - 4, 4),
    ];
    let p = Path::new("images.idx.gz");
    let o = check_reader("gzip idx", &cases(&seed, &fields, RANDOM, 3), FIXED, |b| {
        images_from_bytes(decode_maybe_gz(b.to_vec(), p)?, p)
    });
    assert!(o.accepted >= 1 && o.refused > o.cases / 2, "{o:?}");
}

#[test]
fn digits_csv_never_panics_or_balloons() {
    let text = gunzip(&shipped("digits/digits.csv.gz"));
    let lines: Vec<&[u8]> = text.split(|&c| c == b'\n').take(12).collect();
    let seed = lines.join(&b'\n');
    let p = Path::new("digits.csv");
    let o = check_reader("digits csv", &cases(&seed, &[], RANDOM, 4), FIXED, |b| {
        digits_from_bytes(&decode_maybe_gz(b.to_vec(), p)?, p)
    });
    assert!(o.accepted >= 1 && o.refused > 0, "{o:?}");
}

/// `.npy` features (u8 images as NumPy saves them, f32 as quantlab writes them) and int64
/// labels: the header's version byte and length field, every number in its shape, and
/// random mutations; whatever parses is converted as the commands convert it.
#[test]
fn npy_never_panics_or_balloons() {
    let images = idx_prefix(&shipped("mnist/t10k-images-idx3-ubyte.gz"), 3, 2)[16..].to_vec();
    let floats: Vec<f32> = images.iter().map(|&v| v as f32 / 255.0).collect();
    let labels: Vec<i64> = (0..32).map(|i| i % 10).collect();
    let seeds = [
        encode(&[2, 1, 28, 28], &images),
        encode(&[2, 784], &floats),
        encode(&[32], &labels),
    ];
    let p = Path::new("x.npy");
    let fields = [Field::le(6, 1), Field::le(8, 2)];
    for (i, seed) in seeds.iter().enumerate() {
        let hlen = u16::from_le_bytes([seed[8], seed[9]]) as usize;
        let mut all = cases(seed, &fields, RANDOM, 10 + i as u64);
        all.extend(json_number_cases(seed, 10..10 + hlen));
        let o = check_reader("npy", &all, FIXED, |b| {
            let n = Npy::from_bytes(b.to_vec(), p)?;
            n.to_f32(p)?;
            // The last seed holds labels.
            if i == 2 {
                n.to_labels(p, 10)?;
            }
            Ok::<_, quantlab_data::DataError>(())
        });
        assert!(o.accepted >= 1 && o.refused > o.cases / 2, "{o:?}");
    }
}

/// A gzip member that expands past the limit is refused, naming the limit, without holding
/// more than the limit.
#[test]
fn a_decompression_bomb_is_refused_at_the_limit() {
    let limit = quantlab_data::bytes::MAX_DECOMPRESSED_BYTES as usize;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(limit >> 20) + 1 {
        e.write_all(&zeros).unwrap();
    }
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < 4 << 20, "{}", bomb.len());
    let err = decode_maybe_gz(bomb, Path::new("bomb.gz"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bomb.gz") && err.contains("limit"), "{err}");
}

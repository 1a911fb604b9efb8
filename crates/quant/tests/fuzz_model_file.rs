//! The int8 model file reader (safetensors with quantlab's JSON metadata) under
//! structure-aware mutation: the header length, every number in the JSON metadata set to
//! 0, 1, huge and negative values, truncation at every length class, random bit flips. Seeds
//! are real files written by the exporter: a static int8 CNN (per channel) and a dynamic MLP.
//! No input may panic the reader, or the engine preparing and running what it accepted, or
//! make them allocate more than ten times the file plus a fixed bound.

use std::path::Path;

use quantlab_data::rng::Rng;
use quantlab_linalg::{ConvGeom, PoolGeom};
use quantlab_quant::export::{from_bytes, to_bytes};
use quantlab_quant::{
    BitWidths, Dense, Engine, Granularity, KernelPath, MethodKind, Network, Node, QuantizeOptions,
    quantize,
};
use quantlab_testkit::check_reader;
use quantlab_testkit::mutate::{Field, cases, json_number_cases};

#[global_allocator]
static ALLOC: quantlab_testkit::PeakAlloc = quantlab_testkit::PeakAlloc;

const RANDOM: usize = 2000;
/// Beyond 10 x the file: the engine's per-session buffers for one sample and its packed
/// weights (a few KB for these seeds; the bound leaves room for a file that declares the
/// largest shapes the reader allows but cannot back them with data).
const FIXED: usize = 16 << 20;

fn dense(rng: &mut Rng, conv: Option<ConvGeom>, k: usize, n: usize, relu: bool) -> Dense {
    Dense {
        conv,
        k,
        n,
        weight: (0..n * k).map(|_| rng.normal() as f32 * 0.3).collect(),
        bias: (0..n).map(|_| rng.normal() as f32 * 0.1).collect(),
        relu,
        cap: None,
        depthwise: false,
    }
}

/// 1x8x8 -> conv 1->4 3x3 pad 1 -> [conv 4->4, Add of the first conv's output, ReLU] ->
/// max pool 2 -> average pool 2 -> flatten -> 16 -> 10: every node kind a file can hold.
fn cnn() -> Network {
    let mut rng = Rng::new(5);
    let g = ConvGeom::new(1, [8, 8], [3, 3], [1, 1], [1, 1]).unwrap();
    let g2 = ConvGeom::new(4, [8, 8], [3, 3], [1, 1], [1, 1]).unwrap();
    let pool = PoolGeom::new(4, [8, 8], [2, 2], [2, 2]).unwrap();
    let avg = PoolGeom::new(4, [4, 4], [2, 2], [2, 2]).unwrap();
    Network::from_nodes(
        vec![1, 8, 8],
        vec![
            Node::Dense(dense(&mut rng, Some(g), 9, 4, true)),
            Node::Dense(dense(&mut rng, Some(g2), 36, 4, false)),
            Node::Add {
                from: 1,
                relu: true,
            },
            Node::MaxPool(pool),
            Node::AvgPool(avg),
            Node::Flatten,
            Node::Dense(dense(&mut rng, None, 16, 10, false)),
        ],
    )
    .unwrap()
}

fn mlp() -> Network {
    let mut rng = Rng::new(6);
    Network::from_nodes(
        vec![12],
        vec![
            Node::Dense(dense(&mut rng, None, 12, 6, true)),
            Node::Dense(dense(&mut rng, None, 6, 3, false)),
        ],
    )
    .unwrap()
}

fn file(net: &Network, method: MethodKind, granularity: Granularity) -> Vec<u8> {
    file_bits(net, method, granularity, BitWidths::default())
}

fn file_bits(
    net: &Network,
    method: MethodKind,
    granularity: Granularity,
    bits: BitWidths,
) -> Vec<u8> {
    let mut rng = Rng::new(9);
    let calib: Vec<f32> = (0..32 * net.in_len())
        .map(|_| rng.normal() as f32)
        .collect();
    let engine = Engine {
        path: KernelPath::Scalar,
        threads: 1,
    };
    let opts = QuantizeOptions {
        method,
        granularity,
        bits,
        ..Default::default()
    };
    let q = quantize(net, &opts, &calib, &engine).unwrap();
    to_bytes(&q, serde_json::json!({"dataset": "fuzz"})).unwrap()
}

/// Reads, prepares a session and runs one sample of zeros through it.
fn read_prepare_run(bytes: &[u8]) -> Result<(), String> {
    let p = Path::new("model.safetensors");
    let (model, _) = from_bytes(bytes, p).map_err(|e| e.to_string())?;
    let engine = Engine {
        path: KernelPath::Scalar,
        threads: 1,
    };
    let session = engine.prepare(&model).map_err(|e| e.to_string())?;
    let x = vec![0f32; model.network.in_len()];
    session.run(&x, 1).map(drop).map_err(|e| e.to_string())
}

fn check(name: &str, seed: &[u8], rng_seed: u64) {
    // The safetensors header length (u64 LE), then every number in its JSON.
    let header_len = u64::from_le_bytes(seed[..8].try_into().unwrap()) as usize;
    let mut all = cases(seed, &[Field::le(0, 8)], RANDOM, rng_seed);
    all.extend(json_number_cases(seed, 8..8 + header_len));
    assert!(
        read_prepare_run(seed).is_ok(),
        "{name}: the seed itself reads"
    );
    let o = check_reader(name, &all, FIXED, read_prepare_run);
    assert!(o.refused > o.cases / 2, "{o:?}");
}

#[test]
fn static_cnn_files_never_panic_or_balloon() {
    check(
        "int8 file (static CNN)",
        &file(&cnn(), MethodKind::Static, Granularity::PerChannel),
        11,
    );
}

/// Inputs that once crashed a reader or the engine (`fuzz/`), kept as regression cases.
#[test]
fn former_fuzz_crashes_are_refused_or_run() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions");
    let cases: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!cases.is_empty());
    check_reader(
        "int8 file (former crashes)",
        &cases,
        FIXED,
        read_prepare_run,
    );
}

#[test]
fn dynamic_mlp_files_never_panic_or_balloon() {
    check(
        "int8 file (dynamic MLP)",
        &file(&mlp(), MethodKind::Dynamic, Granularity::PerTensor),
        12,
    );
}

#[test]
fn packed_low_bit_files_never_panic_or_balloon() {
    check(
        "int8 file (static CNN, 4-bit packed weights, 4-bit activations)",
        &file_bits(
            &cnn(),
            MethodKind::Static,
            Granularity::PerChannel,
            BitWidths::wa(4, 4),
        ),
        13,
    );
    check(
        "int8 file (static MLP, 2-bit packed weights)",
        &file_bits(
            &mlp(),
            MethodKind::Static,
            Granularity::PerChannel,
            BitWidths::wa(2, 2),
        ),
        14,
    );
}

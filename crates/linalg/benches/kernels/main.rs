//! Integer vs float GEMM, single-threaded, on the shapes that matter: 512x512x512 and the
//! MNIST MLP's first layer (64x784 by 784x50) and the MNIST CNN's first convolution as a GEMM
//! (K = 9). Run with the shared dev profile:
//! `cargo bench --profile dev --workspace --bench kernels`.
//!
//! Criterion measures every path; a summary table then prints GOPS and the fraction of the
//! VNNI peak (one 512-bit `vpdpbusd` per cycle = 64 int8 MACs/cycle at the nominal clock).

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput};
mod f32gemm;

use quantlab_data::rng::Rng;
use quantlab_linalg::{
    Activation, Epilogue, KernelPath, OutLayout, PackedF32, PackedI8, QWeights, Requant, Rows,
};

struct Case {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
}

const CASES: [Case; 4] = [
    Case {
        name: "512x512x512",
        m: 512,
        n: 512,
        k: 512,
    },
    Case {
        name: "mlp-fc1 64x784x50",
        m: 64,
        n: 50,
        k: 784,
    },
    // The MNIST CNN's first convolution (1 -> 16, 3x3) as a GEMM over gathered rows: batch
    // 64 x 28 x 28 pixels, K = 9. Small K: the per-block overheads weigh most here.
    Case {
        name: "conv1 50176x9x16",
        m: 50176,
        n: 16,
        k: 9,
    },
    // The same for one sample (784 pixels), as the engine runs it: in cache.
    Case {
        name: "conv1 784x9x16",
        m: 784,
        n: 16,
        k: 9,
    },
];

struct Inputs {
    a: Vec<u8>,
    w: QWeights,
    af: Vec<f32>,
    wf: Vec<f32>,
    offset: Vec<i32>,
    requant: Vec<Requant>,
}

fn inputs(c: &Case) -> Inputs {
    let mut r = Rng::new(1);
    let a: Vec<u8> = (0..c.m * c.k).map(|_| r.below(256) as u8).collect();
    let w: Vec<i8> = (0..c.n * c.k)
        .map(|_| (r.below(255) as i32 - 127) as i8)
        .collect();
    let af = a.iter().map(|&v| v as f32 / 255.0).collect();
    let wf = w.iter().map(|&v| v as f32 / 127.0).collect();
    Inputs {
        a,
        w: QWeights::new(w, c.n, c.k),
        af,
        wf,
        offset: vec![0; c.n],
        requant: vec![Requant::new(1e-4); c.n],
    }
}

/// The int8 GEMM with requantization on `path`, weights packed for it beforehand.
fn run_int8(path: KernelPath, c: &Case, i: &Inputs, w: &PackedI8, out: &mut [u8]) {
    let mut epi = Epilogue::Requant {
        offset: &i.offset,
        requant: &i.requant,
        zo: 128,
        lo: 0,
        hi: 255,
        layout: OutLayout::RowMajor,
        out,
    };
    path.ops().qgemm(c.m, &i.a, c.k, w, &mut epi);
}

fn paths() -> Vec<KernelPath> {
    KernelPath::ALL
        .into_iter()
        .filter(|p| p.available())
        .collect()
}

fn bench(cr: &mut Criterion) {
    for c in &CASES {
        let i = inputs(c);
        let mut g = cr.benchmark_group(c.name);
        g.throughput(Throughput::Elements((c.m * c.n * c.k) as u64));
        let mut yf = vec![0f32; c.m * c.n];
        g.bench_function("f32 (gemm crate)", |b| {
            b.iter(|| f32gemm::xwt(c.m, c.n, c.k, black_box(&i.af), c.k, &i.wf, &mut yf, 1))
        });
        let packed = PackedF32::new(&i.wf, &vec![0.0; c.n], c.n, c.k);
        for p in paths() {
            let rows = Rows::matrix(&i.af, c.m, c.k, c.k);
            g.bench_function(format!("f32 {}", p.f32_name()), |b| {
                b.iter(|| {
                    p.ops()
                        .sgemm(black_box(&rows), &packed, Activation::NONE, &mut yf)
                })
            });
        }
        let mut yq = vec![0u8; c.m * c.n];
        for p in paths() {
            let w = p.ops().pack(&i.w);
            g.bench_function(format!("int8 {}", p.as_str()), |b| {
                b.iter(|| run_int8(p, c, black_box(&i), &w, &mut yq))
            });
        }
        g.finish();
    }
}

/// Median seconds of `f` over enough runs to fill ~0.3 s.
fn median_secs(mut f: impl FnMut()) -> f64 {
    f();
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((0.3 / once) as usize).clamp(5, 2000);
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summary() {
    // Each path's own peak, measured on this core (quantlab_linalg::peak).
    let peaks: Vec<(KernelPath, quantlab_linalg::Peak)> = paths()
        .into_iter()
        .map(|p| (p, quantlab_linalg::peak::measure(p)))
        .collect();
    println!("\nsummary (single thread; \"of peak\": of the path's measured peak on this core)");
    for (p, pk) in &peaks {
        let g = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        println!(
            "peak {}: f32 {} GMAC/s, int8 {} GMAC/s",
            p.as_str(),
            g(pk.f32_gmacs),
            g(pk.int8_gmacs)
        );
    }
    let peak_of = |p: KernelPath| peaks.iter().find(|(q, _)| *q == p).map(|(_, pk)| *pk);
    let pct = |gmacs: f64, peak: Option<f64>| {
        peak.map_or("-".into(), |pk| format!("{:.1}%", 100.0 * gmacs / pk))
    };
    println!(
        "{:<20} {:<12} {:>10} {:>9} {:>10} {:>9}",
        "shape", "path", "time us", "GOPS", "vs f32", "of peak"
    );
    for c in &CASES {
        let i = inputs(c);
        let macs = (c.m * c.n * c.k) as f64;
        let mut yf = vec![0f32; c.m * c.n];
        let tf =
            median_secs(|| f32gemm::xwt(c.m, c.n, c.k, black_box(&i.af), c.k, &i.wf, &mut yf, 1));
        println!(
            "{:<20} {:<12} {:>10.1} {:>9.1} {:>10} {:>9}",
            c.name,
            "f32 gemm",
            tf * 1e6,
            2.0 * macs / tf / 1e9,
            "1.00x",
            "-"
        );
        let packed = PackedF32::new(&i.wf, &vec![0.0; c.n], c.n, c.k);
        for p in paths() {
            let rows = Rows::matrix(&i.af, c.m, c.k, c.k);
            let t = median_secs(|| {
                p.ops()
                    .sgemm(black_box(&rows), &packed, Activation::NONE, &mut yf)
            });
            println!(
                "{:<20} {:<12} {:>10.1} {:>9.1} {:>9.2}x {:>9}",
                c.name,
                format!("f32 {}", p.f32_name()),
                t * 1e6,
                2.0 * macs / t / 1e9,
                tf / t,
                pct(macs / t / 1e9, peak_of(p).and_then(|pk| pk.f32_gmacs))
            );
        }
        let mut yq = vec![0u8; c.m * c.n];
        for p in paths() {
            let w = p.ops().pack(&i.w);
            let t = median_secs(|| run_int8(p, c, black_box(&i), &w, &mut yq));
            let gmacs = macs / t / 1e9;
            println!(
                "{:<20} {:<12} {:>10.1} {:>9.1} {:>9.2}x {:>9}",
                c.name,
                p.as_str(),
                t * 1e6,
                2.0 * gmacs,
                tf / t,
                pct(gmacs, peak_of(p).and_then(|pk| pk.int8_gmacs))
            );
        }
    }
}

fn main() {
    f32gemm::check();
    if std::env::args().any(|a| a == "--summary-only") {
        summary();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}

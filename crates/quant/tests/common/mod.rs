//! Helpers shared by the engine tests of graphs (residual blocks, depthwise convolutions).

use quantlab_quant::{Engine, Graph, KernelPath, Network, QuantModel};

/// The kernel paths this CPU runs; one line for each it does not.
pub fn paths() -> Vec<KernelPath> {
    let (run, skip): (Vec<_>, Vec<_>) = KernelPath::ALL.into_iter().partition(|p| p.available());
    for p in skip {
        println!("{}: not available on this CPU, not run", p.as_str());
    }
    run
}

/// The float engine runs `g` within 1e-4 of its f64 reference, on every path at 1 and 2
/// threads.
pub fn float_matches_reference(g: &Graph, x: &[f32], batch: usize) {
    let want = g.forward_reference(x, batch).unwrap();
    let model = QuantModel::float(Network::from_graph(g).unwrap());
    for path in paths() {
        for threads in [1, 2] {
            let got = Engine { path, threads }.run_once(&model, x, batch).unwrap();
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{path:?} x{threads}: {worst}");
        }
    }
}

//! The plain-op graph computes what burn computes: for each model, burn's forward pass (flex)
//! and the graph's naive f32 interpreter give the same logits.

use burn::tensor::{Device, Tensor, TensorData};
use quantlab_data::rng::Rng;
use quantlab_models::{Classifier, ModelKind, ModelSpec};

/// Largest allowed |burn - graph| on a logit.
const LOGIT_TOL: f32 = 1e-4;

fn check(kind: ModelKind, input_shape: &[usize], classes: usize) {
    let device = Device::flex();
    let model: Classifier = ModelSpec::of(kind)
        .build(input_shape, classes, 42, &device)
        .unwrap();
    let graph = model.to_graph(input_shape).unwrap();
    let batch = 5;
    let d: usize = input_shape.iter().product();
    let mut rng = Rng::new(1);
    let x: Vec<f32> = (0..batch * d).map(|_| rng.normal() as f32).collect();
    let burn_out: Vec<f32> = model
        .forward(Tensor::<2>::from_data(
            TensorData::new(x.clone(), [batch, d]),
            &device,
        ))
        .into_data()
        .try_to_vec()
        .unwrap();
    let graph_out = graph.forward_reference(&x, batch).unwrap();
    assert_eq!(burn_out.len(), batch * classes);
    assert_eq!(graph_out.len(), burn_out.len());
    let worst = burn_out
        .iter()
        .zip(&graph_out)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= LOGIT_TOL, "{kind}: max |burn - graph| = {worst}");
    assert!(
        burn_out.iter().any(|&v| v.abs() > 1e-3),
        "{kind}: logits are all ~0"
    );
    assert_eq!(graph.params(), expected_params(&model));
}

fn expected_params(m: &Classifier) -> usize {
    use burn::module::Module;
    m.num_params()
}

#[test]
fn logreg_graph_matches_burn() {
    check(ModelKind::Logreg, &[20], 2);
    check(ModelKind::Logreg, &[1, 28, 28], 10);
}

#[test]
fn mlp_graph_matches_burn() {
    check(ModelKind::Mlp, &[1, 28, 28], 10);
    check(ModelKind::Mlp, &[1, 8, 8], 10);
}

#[test]
fn cnn_graph_matches_burn() {
    check(ModelKind::Cnn, &[1, 28, 28], 10);
    check(ModelKind::Cnn, &[1, 8, 8], 10);
}

#[test]
fn default_mlp_is_784_50_80_30_10() {
    let m = ModelSpec::of(ModelKind::Mlp)
        .build(&[1, 28, 28], 10, 0, &Device::flex())
        .unwrap();
    let g = m.to_graph(&[1, 28, 28]).unwrap();
    let widths: Vec<(usize, usize)> = g
        .ops
        .iter()
        .filter_map(|op| match op {
            quantlab_models::Op::Linear {
                in_features,
                out_features,
                ..
            } => Some((*in_features, *out_features)),
            _ => None,
        })
        .collect();
    assert_eq!(widths, vec![(784, 50), (50, 80), (80, 30), (30, 10)]);
    assert_eq!(
        g.params(),
        784 * 50 + 50 + 50 * 80 + 80 + 80 * 30 + 30 + 30 * 10 + 10
    );
}

#[test]
fn cnn_on_tabular_data_is_a_clear_error() {
    let err = ModelSpec::of(ModelKind::Cnn)
        .build(&[20], 2, 0, &Device::flex())
        .unwrap_err();
    assert!(err.to_string().contains("needs images"), "{err}");
}

#[test]
fn same_seed_same_weights() {
    let device = Device::flex();
    let a = ModelSpec::of(ModelKind::Mlp)
        .build(&[64], 10, 7, &device)
        .unwrap()
        .to_graph(&[64])
        .unwrap();
    let b = ModelSpec::of(ModelKind::Mlp)
        .build(&[64], 10, 7, &device)
        .unwrap()
        .to_graph(&[64])
        .unwrap();
    let c = ModelSpec::of(ModelKind::Mlp)
        .build(&[64], 10, 8, &device)
        .unwrap()
        .to_graph(&[64])
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

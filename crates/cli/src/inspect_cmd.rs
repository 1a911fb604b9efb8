//! `quantlab inspect FILE`: what an int8 file holds, layer by layer.

use std::path::PathBuf;

use anyhow::Result;
use quantlab_quant::export::{self, NodeSpec};
use quantlab_quant::{LayerImpl, Node};

/// Runs `quantlab inspect`.
pub fn run(file: PathBuf) -> Result<()> {
    let (model, meta) = export::load(&file)?;
    let size = std::fs::metadata(&file)?.len();
    println!(
        "{}: {size} bytes, quantlab format {}, written by quantlab {}",
        file.display(),
        meta.format_version,
        meta.quantlab_version
    );
    println!("method {} ({:?})", model.scheme.name(), model.scheme);
    if let Some(ds) = meta.provenance.get("dataset") {
        println!("dataset {ds}, input {:?}", meta.input_shape);
    }
    let q = |p: usize| {
        model.points[p].map_or("f32".to_string(), |q| {
            let levels = if q.levels() < 256 {
                format!(" {}-bit ({}..={})", q.bits(), q.qmin, q.qmax)
            } else {
                String::new()
            };
            format!("scale {:.6} zp {}{levels}", q.scale, q.zero_point)
        })
    };
    println!("input: {}", q(0));
    for (i, spec) in meta.nodes.iter().enumerate() {
        match (spec, &model.network.nodes[i], &model.layers[i]) {
            (NodeSpec::Dense { weight_bits, .. }, Node::Dense(d), Some(layer)) => {
                let (k, n) = (d.k, d.n);
                let kind = d.kind();
                // The stored width: i4 and i2 are packed two and four to a byte in the file.
                let int = match quantlab_quant::pack::storage_bits(*weight_bits) {
                    8 if *weight_bits == 8 => "i8".to_string(),
                    8 => format!("i{weight_bits} (in i8)"),
                    sb => format!("i{weight_bits} (packed {} per byte)", 8 / sb),
                };
                let (wdt, bdt, scales) = match layer {
                    LayerImpl::F32 => ("f32".to_string(), "f32", String::new()),
                    LayerImpl::Static(l) => (int, "i32", scale_range(&l.w_scales)),
                    LayerImpl::Dynamic(l) => (int, "f32", scale_range(&l.w_scales)),
                };
                println!(
                    "n{i:<3} {kind:<12} weight {wdt}[{n}, {k}] bias {bdt}[{n}] {scales}{}",
                    match layer {
                        LayerImpl::Static(_) => format!(" -> out {}", q(i + 1)),
                        _ => String::new(),
                    }
                );
            }
            (NodeSpec::Add { from, .. }, node, _) => {
                let out = match model.points[i + 1] {
                    Some(_) => format!(" -> out {}", q(i + 1)),
                    None => String::new(),
                };
                println!(
                    "n{i:<3} {:<12} point {from} + point {i} (int8 where both are){out}",
                    node.kind()
                );
            }
            (other, _, _) => println!(
                "n{i:<3} {}",
                serde_json::to_string(other).unwrap_or_default()
            ),
        }
    }
    Ok(())
}

fn scale_range(s: &[f32]) -> String {
    let (lo, hi) = s
        .iter()
        .fold((f32::INFINITY, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    if s.len() == 1 {
        format!("w_scale {lo:.6}")
    } else {
        format!("w_scale x{} in [{lo:.6}, {hi:.6}]", s.len())
    }
}

//! `quantlab export`: a quantlab model file (f32 or int8 `.safetensors`) as a standard ONNX
//! file for ONNX Runtime, OpenVINO, tract or TensorRT; `quantlab inspect` reads `.onnx`
//! files back through the same checker.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use quantlab_onnx::export::{OnnxTarget, to_onnx};
use quantlab_quant::export;

/// Arguments of `quantlab export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model `.safetensors` file (`quantlab quantize --out`, or `bench`'s `models/`).
    model: PathBuf,
    /// The `.onnx` file to write.
    #[arg(long)]
    out: PathBuf,
    /// qdq: ONNX Runtime's quantize_static form (ONNX Runtime, OpenVINO, tract);
    /// tensorrt: zero points of 0 and float biases (needs --act-dtype i8-symmetric models).
    #[arg(long, value_enum, default_value_t = OnnxTarget::Qdq)]
    target: OnnxTarget,
    /// Overwrite --out if it exists.
    #[arg(long)]
    force: bool,
}

/// Runs `quantlab export`.
pub fn run(args: ExportArgs) -> Result<()> {
    let (model, meta) = export::load(&args.model)?;
    let out = to_onnx(&model, args.target)
        .with_context(|| format!("exporting {}", args.model.display()))?;
    if args.out.exists() && !args.force {
        bail!(
            "{} exists; pass --force to overwrite it",
            args.out.display()
        );
    }
    quantlab_onnx::write(&args.out, &out.model, args.force)?;
    let size = std::fs::metadata(&args.out).map_or(0, |m| m.len());
    println!(
        "{}: {} ({:?} form, opset {}, input `{}` [batch, {}], output `{}`), {size} bytes",
        args.out.display(),
        model.scheme.name(),
        args.target,
        out.model
            .opset_import
            .first()
            .and_then(|o| o.version)
            .unwrap_or(quantlab_onnx::export::OPSET),
        quantlab_onnx::export::INPUT,
        meta.input_shape
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        quantlab_onnx::export::OUTPUT,
    );
    for n in &out.notes {
        println!("note: {n}");
    }
    Ok(())
}

/// `quantlab inspect FILE.onnx`: the graph's inputs, outputs, opsets and nodes.
pub fn inspect(path: &std::path::Path) -> Result<()> {
    let m = quantlab_onnx::read(path)?;
    quantlab_onnx::check(&m).with_context(|| format!("{}", path.display()))?;
    let g = m.graph.as_ref().context("no graph")?;
    let opsets: Vec<String> = m
        .opset_import
        .iter()
        .map(|o| format!("{}:{}", o.domain(), o.version()))
        .collect();
    println!(
        "{}: ONNX IR {}, opsets [{}], producer {} {}",
        path.display(),
        m.ir_version(),
        opsets.join(", "),
        m.producer_name(),
        m.producer_version()
    );
    let names = |v: &[quantlab_onnx::proto::ValueInfoProto]| {
        v.iter()
            .map(|x| x.name().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  inputs: {}; outputs: {}",
        names(&g.input),
        names(&g.output)
    );
    let mut counts: Vec<(String, usize)> = Vec::new();
    for n in &g.node {
        match counts.iter_mut().find(|(t, _)| t == n.op_type()) {
            Some((_, c)) => *c += 1,
            None => counts.push((n.op_type().to_string(), 1)),
        }
    }
    let ops: Vec<String> = counts.iter().map(|(t, c)| format!("{t} x{c}")).collect();
    println!(
        "  {} nodes ({}), {} initializers",
        g.node.len(),
        ops.join(", "),
        g.initializer.len()
    );
    Ok(())
}

//! The user's node names. onnx-ir renames every node by type and count (`conv2d1`,
//! `linear2`); the file's own `NodeProto` list, read by quantlab's decoder, still has them.
//! The k-th imported node of a kind is the next node of the matching ONNX op types in file
//! order (a `Linear` is the next `Gemm` or `MatMul`): both lists keep the file's order, and
//! the kinds kept here are never created or merged away by onnx-ir.

use quantlab_onnx::ModelProto;

/// The file's nodes as `(op_type, name)`, with a cursor per lookup.
pub struct Originals {
    nodes: Vec<(String, String)>,
    used: Vec<bool>,
}

impl Originals {
    pub fn new(model: &ModelProto) -> Self {
        let nodes: Vec<(String, String)> = model
            .graph
            .iter()
            .flat_map(|g| g.node.iter())
            .map(|n| {
                (
                    n.op_type.clone().unwrap_or_default(),
                    n.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        let used = vec![false; nodes.len()];
        Self { nodes, used }
    }

    /// The name of the next unused file node whose op type is one of `op_types`, or
    /// `fallback` when there is none or it has no name.
    pub fn next(&mut self, op_types: &[&str], fallback: &str) -> String {
        let hit = self
            .nodes
            .iter()
            .enumerate()
            .position(|(i, (op, _))| !self.used[i] && op_types.contains(&op.as_str()));
        match hit {
            Some(i) => {
                self.used[i] = true;
                let name = &self.nodes[i].1;
                if name.is_empty() {
                    fallback.to_string()
                } else {
                    name.clone()
                }
            }
            None => fallback.to_string(),
        }
    }
}

#!/usr/bin/env python3
"""Prints, as a Rust byte array, a small model serialized by the `onnx` package's
own helpers (onnx.helper + protobuf). `src/proto.rs` tests that the hand-written
prost messages encode the same model to exactly these bytes and decode them back,
which pins every field number, wire type and packing against the official schema
(a round trip through our own encoder alone could not catch a wrong tag).

Regenerate: python3 scripts/make_fixture.py > src/fixture_onnx_helper.in
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

w = numpy_helper.from_array(np.array([[1, -2], [3, -4], [5, -6]], np.int8), "w")
s = numpy_helper.from_array(np.array([0.5, 0.25, 0.125], np.float32), "s")
zp = numpy_helper.from_array(np.array(0, np.uint8), "zp")  # scalar: dims []
shape = numpy_helper.from_array(np.array([0, -1], np.int64), "shape")
b = numpy_helper.from_array(np.array([7, -8, 9], np.int32), "b")
nodes = [
    helper.make_node("DequantizeLinear", ["w", "s"], ["wf"], name="dq", axis=0),
    # make_node sorts attributes by name.
    helper.make_node("Gemm", ["x", "wf"], ["y"], name="fc", alpha=0.5, transB=1),
    helper.make_node("MaxPool", ["y"], ["p"], name="pool", auto_pad="VALID", kernel_shape=[2, 2]),
]
graph = helper.make_graph(
    nodes,
    "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
    [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 3])],
    [w, s, zp, shape, b],
)
model = helper.make_model(
    graph, producer_name="fixture", opset_imports=[helper.make_opsetid("", 13)], ir_version=7
)
data = model.SerializeToString()
print(f"// onnx {onnx.__version__}: scripts/make_fixture.py, {len(data)} bytes")
print("[")
for i in range(0, len(data), 16):
    print("    " + ", ".join(f"0x{c:02x}" for c in data[i : i + 16]) + ",")
print("]")

#!/usr/bin/env python3
"""Check ONNX files written by quantlab with the real tools.

For each model:
  1. onnx.checker.check_model(model, full_check=True)  (includes strict shape inference);
  2. re-serialization through the onnx package gives the same bytes (informational:
     shows the file uses onnx.proto's field order, packing and presence);
  3. ONNX Runtime (CPUExecutionProvider) runs it at each --batches size on random
     inputs, once with all graph optimizations (int8 kernels fused from the QDQ
     pattern) and once with none (the QDQ float path), and both are compared with
     an independent numpy evaluation of the same graph (`Reference` below);
  4. with --expected FILE.json, ONNX Runtime and numpy are also compared with
     outputs computed by the writer for fixed inputs.

Tolerance: 1e-5 (abs) + 1e-5 (rel) for float graphs; for a graph output made by
DequantizeLinear, --steps quantization steps of that output's scale (default 1),
since a value that lands on a rounding boundary may round either way depending on
summation order.

expected.json format (paths relative to the JSON file):
  {"models": [{"path": "m.onnx", "cases": [
      {"inputs": {"x": {"shape": [1, 4], "data": [...]}},
       "outputs": {"y": {"shape": [1, 3], "data": [...]}},
       "atol": 1e-5}]}]}

Usage:
  check_onnx.py [--expected FILE.json] [--batches 1,3] [--seed 0] [--steps 1] [MODEL.onnx ...]

Prints one line per check and ends with 'N passed, N failed'; exits 1 if any failed.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

DTYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.UINT8: np.uint8,
    onnx.TensorProto.INT8: np.int8,
    onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64,
}


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def per_axis(param, x, axis):
    """Reshape a 1-D per-axis scale/zero point to broadcast along `axis` of x."""
    if param.ndim == 0 or param.size == 1:
        return param.reshape(())
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} out of range for rank {x.ndim} (per-axis parameter of {param.size})")
    shape = [1] * x.ndim
    shape[axis % x.ndim] = param.size
    return param.reshape(shape)


def quantize_linear(x, scale, zp, axis):
    zp = np.zeros((), np.uint8) if zp is None else zp
    info = np.iinfo(zp.dtype)
    s = per_axis(scale, x, axis).astype(np.float32)
    z = per_axis(zp, x, axis).astype(np.float32)
    y = np.rint(x.astype(np.float32) / s) + z
    return np.clip(y, info.min, info.max).astype(zp.dtype)


def dequantize_linear(x, scale, zp, axis):
    z = 0 if zp is None else per_axis(zp, x, axis).astype(np.int64)
    s = per_axis(scale, x, axis).astype(np.float32)
    return (x.astype(np.int64) - z).astype(np.float32) * s


def conv2d(x, w, b, a):
    if a.get("group", 1) != 1:
        raise NotImplementedError("Conv with group != 1")
    kh, kw = w.shape[2:]
    sh, sw = a.get("strides", [1, 1])
    dh, dw = a.get("dilations", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError("Conv auto_pad")
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j]).astype(np.float32)
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def maxpool2d(x, a):
    kh, kw = a["kernel_shape"]
    sh, sw = a.get("strides", [1, 1])
    pt, pl, pb, pr = a.get("pads", [0, 0, 0, 0])
    if a.get("dilations", [1, 1]) != [1, 1] or a.get("ceil_mode", 0):
        raise NotImplementedError("MaxPool dilations/ceil_mode")
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=-np.inf)
    oh = (xp.shape[2] - kh) // sh + 1
    ow = (xp.shape[3] - kw) // sw + 1
    out = np.full((x.shape[0], x.shape[1], oh, ow), -np.inf, np.float32)
    for i in range(kh):
        for j in range(kw):
            out = np.maximum(out, xp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw])
    return out


def reshape(x, shape, allowzero):
    shape = [x.shape[i] if (d == 0 and not allowzero) else int(d) for i, d in enumerate(shape)]
    return x.reshape(shape)


def gemm(a_, b_, c, a):
    A = a_.T if a.get("transA", 0) else a_
    B = b_.T if a.get("transB", 0) else b_
    y = np.float32(a.get("alpha", 1.0)) * (A @ B)
    if c is not None:
        y = y + np.float32(a.get("beta", 1.0)) * c
    return y.astype(np.float32)


class Reference:
    """Evaluates a graph with numpy, op by op, in node order (float32 math)."""

    def __init__(self, model):
        self.graph = model.graph
        self.init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}

    def run(self, feeds):
        env = dict(self.init)
        env.update(feeds)
        for node in self.graph.node:
            args = [env[i] if i else None for i in node.input]
            args += [None] * (3 - len(args))
            a = attrs(node)
            op = node.op_type
            if op == "QuantizeLinear":
                out = quantize_linear(args[0], args[1], args[2], a.get("axis", 1))
            elif op == "DequantizeLinear":
                out = dequantize_linear(args[0], args[1], args[2], a.get("axis", 1))
            elif op == "Gemm":
                out = gemm(args[0], args[1], args[2], a)
            elif op == "MatMul":
                out = np.matmul(args[0], args[1]).astype(np.float32)
            elif op == "Add":
                out = args[0] + args[1]
            elif op == "Mul":
                out = args[0] * args[1]
            elif op == "Relu":
                out = np.maximum(args[0], 0).astype(args[0].dtype)
            elif op == "Conv":
                out = conv2d(args[0], args[1], args[2], a)
            elif op == "MaxPool":
                out = maxpool2d(args[0], a)
            elif op == "Flatten":
                ax = a.get("axis", 1)
                out = args[0].reshape(int(np.prod(args[0].shape[:ax])), -1)
            elif op == "Reshape":
                out = reshape(args[0], args[1], a.get("allowzero", 0))
            elif op == "Identity":
                out = args[0]
            else:
                raise NotImplementedError(f"numpy reference has no {op}")
            env[node.output[0]] = out
        return {o.name: env[o.name] for o in self.graph.output}


def output_steps(model):
    """Scale of each graph output made by DequantizeLinear with a constant scale."""
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    made_by = {o: n for n in model.graph.node for o in n.output}
    steps = {}
    for out in model.graph.output:
        n = made_by.get(out.name)
        if n is not None and n.op_type == "DequantizeLinear" and n.input[1] in init:
            steps[out.name] = float(np.max(init[n.input[1]]))
    return steps


def random_feeds(model, batch, rng):
    init = {t.name for t in model.graph.initializer}
    feeds = {}
    for inp in model.graph.input:
        if inp.name in init:
            continue
        tt = inp.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in tt.shape.dim]
        dtype = DTYPES[tt.elem_type]
        if dtype == np.float32:
            feeds[inp.name] = rng.uniform(-1.2, 1.2, size=shape).astype(np.float32)
        else:
            info = np.iinfo(dtype)
            feeds[inp.name] = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return feeds


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def record(self, ok, line):
        print(("PASS " if ok else "FAIL ") + line, flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def compare(name, got, want, atol, step, results, what, nsteps):
    """One line per output: max |diff|, and in quantization steps if quantized.

    Float outputs: |diff| <= atol + 1e-5 |want|. Quantized outputs (scale in
    `step`): |diff| <= max(atol, nsteps x scale)."""
    for out, w in want.items():
        g = got[out]
        if g.shape != w.shape:
            results.record(False, f"{what} {name}:{out}: shape {g.shape}, expected {w.shape}")
            continue
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        if step.get(out) is None:
            tol = atol + 1e-5 * np.abs(w)
        else:
            tol = np.float64(max(atol, nsteps * step[out] * 1.001 + 1e-6))
        ok = bool(np.all(diff <= tol))
        msg = f"{what} {name}:{out} shape {list(g.shape)}: max|diff| {diff.max():.3g} (tol {np.max(tol):.3g})"
        if step.get(out):
            s = step[out]
            off = np.rint(diff / s).astype(int)
            msg += f", {int(np.count_nonzero(off == 0))}/{off.size} exact, {int(np.count_nonzero(off == 1))} off by 1 step of {s:.5g}"
        results.record(ok, msg)


def guarded(results, what, f):
    """f(), or None after recording a failure if it raises."""
    try:
        return f()
    except Exception as e:  # noqa: BLE001 -- any runtime or reference error is a failed check
        results.record(False, f"{what}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
        return None


def sessions(path):
    out = {}
    for label, level in [
        ("ort-opt", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
        ("ort-noopt", ort.GraphOptimizationLevel.ORT_DISABLE_ALL),
    ]:
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.log_severity_level = 3
        out[label] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return out


def check_file(path, cases, args, results):
    name = os.path.basename(path)
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        results.record(True, f"onnx.checker(full_check) {name}: ir_version {model.ir_version}, opset "
                       + ",".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
                       + f", {len(model.graph.node)} nodes")
    except Exception as e:  # noqa: BLE001 -- report any checker or load failure
        results.record(False, f"onnx.checker(full_check) {name}: {e}")
        return
    with open(path, "rb") as f:
        raw = f.read()
    same = model.SerializeToString() == raw
    print(f"INFO {name}: onnx re-serialization byte-identical: {same} ({len(raw)} bytes)")

    try:
        sess = sessions(path)
    except Exception as e:  # noqa: BLE001
        results.record(False, f"onnxruntime load {name}: {e}")
        return
    ref = Reference(model)
    steps = output_steps(model)
    out_names = [o.name for o in model.graph.output]
    rng = np.random.default_rng(args.seed)

    for batch in args.batches:
        feeds = random_feeds(model, batch, rng)
        want = guarded(results, f"numpy reference {name} batch {batch}", lambda: ref.run(feeds))
        for label, s in sess.items():
            got = guarded(results, f"{label} run {name} batch {batch}", lambda: dict(zip(out_names, s.run(out_names, feeds))))
            if got is None or want is None:
                continue
            compare(name, got, want, 1e-5, steps, results, f"{label} vs numpy, random batch {batch}:", args.steps)

    for i, case in enumerate(cases):
        feeds = {k: np.array(v["data"], np.float32).reshape(v["shape"]) for k, v in case["inputs"].items()}
        want = {k: np.array(v["data"], np.float32).reshape(v["shape"]) for k, v in case["outputs"].items()}
        atol = float(case.get("atol", 1e-5))
        batch = next(iter(feeds.values())).shape[0]
        for label, s in sess.items():
            got = guarded(results, f"{label} run {name} case {i}", lambda: dict(zip(out_names, s.run(out_names, feeds))))
            if got is not None:
                compare(name, got, want, atol, steps, results, f"{label} vs expected.json, case {i} batch {batch}:", args.steps)
        got = guarded(results, f"numpy reference {name} case {i}", lambda: ref.run(feeds))
        if got is not None:
            compare(name, got, want, atol, steps, results, f"numpy vs expected.json, case {i} batch {batch}:", args.steps)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="ONNX files (besides those in --expected)")
    p.add_argument("--expected", help="JSON with models, fixed inputs and expected outputs")
    p.add_argument("--batches", default="1,3", help="batch sizes for random inputs (default 1,3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=float, default=1.0, help="allowed quantization steps on QDQ outputs")
    args = p.parse_args()
    args.batches = [int(b) for b in args.batches.split(",") if b]

    work = [(m, []) for m in args.models]
    if args.expected:
        with open(args.expected) as f:
            spec = json.load(f)
        base = os.path.dirname(os.path.abspath(args.expected))
        work += [(os.path.join(base, m["path"]), m.get("cases", [])) for m in spec["models"]]
    if not work:
        p.error("no model given")

    print(f"INFO onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    results = Results()
    for path, cases in work:
        check_file(path, cases, args, results)
    print(f"{results.passed} passed, {results.failed} failed")
    sys.exit(1 if results.failed else 0)


if __name__ == "__main__":
    main()

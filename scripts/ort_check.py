#!/usr/bin/env python3
"""Run an exported ONNX model in ONNX Runtime and compare it with quantlab's own logits.

usage: ort_check.py MODEL.onnx X.npy Y.npy REF_LOGITS.npy [--as-written]

Prints one JSON object: ONNX Runtime's version, its accuracy on (X, Y), the top-1
agreement with quantlab's logits and the largest absolute logit difference. The file is
also checked with onnx.checker (full_check) when the onnx package is importable. quantlab's
tests call this; a missing onnxruntime exits with status 3 so the caller can tell
"not installed" from "wrong result". With --as-written, graph optimisations are off: a QDQ
file runs as DequantizeLinear, float op, QuantizeLinear (the scheme's exact arithmetic)
instead of through ONNX Runtime's int8 kernels, which on x86 without VNNI sum pairs of
u8 x s8 products in saturating 16-bit lanes.
"""
import json
import sys

try:
    import numpy as np
    import onnxruntime as ort
except ImportError as e:  # the caller decides whether a missing runtime is a skip
    print(f"onnxruntime not importable: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    model, x_path, y_path, ref_path = sys.argv[1:5]
    checked = False
    try:
        import onnx

        onnx.checker.check_model(onnx.load(model), full_check=True)
        checked = True
    except ImportError:
        pass
    x = np.load(x_path)
    y = np.load(y_path)
    ref = np.load(ref_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if "--as-written" in sys.argv[5:]:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = np.concatenate(
        [sess.run(None, {name: x[i : i + 500]})[0] for i in range(0, len(x), 500)]
    )
    pred = out.argmax(1)
    print(
        json.dumps(
            {
                "onnxruntime": ort.__version__,
                "onnx_checker": checked,
                "samples": int(len(x)),
                "accuracy": float((pred == y).mean()),
                "agreement": float((pred == ref.argmax(1)).mean()),
                "max_abs_diff": float(np.abs(out - ref).max()),
            }
        )
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ONNX Runtime's own static int8 quantization of a float ONNX model, scored: the reference
quantlab's import is measured against (issue 20).

usage: ort_quantize_static.py MODEL.onnx CALIB.npy X.npy Y.npy OUT_DIR

`quant_pre_process` (shape inference and ONNX Runtime's graph optimisations, which fold
BatchNormalization into the convolutions), then `quantize_static` in the QDQ format with
per-channel symmetric int8 weights, asymmetric uint8 activations and MinMax calibration on
CALIB (what quantlab's `static` method does by default), then the quantized model's
accuracy on (X, Y) with one thread, both through ONNX Runtime's int8 kernels
(`int8_accuracy`) and with graph optimisations off (`int8_accuracy_qdq_reference`: every
DequantizeLinear -> float op -> QuantizeLinear as written, the quantization scheme's exact
result). Prints one JSON object. A missing onnxruntime exits
with status 3, so the caller can tell "not installed" from "wrong result".
"""
import json
import os
import sys

try:
    import numpy as np
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
except ImportError as e:
    print(f"onnxruntime not importable: {e}", file=sys.stderr)
    sys.exit(3)


class Reader(CalibrationDataReader):
    def __init__(self, name, x, batch=100):
        self.items = iter([{name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.items, None)


def accuracy(path, x, y, optimize=True):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if not optimize:
        # The QDQ graph as written: DequantizeLinear, float op, QuantizeLinear. This is the
        # quantized model's exact arithmetic, free of the int8 kernels' shortcuts (on x86
        # without VNNI, ONNX Runtime's u8s8 kernels sum pairs of products in saturating
        # 16-bit lanes, which its documentation warns costs accuracy).
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = np.concatenate([sess.run(None, {name: x[i : i + 500]})[0] for i in range(0, len(x), 500)])
    return float((out.argmax(1) == y).mean())


def main():
    model, calib_path, x_path, y_path, out_dir = sys.argv[1:6]
    calib, x, y = np.load(calib_path), np.load(x_path), np.load(y_path)
    os.makedirs(out_dir, exist_ok=True)
    pre = os.path.join(out_dir, "pre.onnx")
    quant = os.path.join(out_dir, "int8.onnx")
    quant_pre_process(model, pre, skip_symbolic_shape=True)
    name = ort.InferenceSession(pre, providers=["CPUExecutionProvider"]).get_inputs()[0].name
    quantize_static(
        pre,
        quant,
        Reader(name, calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    print(
        json.dumps(
            {
                "onnxruntime": ort.__version__,
                "float_accuracy": accuracy(model, x, y),
                "int8_accuracy": accuracy(quant, x, y),
                "int8_accuracy_qdq_reference": accuracy(quant, x, y, optimize=False),
                "calib_samples": int(len(calib)),
                "samples": int(len(y)),
            }
        )
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""quantlab against ONNX Runtime on the same weights and the same inputs (cargo xtask peers).

For each model of a bench run (MNIST MLP and CNN): ONNX Runtime on quantlab's float ONNX,
ONNX Runtime's own quantize_static of that file (QDQ, per-channel, MinMax, u8 activations,
s8 weights, calibrated on the same 1,000 training images quantlab calibrates on), ONNX
Runtime on quantlab's exported int8 ONNX, and quantlab's engine on its f32 and int8 files
(through `quantlab time --json`). Accuracy on the whole test split; latency at each batch
size and thread count, interleaved round by round so machine noise hits every case alike;
median and p90 over the pooled samples. Writes peers.json and a section of REPORT.md.

With --imported NAME (cargo xtask peers --onnx FILE): one model brought as a float ONNX
file, NAME-f32.onnx in PEERS_DIR beside quantlab's static int8 of it (NAME-int8.safetensors,
quantized by `quantlab quantize --checkpoint FILE`) and its export (NAME-int8.onnx); ONNX
Runtime's quantize_static runs after its recommended pre-processing (quant_pre_process,
which folds BatchNormalization), and quantlab's accuracies come from `quantlab eval` on the
same .npy arrays ONNX Runtime is scored on.

usage: peers.py --quantlab BIN --run DIR --dir PEERS_DIR [--models mlp,cnn]
                [--batches 1,64,256] [--threads 1,N] [--rounds R] [--reps K]
                [--imported NAME --dataset D [--normalize MEAN,STD]]
"""
import argparse
import json
import logging
import os
import random
import subprocess
import sys
import time

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

SECTION = "## Peers: ONNX Runtime on the same weights"
# quantize_static suggests its optional pre-processing on every call; the comparison uses
# the float file as exported, so keep the run's output to the table.
logging.getLogger().setLevel(logging.ERROR)


class Calib(CalibrationDataReader):
    def __init__(self, name, x, batch=32):
        self.items = iter([{name: x[i : i + batch]} for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.items, None)


def session(path, threads):
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def accuracy(path, x, y):
    s = session(path, os.cpu_count() or 1)
    name = s.get_inputs()[0].name
    out = np.concatenate([s.run(None, {name: x[i : i + 500]})[0] for i in range(0, len(x), 500)])
    return float((out.argmax(1) == y).mean())


def ort_samples(sess, x, reps, warmup=10):
    name = sess.get_inputs()[0].name
    feed = {name: x}
    for _ in range(warmup):
        sess.run(None, feed)
    v = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, feed)
        v.append((time.perf_counter() - t) * 1e6)
    return v


def quantlab_samples(binary, model, batches, threads, reps, extra=()):
    cmd = [binary, "time", model, "--batch", ",".join(map(str, batches)),
           "--threads", str(threads), "--reps", str(reps), "--warmup", "10", "--json", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"peers: {' '.join(cmd)} failed: {out.stderr.strip()}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return {r["batch"]: r["samples_us"] for r in res["results"]}


def quantlab_accuracy(binary, model, x_path, y_path):
    cmd = [binary, "eval", "--model", model, "--eval-npy", x_path, "--labels", y_path, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"peers: {' '.join(cmd)} failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])["accuracy"]


def stats(v):
    v = sorted(v)
    at = lambda q: v[round((len(v) - 1) * q)]
    return {"median_us": at(0.5), "p90_us": at(0.9), "n": len(v)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quantlab", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--batches", default="1,64,256")
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--imported")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--normalize")
    a = ap.parse_args()
    if a.imported:
        a.models = a.imported
    batches = [int(b) for b in a.batches.split(",")]
    threads = sorted({int(t) for t in a.threads.split(",")})
    ds = a.dataset
    x_path, y_path = (os.path.join(a.dir, f"{ds}-test-{v}.npy") for v in "xy")
    xtr = np.load(os.path.join(a.dir, f"{ds}-train-x.npy"))
    xte, yte = np.load(x_path), np.load(y_path)
    result = {"onnxruntime": ort.__version__, "cpu_count": os.cpu_count(), "dataset": ds,
              "rounds": a.rounds, "reps": a.reps, "models": {}}
    for m in a.models.split(","):
        stem = m if a.imported else f"{ds}-{m}"
        f32_onnx = os.path.join(a.dir, f"{stem}-f32.onnx")
        q_onnx = os.path.join(a.dir, f"{stem}-int8.onnx")
        ort_q = os.path.join(a.dir, f"{stem}-ort-quantize-static.onnx")
        source = f32_onnx
        if a.imported:
            # A PyTorch export keeps its BatchNormalization nodes: ONNX Runtime's documented
            # recipe folds them first, as quantlab's import does.
            source = os.path.join(a.dir, f"{stem}-ort-pre.onnx")
            quant_pre_process(f32_onnx, source, skip_symbolic_shape=True)
        name = session(source, 1).get_inputs()[0].name
        quantize_static(source, ort_q, Calib(name, xtr), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
        if a.imported:
            int8 = os.path.join(a.dir, f"{stem}-int8.safetensors")
            norm = ["--normalize", a.normalize] if a.normalize else []
            cases = {
                "quantlab f32": {"file": f32_onnx, "time_args": ["--dataset", ds, *norm],
                                 "accuracy": quantlab_accuracy(a.quantlab, f32_onnx, x_path, y_path)},
                "quantlab int8": {"file": int8,
                                  "accuracy": quantlab_accuracy(a.quantlab, int8, x_path, y_path)},
            }
        else:
            bench = json.load(open(os.path.join(a.run, "bench.json")))
            row = lambda method: next(r for r in bench["rows"] if r["dataset"] == ds
                                      and r["model"] == m and r["method"] == method
                                      and r["backend"] == "quantlab")
            cases = {
                "quantlab f32": {"accuracy": row("f32")["accuracy"],
                                 "file": os.path.join(a.run, "models", f"{stem}-f32.safetensors")},
                "quantlab int8": {"accuracy": row("static-minmax-per-channel")["accuracy"],
                                  "file": os.path.join(a.run, "models",
                                                       f"{stem}-static-minmax-per-channel.safetensors")},
            }
        cases.update({
            "ORT f32": {"accuracy": accuracy(f32_onnx, xte, yte), "onnx": f32_onnx},
            "ORT int8 (quantize_static)": {"accuracy": accuracy(ort_q, xte, yte), "onnx": ort_q},
            "ORT on quantlab int8": {"accuracy": accuracy(q_onnx, xte, yte), "onnx": q_onnx},
        })
        samples = {(c, b, t): [] for c in cases for b in batches for t in threads}
        sessions = {(c, t): session(v["onnx"], t) for c, v in cases.items() if "onnx" in v
                    for t in threads}
        inputs = {b: np.ascontiguousarray(xte[:b]) for b in batches}
        all_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        for r in range(a.rounds):
            order = list(cases)
            random.Random(r).shuffle(order)
            for t in threads:
                # One thread: pinned to one core, this process and the quantlab child alike
                # (affinity is inherited), so neither loses its caches to a migration.
                if hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(0, {min(all_cpus)} if t == 1 else all_cpus)
                for c in order:
                    if "onnx" in cases[c]:
                        for b in batches:
                            samples[(c, b, t)] += ort_samples(sessions[(c, t)], inputs[b], a.reps)
                    else:
                        got = quantlab_samples(a.quantlab, cases[c]["file"], batches, t, a.reps,
                                               cases[c].get("time_args", ()))
                        for b in batches:
                            samples[(c, b, t)] += got[b]
            print(f"peers: {ds}/{m} round {r + 1}/{a.rounds}", file=sys.stderr)
        result["models"][m] = {
            c: {"accuracy": v["accuracy"],
                "latency": [dict(batch=b, threads=t, **stats(samples[(c, b, t)]))
                            for t in threads for b in batches]}
            for c, v in cases.items()
        }
    with open(os.path.join(a.run, "peers.json"), "w") as f:
        json.dump(result, f, indent=2)
    md = markdown(result, batches, threads)
    report = os.path.join(a.run, "REPORT.md")
    text = open(report).read() if os.path.exists(report) else ""
    if SECTION in text:
        text = text[: text.index(SECTION)].rstrip() + "\n"
    with open(report, "w") as f:
        f.write(text + "\n" + md)
    print(md)


def markdown(result, batches, threads):
    lines = [SECTION, "",
             f"ONNX Runtime {result['onnxruntime']}, {result['cpu_count']} CPUs; "
             f"{result['rounds']} interleaved rounds x {result['reps']} runs per case "
             "(after 10 warm-up runs; t1 pinned to one core with sched_setaffinity); "
             "latency median (p90) in microseconds; ratios are the case's median over ONNX "
             "Runtime's (below 1: quantlab is faster).", ""]
    for m, cases in result["models"].items():
        cols = [(b, t) for t in threads for b in batches]
        lines.append(f"### {result['dataset']} / {m}")
        lines.append("")
        lines.append("| case | accuracy | " + " | ".join(f"b{b} t{t}" for b, t in cols)
                     + " | " + " | ".join(f"b{b} t{t} vs ORT f32 / int8" for b, t in cols) + " |")
        lines.append("|---|---|" + "---|" * (2 * len(cols)))
        med = lambda c, b, t: next(l for l in cases[c]["latency"]
                                   if l["batch"] == b and l["threads"] == t)
        for c, v in cases.items():
            cells = [f"{med(c, b, t)['median_us']:.1f} ({med(c, b, t)['p90_us']:.1f})" for b, t in cols]
            ratios = [f"{med(c, b, t)['median_us'] / med('ORT f32', b, t)['median_us']:.2f}x / "
                      f"{med(c, b, t)['median_us'] / med('ORT int8 (quantize_static)', b, t)['median_us']:.2f}x"
                      for b, t in cols]
            lines.append(f"| {c} | {v['accuracy'] * 100:.2f}% | " + " | ".join(cells)
                         + " | " + " | ".join(ratios) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

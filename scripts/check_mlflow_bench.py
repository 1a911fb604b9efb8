#!/usr/bin/env python3
"""Open quantlab's MLflow records with MLflow itself and compare them with bench.json.

usage: check_mlflow_bench.py MLRUNS_DIR|http://HOST:PORT RUN_DIR

The first argument is quantlab's file store or a tracking server it sent the runs to.

Every row of RUN_DIR/bench.json must be a run of the bench's experiment (found with
mlflow.search_runs), child of its model's run, with every measured metric equal to the
row's value, the per-layer SQNR history equal to the row's layers, and the model runs'
per-epoch curves equal to the training history. Prints 'N passed, N failed' and exits 1 on
any failure. Each model run's REPORT.md artifact must download with the bytes of
RUN_DIR/REPORT.md and each int8 row's model file must be listed. Needs `mlflow` (MLflow 3.13+ opens a file store only with
MLFLOW_ALLOW_FILE_STORE=true, which this script sets).
"""
import json
import math
import os
import sys
import tempfile

os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

METRICS = ["accuracy", "loss", "params", "size_bytes", "latency_b1_us", "latency_b1_p90_us",
           "latency_b64_us", "latency_b64_p90_us", "throughput_sps", "latency_b256_us",
           "throughput_b256_sps", "peak_mem_bytes",
           "val_accuracy", "accuracy_drop_pp", "size_ratio", "speedup_b64", "speedup_b64_min", "speedup_b64_max",
           "speedup_b1",
           "speedup_b64_vs_burn_flex", "speedup_b64_vs_burn_ndarray"]


def close(a, b):
    return a == b or (math.isfinite(a) and math.isfinite(b) and abs(a - b) <= 1e-9 * max(1, abs(b)))


def main():
    store, run_dir = sys.argv[1:3]
    bench = json.load(open(os.path.join(run_dir, "bench.json")))
    uri = store if store.startswith(("http://", "https://")) else "file://" + os.path.abspath(store)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    stem = "bench"
    name = f"quantlab bench: {stem}" + (" (quick)" if bench["meta"]["quick"] else "")
    runs = mlflow.search_runs(experiment_names=[name], output_format="list", max_results=50000)
    folder = os.path.realpath(run_dir)
    parents = {(r.data.tags["dataset"], r.data.tags["model"]): r for r in runs
               if "mlflow.parentRunId" not in r.data.tags
               and os.path.realpath(r.data.tags.get("run_folder", "")) == folder}
    mine = runs
    ok = bad = 0

    def check(cond, what):
        nonlocal ok, bad
        if cond:
            ok += 1
        else:
            bad += 1
            print(f"FAIL {what}")

    report = open(os.path.join(run_dir, "REPORT.md"), "rb").read()
    for c in bench["curves"]:
        p = parents.get((c["dataset"], c["model"]))
        check(p is not None, f"model run {c['dataset']}/{c['model']}")
        if p is None:
            continue
        names = [a.path for a in client.list_artifacts(p.info.run_id)]
        check("REPORT.md" in names, f"{c['dataset']}/{c['model']} REPORT.md artifact ({names})")
        if "REPORT.md" in names:
            with tempfile.TemporaryDirectory() as d:
                got = client.download_artifacts(p.info.run_id, "REPORT.md", d)
                check(open(got, "rb").read() == report,
                      f"{c['dataset']}/{c['model']} REPORT.md downloads as written")
        hist = client.get_metric_history(p.info.run_id, "val_loss")
        got = {m.step: m.value for m in hist}
        for e in c["history"]["epochs"]:
            check(close(got.get(e["epoch"], math.nan), e["val_loss"]),
                  f"{c['dataset']}/{c['model']} val_loss epoch {e['epoch']}")
    children = [r for r in mine if r.data.tags.get("mlflow.parentRunId") in
                {p.info.run_id for p in parents.values()}]
    for row in bench["rows"]:
        parent = parents.get((row["dataset"], row["model"]))
        match = [r for r in children if parent is not None
                 and r.data.tags["mlflow.parentRunId"] == parent.info.run_id
                 and r.data.params.get("method") == row["method"]
                 and r.data.params.get("backend") == row["backend"]
                 and r.data.params.get("device") == row["device"]
                 # quantlab rows come at 1 thread and at every core (the `threads` param).
                 and r.data.params.get("threads") == str(row["threads"])]
        what = (f"{row['dataset']}/{row['model']}/{row['method']}/{row['backend']}/{row['device']}"
                f"/{row['threads']} threads")
        check(len(match) == 1, f"one run for {what} (found {len(match)})")
        if len(match) != 1 or not row["supported"]:
            continue
        r = match[0]
        if row["backend"] == "quantlab" and row["method"] != "f32":
            models = [a.path for a in client.list_artifacts(r.info.run_id, "model")]
            check(any(m.endswith(".safetensors") for m in models), f"{what} model artifact")
        for k in METRICS:
            if row.get(k) is None:
                continue
            check(close(r.data.metrics.get(k, math.nan), float(row[k])), f"{what} {k}")
        if row.get("layers"):
            hist = {m.step: m.value for m in client.get_metric_history(r.info.run_id, "layer_sqnr_db")}
            for l in row["layers"]:
                check(close(hist.get(l["node"], math.nan), l["sqnr_db"]), f"{what} layer {l['node']} sqnr")
    print(f"mlflow {mlflow.__version__}: {ok} passed, {bad} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reads a store written by quantlab-track with MLflow itself and checks every logged value.

Usage (after `cargo run --example mlflow_demo -- --out expected.json`):

    python scripts/check_mlflow.py expected.json [--ui] [--migrate]

It needs an environment with MLflow installed (e.g. `python3 -m venv v && v/bin/pip install
mlflow`). It opens the store as a `file://` tracking URI with MLFLOW_ALLOW_FILE_STORE=true
(MLflow 3.13+ refuses a file store without it) and compares, run by run, what the example
wrote (its JSON) with what MLflow reads:

- the experiment (get_experiment_by_name: id, lifecycle stage, artifact location);
- mlflow.search_runs(experiment_names=[...]): status, name, params, tags, latest metrics;
- MlflowClient().get_run / get_metric_history: every (step, value, timestamp), in order;
- artifacts listed and downloaded through MLflow, byte for byte;
- nesting: search by tags.mlflow.parentRunId finds the children;
- meta.yaml of each kind has the key set and value types MLflow writes itself (compared
  with a store MLflow writes in a temporary directory).

--ui      also starts `mlflow ui --backend-store-uri <store>` on 127.0.0.1 and checks its REST
          API (runs/search, get-history), then stops it.
--migrate also runs `mlflow migrate-filestore` into a temporary SQLite database and repeats
          the API checks against it.

Prints one line per check group and ends with "N passed, N failed"; exits 1 on any failure.
"""

import argparse
import json
import math
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"

import mlflow  # noqa: E402
import yaml  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

PASSED = 0
FAILED = 0


def check(ok, what):
    global PASSED, FAILED
    if ok:
        PASSED += 1
    else:
        FAILED += 1
        print(f"FAIL: {what}")


CLAMP_INF = False  # set while checking a SQL store


def fval(v):
    """A JSON metric value (number, or "nan"/"inf"/"-inf") as a float.

    MLflow's SQL stores cannot hold infinities and keep +-1.7976931348623157e308 instead
    (SqlAlchemyStore.sanitize_metric_value), so that is what to expect after migration.
    """
    x = float(v)
    if CLAMP_INF and math.isinf(x):
        return math.copysign(sys.float_info.max, x)
    return x


def same_float(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def latest(points):
    """MLflow's latest value of a metric: max by (step, timestamp, value)."""
    return max(points, key=lambda p: (p["step"], p["timestamp"], fval(p["value"])))


def check_api(expected, tracking_uri, label):
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp_name = expected["experiment"]["name"]
    exp_id = expected["experiment"]["id"]
    before = PASSED + FAILED

    exp = client.get_experiment_by_name(exp_name)
    check(exp is not None and exp.experiment_id == exp_id, f"{label}: experiment by name")
    check(exp.lifecycle_stage == "active", f"{label}: experiment active")
    check(exp.name == exp_name, f"{label}: experiment name round-trips")

    df = mlflow.search_runs(experiment_names=[exp_name], max_results=1000)
    rows = {r["run_id"]: r for _, r in df.iterrows()}
    for run in expected["runs"]:
        rid = run["run_id"]
        where = f"{label}: run {run['run_name']!r} ({rid})"
        check(rid in rows, f"{where}: found by search_runs")
        if rid not in rows:
            continue
        row = rows[rid]
        check(row["status"] == run["status"], f"{where}: status {row['status']} != {run['status']}")
        check(row["experiment_id"] == exp_id, f"{where}: experiment id")
        check(row["tags.mlflow.runName"] == run["run_name"], f"{where}: runName tag")
        for k, v in run["params"].items():
            check(row.get(f"params.{k}") == v, f"{where}: search_runs param {k}")
        for k, v in run["tags"].items():
            check(row.get(f"tags.{k}") == v, f"{where}: search_runs tag {k}")
        for k, points in run["metrics"].items():
            got = row.get(f"metrics.{k}")
            check(
                got is not None and same_float(float(got), fval(latest(points)["value"])),
                f"{where}: search_runs latest metric {k} = {got}",
            )

        r = client.get_run(rid)
        check(r.info.run_name == run["run_name"], f"{where}: run_name {r.info.run_name!r}")
        check(r.info.status == run["status"], f"{where}: get_run status")
        check(r.info.lifecycle_stage == "active", f"{where}: lifecycle_stage")
        check(r.info.start_time == run["start_time"], f"{where}: start_time")
        check(r.info.end_time is not None and r.info.end_time >= run["start_time"], f"{where}: end_time")
        check(r.info.user_id == r.data.tags.get("mlflow.user"), f"{where}: user_id is mlflow.user")
        check(dict(r.data.params) == run["params"], f"{where}: params {dict(r.data.params)} == {run['params']}")
        for k, v in run["tags"].items():
            check(r.data.tags.get(k) == v, f"{where}: tag {k} = {r.data.tags.get(k)!r}")
        check(r.data.tags.get("mlflow.source.type") == "LOCAL", f"{where}: source type")
        check(bool(r.data.tags.get("mlflow.source.name")), f"{where}: source name")
        check(set(r.data.metrics) == set(run["metrics"]), f"{where}: metric keys {set(r.data.metrics)}")
        for k, points in run["metrics"].items():
            hist = client.get_metric_history(rid, k)
            got = [(m.step, m.value, m.timestamp) for m in hist]
            want = [(p["step"], fval(p["value"]), p["timestamp"]) for p in points]
            check(
                len(got) == len(want)
                and all(
                    g[0] == w[0] and g[2] == w[2] and same_float(g[1], w[1])
                    for g, w in zip(got, want)
                ),
                f"{where}: metric history {k}: {got} != {want}",
            )

        listed = set()
        pending = [None]
        while pending:
            for f in client.list_artifacts(rid, pending.pop()):
                if f.is_dir:
                    pending.append(f.path)
                else:
                    listed.add(f.path)
        check(listed == set(run["artifacts"]), f"{where}: artifacts listed {listed}")
        with tempfile.TemporaryDirectory() as dst:
            for path, content in run["artifacts"].items():
                local = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path=path, dst_path=dst)
                check(pathlib.Path(local).read_text(encoding="utf-8") == content, f"{where}: artifact {path} content")

    parents = [r for r in expected["runs"] if r["parent_run_id"] is None]
    for p in parents:
        kids = {r["run_id"] for r in expected["runs"] if r["parent_run_id"] == p["run_id"]}
        found = mlflow.search_runs(
            experiment_names=[exp_name],
            filter_string=f"tags.mlflow.parentRunId = '{p['run_id']}'",
        )
        check(set(found["run_id"]) == kids, f"{label}: children of {p['run_id']} found by parent tag")
    print(f"{label}: {PASSED + FAILED - before} checks on {len(expected['runs'])} runs")


def mlflow_reference_meta():
    """meta.yaml of an experiment and a finished run, as MLflow itself writes them."""
    with tempfile.TemporaryDirectory() as d:
        uri = pathlib.Path(d, "mlruns").as_uri()
        client = MlflowClient(uri)
        eid = client.create_experiment("reference")
        run = client.create_run(eid, run_name="ref")
        client.set_terminated(run.info.run_id, "FINISHED")
        root = pathlib.Path(d, "mlruns", eid)
        exp_meta = yaml.safe_load((root / "meta.yaml").read_text())
        run_meta = yaml.safe_load((root / run.info.run_id / "meta.yaml").read_text())
        return exp_meta, run_meta


def check_meta_files(expected):
    ref_exp, ref_run = mlflow_reference_meta()
    root = pathlib.Path(expected["store"])
    exp_id = expected["experiment"]["id"]
    ours_exp = yaml.safe_load((root / exp_id / "meta.yaml").read_text())

    def shape(d):
        return {k: type(v).__name__ for k, v in d.items()}

    check(shape(ours_exp) == shape(ref_exp), f"experiment meta.yaml shape {shape(ours_exp)} != MLflow's {shape(ref_exp)}")
    check(ours_exp["name"] == expected["experiment"]["name"], "experiment meta.yaml name via PyYAML")
    check(ours_exp["artifact_location"] == (root / exp_id).as_uri(), "artifact_location is the file URI")
    for run in expected["runs"]:
        ours_run = yaml.safe_load((root / exp_id / run["run_id"] / "meta.yaml").read_text())
        check(shape(ours_run) == shape(ref_run), f"run meta.yaml shape {shape(ours_run)} != MLflow's {shape(ref_run)}")
        for k in ("entry_point_name", "source_name", "source_type", "source_version", "tags", "lifecycle_stage"):
            check(ours_run[k] == ref_run[k], f"run meta.yaml {k}: {ours_run[k]!r} != {ref_run[k]!r}")
        code = {"FINISHED": 3, "FAILED": 4, "KILLED": 5}[run["status"]]
        check(ours_run["status"] == code, f"run meta.yaml status {ours_run['status']} != {code}")
        check(ours_run["run_name"] == run["run_name"], "run meta.yaml run_name via PyYAML")
        check(
            ours_run["artifact_uri"] == (root / exp_id / run["run_id"] / "artifacts").as_uri(),
            "run artifact_uri is the file URI",
        )
    print(f"meta.yaml: compared with MLflow's own (keys {sorted(ref_run)})")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def check_ui(expected):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mlflow_bin = shutil.which("mlflow") or str(pathlib.Path(sys.executable).with_name("mlflow"))
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(
        [mlflow_bin, "ui", "--backend-store-uri", expected["store"], "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, MLFLOW_ALLOW_FILE_STORE="true"),
    )
    try:
        deadline = time.time() + 180
        up = False
        while time.time() < deadline and server.poll() is None:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=5).read()
                up = True
                break
            except OSError:
                time.sleep(1)
        started = time.time() - (deadline - 180)
        check(up, f"mlflow ui answered /health on {base}")
        if not up:
            log.seek(0)
            print(log.read().decode(errors="replace")[-3000:])
            return
        exp_id = expected["experiment"]["id"]
        found = http_json(f"{base}/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 1000})
        runs = {r["info"]["run_id"]: r for r in found.get("runs", [])}
        for run in expected["runs"]:
            got = runs.get(run["run_id"])
            check(got is not None, f"REST runs/search lists {run['run_id']}")
            if got is None:
                continue
            check(got["info"]["status"] == run["status"], f"REST status of {run['run_name']!r}")
            check(got["info"]["run_name"] == run["run_name"], f"REST run_name of {run['run_name']!r}")
            tags = {t["key"]: t["value"] for t in got["data"].get("tags", [])}
            check(tags.get("mlflow.parentRunId") == run["parent_run_id"], f"REST parent of {run['run_name']!r}")
            for k, points in run["metrics"].items():
                q = urllib.parse.urlencode({"run_id": run["run_id"], "metric_key": k})
                hist = http_json(f"{base}/api/2.0/mlflow/metrics/get-history?{q}").get("metrics", [])
                check([m["step"] for m in hist] == [p["step"] for p in points], f"REST history steps {k}")
        page = urllib.request.urlopen(f"{base}/", timeout=30).read()
        check(b"<html" in page.lower() or b"<!doctype" in page.lower(), "UI page served at /")
        print(f"mlflow ui: up after {started:.0f} s on {base}; REST lists {len(runs)} runs of experiment {exp_id}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def check_migrate(expected):
    with tempfile.TemporaryDirectory() as d:
        db = pathlib.Path(d, "mlflow.db")
        mlflow_bin = shutil.which("mlflow") or str(pathlib.Path(sys.executable).with_name("mlflow"))
        res = subprocess.run(
            [mlflow_bin, "migrate-filestore", "--source", expected["store"], "--target", f"sqlite:///{db}"],
            capture_output=True,
            text=True,
        )
        check(res.returncode == 0, f"migrate-filestore exit {res.returncode}: {res.stderr[-2000:]}")
        if res.returncode == 0:
            global CLAMP_INF
            CLAMP_INF = True
            check_api(expected, f"sqlite:///{db}", "after migrate-filestore to SQLite")
            CLAMP_INF = False


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("expected", help="JSON written by the mlflow_demo example")
    ap.add_argument("--ui", action="store_true", help="also check `mlflow ui` and its REST API")
    ap.add_argument("--migrate", action="store_true", help="also check `mlflow migrate-filestore`")
    args = ap.parse_args()
    expected = json.loads(pathlib.Path(args.expected).read_text(encoding="utf-8"))
    print(f"MLflow {mlflow.__version__}; store {expected['store']}")
    check_api(expected, pathlib.Path(expected["store"]).as_uri(), "file store")
    check_meta_files(expected)
    if args.ui:
        check_ui(expected)
    if args.migrate:
        check_migrate(expected)
    print(f"{PASSED} passed, {FAILED} failed")
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main()

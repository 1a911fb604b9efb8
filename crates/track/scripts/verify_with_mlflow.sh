#!/usr/bin/env bash
# Writes the demo store with Rust, then has MLflow read it back (API, `mlflow ui` REST,
# `mlflow migrate-filestore`). Usage: scripts/verify_with_mlflow.sh [VENV]  (default
# /work/scratch/mlvenv; made with `python3 -m venv VENV && VENV/bin/pip install mlflow`).
set -euo pipefail
venv=${1:-/work/scratch/mlvenv}
crate=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$crate/target}
(cd "$crate" && cargo build --quiet --example mlflow_demo)
(cd "$work" && "$CARGO_TARGET_DIR/debug/examples/mlflow_demo" --mlflow-dir "$work/mlruns" --out "$work/expected.json")
PATH="$venv/bin:$PATH" "$venv/bin/python" "$crate/scripts/check_mlflow.py" "$work/expected.json" --ui --migrate

#!/usr/bin/env bash
# What sending runs to an MLflow tracking server costs (docs/figures.md, "MLflow tracking
# server"): starts `mlflow server` (SQLite, a temporary artifact folder, port $PORT), then
# times `quantlab track push` of one quick bench's runs at 1 and 4 workers, and a quick bench
# with and without the server, interleaved, three rounds each.
# usage: scripts/mlflow_server_figures.sh [QUANTLAB_BINARY] [PYTHON_WITH_MLFLOW]
set -euo pipefail
cd "$(dirname "$0")/.."
q="${1:-${CARGO_TARGET_DIR:-target}/debug/quantlab}"
[ -x "$q" ] || { echo "no quantlab binary at $q: pass its path" >&2; exit 2; }
py="${2:-${QUANTLAB_PYTHON:-$HOME/.cache/quantlab/venv/bin/python}}"
port="${PORT:-5124}"
uri="http://127.0.0.1:$port"
tmp=$(mktemp -d)
"$py" -m mlflow server --backend-store-uri "sqlite:///$tmp/db.sqlite" \
  --artifacts-destination "$tmp/art" --host 127.0.0.1 --port "$port" >"$tmp/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; pkill -f "mlflow server.*--port $port" 2>/dev/null; rm -rf "$tmp"' EXIT
for i in $(seq 1 180); do curl -sf "$uri/health" >/dev/null && break; sleep 1; done
echo "server up after $i s"
"$q" bench --quick --mlflow-dir "$tmp/mlruns" --results "$tmp/res" >/dev/null 2>&1
for r in 1 2 3; do
  for w in 1 4; do
    rm -f "$tmp/mlruns/quantlab-push.jsonl"
    echo "round $r, $w worker(s): $(QUANTLAB_MLFLOW_WORKERS=$w "$q" track push --uri "$uri" --mlflow-dir "$tmp/mlruns")"
  done
done
for r in 1 2 3; do
  s=$(date +%s.%N); "$q" bench --quick --mlflow-dir "$tmp/a$r" --results "$tmp/res" >/dev/null 2>&1; e=$(date +%s.%N)
  echo "round $r, file store only: $(echo "$e - $s" | bc) s"
  s=$(date +%s.%N); "$q" bench --quick --mlflow-dir "$tmp/b$r" --mlflow-uri "$uri" --results "$tmp/res" >"$tmp/b$r.log" 2>&1; e=$(date +%s.%N)
  echo "round $r, with the server: $(echo "$e - $s" | bc) s; $(grep 'sent to' "$tmp/b$r.log")"
done

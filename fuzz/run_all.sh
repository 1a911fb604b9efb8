#!/usr/bin/env bash
# Runs every fuzz target for RUNS executions (default 1,000,000) and prints, per target,
# the executions done, the crashes saved and libFuzzer's peak RSS. Needs cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-1000000}"
targets="idx_images idx_labels digits_csv npy int8_file onnx mlflow_meta"
cargo fuzz build -s none
for t in $targets; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t.log"
  start=$(date +%s)
  cargo fuzz run -s none "$t" -- -runs="$runs" -rss_limit_mb=512 -max_len=65536 \
    >"$log" 2>&1 || true
  secs=$(( $(date +%s) - start ))
  done_line=$(grep -E "^Done [0-9]+ runs" "$log" | tail -1 || true)
  rss=$(grep -oE "rss: [0-9]+Mb" "$log" | tail -1 || true)
  crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
  echo "$t: ${done_line:-no 'Done' line, see $log} ; peak ${rss:-rss ?} ; crashes saved: $crashes ; ${secs} s"
done

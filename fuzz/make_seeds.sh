#!/usr/bin/env bash
# Writes the seed corpus (fuzz/corpus/<target>/seed-*) from the shipped data and from files
# quantlab itself writes: the first samples of the shipped MNIST test files (raw and
# gzip'd), the first rows of the digits CSV, int8 files and ONNX exports of digits models
# trained here, and an MLflow meta.yaml. Run from anywhere; needs python3 and a built
# quantlab (`cargo build -p quantlab`).
set -euo pipefail
cd "$(dirname "$0")/.."
q="${CARGO_TARGET_DIR:-target}/debug/quantlab"
c=fuzz/corpus
mkdir -p $c/idx_images $c/idx_labels $c/digits_csv $c/npy $c/int8_file $c/onnx $c/mlflow_meta
python3 - <<'PY'
import gzip, struct
c = "fuzz/corpus"
def prefix(path, ndims, n):
    b = gzip.open(path).read()
    per = 1
    for i in range(1, ndims):
        per *= struct.unpack(">I", b[4 + 4 * i: 8 + 4 * i])[0]
    head = 4 + 4 * ndims
    return b[:4] + struct.pack(">I", n) + b[8:head] + b[head: head + per * n]
for name, raw in [("idx_images", prefix("data/mnist/t10k-images-idx3-ubyte.gz", 3, 3)),
                  ("idx_labels", prefix("data/mnist/t10k-labels-idx1-ubyte.gz", 1, 100))]:
    open(f"{c}/{name}/seed-raw", "wb").write(raw)
    open(f"{c}/{name}/seed-gz", "wb").write(gzip.compress(raw, mtime=0))
rows = gzip.open("data/digits/digits.csv.gz").read().split(b"\n")[:10]
open(f"{c}/digits_csv/seed-rows", "wb").write(b"\n".join(rows) + b"\n")
open(f"{c}/digits_csv/seed-gz", "wb").write(gzip.compress(b"\n".join(rows), mtime=0))
def npy(descr, shape, body, version=1):
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    size = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + size + h.encode() + body
imgs = gzip.open("data/mnist/t10k-images-idx3-ubyte.gz").read()[16:16 + 2 * 784]
open(f"{c}/npy/seed-u8-images", "wb").write(npy("|u1", (2, 1, 28, 28), imgs))
open(f"{c}/npy/seed-f4-images", "wb").write(npy("<f4", (2, 784), struct.pack("<1568f", *[b / 255 for b in imgs])))
open(f"{c}/npy/seed-i8-labels", "wb").write(npy("<i8", (32,), struct.pack("<32q", *[i % 10 for i in range(32)])))
open(f"{c}/npy/seed-be-v2", "wb").write(npy(">i2", (3,), struct.pack(">3h", -2, 5, 0), version=2))
fix = open("crates/onnx/src/fixture_onnx_helper.in").read()
body = fix[fix.index("[") + 1: fix.rindex("]")]
open(f"{c}/onnx/seed-onnx-helper", "wb").write(bytes(int(x, 16) for x in body.replace("\n", " ").split(",") if x.strip()))
PY
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for m in mlp cnn; do
  "$q" train --dataset digits --model $m --epochs 1 --no-mlflow --out "$tmp/$m" >/dev/null
  "$q" quantize --checkpoint "$tmp/$m" --method static --no-mlflow --out "$c/int8_file/seed-digits-$m" >/dev/null
  "$q" export "$c/int8_file/seed-digits-$m" --out "$c/onnx/seed-digits-$m-qdq" >/dev/null
done
"$q" train --dataset digits --model logreg --epochs 1 --mlflow-dir "$tmp/mlruns" --out "$tmp/lr" >/dev/null
cp "$(grep -l "quantlab train" "$tmp"/mlruns/*/meta.yaml | head -1)" "$c/mlflow_meta/seed-experiment"
ls -l $c/*/

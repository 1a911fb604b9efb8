#!/usr/bin/env bash
# Issue 11's GPU figures in one call on a lent GPU machine (the `device` tool), from the
# repository root there. Everything is measured in this one run, on the same machine:
#   1. PyTorch CUDA reference (scripts/torch_mnist.py): MNIST MLP and CNN, 1 epoch at batch
#      64, Adam 1e-3; float inference with host transfers at batch 1, 64, 4096.
#   2. quantlab train --device gpu, same models and settings (2 epochs: the first with
#      compiling and autotuning, the second steady), at the clone's autotune level
#      (cubecl.toml: minimal) and at the levels given in LEVELS; then a 100-step run with
#      CubeCL's profile log, summarised by scripts/cubecl_log.py (probe launches, autotuned
#      keys, kernel time per step).
#   3. quantlab's static int8 on the GPU (quantlab time --gpu) at batch 1, 64, 4096, and
#      burn's float on wgpu through `quantlab bench --device gpu` (REPORT.md's GPU table).
#
# usage (device machine): bash scripts/gpu_figures.sh QUANTLAB_BINARY [OUT_DIR]
#   The binary is built here (`cargo xtask bench` builds it), stripped and compressed:
#     strip -o /tmp/quantlab target/debug/quantlab && gzip -c /tmp/quantlab > .bin/quantlab.gz
#   and carried (`.bin`, and `.gl` with the Vulkan loader, see the device README).
# Each part runs on its own: one that fails prints why and the rest still run.
set -u
Q=${1:?usage: gpu_figures.sh QUANTLAB_BINARY [OUT_DIR]}
OUT=${2:-${OUT:-/tmp/gpu-figures}}
LEVELS=${LEVELS:-"balanced full"}
# A dry run where there is no GPU (lavapipe): TRAIN_LIMIT=640 TORCH_DEVICE=cpu LEVELS=balanced
LIMIT=()
[ -n "${TRAIN_LIMIT:-}" ] && LIMIT=(--train-limit "$TRAIN_LIMIT" --test-limit "$TRAIN_LIMIT")
QUICK=()
[ -n "${TRAIN_LIMIT:-}" ] && QUICK=(--quick)
mkdir -p "$OUT"
case "$Q" in
*.gz) gunzip -c "$Q" >/tmp/quantlab && chmod +x /tmp/quantlab && Q=/tmp/quantlab ;;
esac
# The Vulkan loader, where carried (device README: `.gl` holds the .deb files).
if [ -d .gl ] && ! ldconfig -p | grep -q libvulkan; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
nv=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nv" ] && export VK_DRIVER_FILES=${VK_DRIVER_FILES:-$nv}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv >"$OUT/nvidia-smi.txt" 2>&1
cat "$OUT/nvidia-smi.txt"

step() { echo; echo "== $*"; }
train() { # name level model [extra args]
    local name=$1 level=$2 model=$3
    shift 3
    local env=()
    [ "$level" != cubecl.toml ] && env=(CUBECL_AUTOTUNE_LEVEL="$level")
    # Two epochs: the first pays for compiling and autotuning, the second is steady state.
    env "${env[@]}" "$Q" train --dataset mnist --model "$model" --epochs 2 --batch-size 64 \
        --lr 0.001 --device gpu --no-mlflow --data-dir data --out "$OUT/$name" "${LIMIT[@]}" "$@" \
        >"$OUT/$name.txt" 2>&1
    if [ -f "$OUT/$name/history.csv" ]; then
        echo "$name (autotune $level): seconds per epoch $(cut -d, -f5 "$OUT/$name/history.csv" | tail -n +2 | paste -sd' ')"
    else
        echo "$name (autotune $level) failed: $(grep -v XDG_RUNTIME "$OUT/$name.txt" | tail -2)"
    fi
}

step "PyTorch $(python3 -c 'import torch; print(torch.__version__)' 2>&1)"
python3 scripts/torch_mnist.py --data data/mnist --device "${TORCH_DEVICE:-cuda}" | tee "$OUT/torch.json"

step "quantlab train on wgpu"
"$Q" --version 2>&1 | head -1
for model in mlp cnn; do
    train "$model-default" cubecl.toml "$model"
    for level in $LEVELS; do train "$model-$level" "$level" "$model"; done
done
grep -h -E "wgpu adapter|warning" "$OUT/mlp-default.txt" | head -3
echo "PyTorch CUDA for comparison: $OUT/torch.json (epoch_s, infer_us with host transfers)"

step "CubeCL profile of 100 MLP steps (probes and autotuning per step)"
CUBECL_DEBUG_LOG="$OUT/cubecl-mlp.log" CUBECL_DEBUG_OPTION=profile \
    "$Q" train --dataset mnist --model mlp --epochs 1 --batch-size 64 --train-limit "${TRAIN_LIMIT:-6400}" \
    --device gpu --no-mlflow --data-dir data --out "$OUT/mlp-profile" >"$OUT/mlp-profile.txt" 2>&1
python3 scripts/cubecl_log.py "$OUT/cubecl-mlp.log" | tee "$OUT/cubecl-mlp.txt"
gzip -f "$OUT/cubecl-mlp.log"

step "quantlab static int8 on the GPU (host transfers included)"
for model in mlp cnn; do
    ck="$OUT/$model-default"
    "$Q" quantize --checkpoint "$ck" --out "$OUT/$model-static.safetensors" --no-mlflow \
        --data-dir data >"$OUT/$model-quantize.txt" 2>&1 || tail -3 "$OUT/$model-quantize.txt"
    "$Q" time "$OUT/$model-static.safetensors" --gpu --batch 1,64,4096 --reps 50 \
        --data-dir data 2>&1 | tee "$OUT/$model-time-gpu.txt" | grep -v XDG_RUNTIME
    "$Q" time "$OUT/$model-static.safetensors" --batch 1,64 --threads 1,0 --reps 50 \
        --data-dir data 2>&1 | tee "$OUT/$model-time-cpu.txt" | tail -5
done

step "quantlab bench --device gpu --only mnist (static methods; burn-wgpu f32 beside them)"
sed -e '/^methods = \[/,/^\]/c methods = ["static-minmax-per-channel", "static-percentile-per-channel"]' \
    -e 's/^pairs = \[.*\]/pairs = []/' configs/bench.toml >"$OUT/bench.toml"
"$Q" bench "${QUICK[@]}" --only mnist --device gpu --config "$OUT/bench.toml" --results "$OUT/results" \
    --no-mlflow --data-dir data >"$OUT/bench.txt" 2>&1
tail -8 "$OUT/bench.txt"
grep -A7 "^On the GPU" "$OUT"/results/latest/REPORT.md

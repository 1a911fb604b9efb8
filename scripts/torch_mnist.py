#!/usr/bin/env python3
"""PyTorch reference for issue 11's GPU targets: quantlab's MNIST MLP (784-50-80-30-10) and
CNN (conv 3x3 1->16, ReLU, max pool 2, conv 3x3 16->32, ReLU, max pool 2, linear 1568->128,
ReLU, linear 128->10), one epoch at batch 64 with Adam 1e-3 and shuffling, then float
inference with host transfers (host batch in, host logits out) at batch 1, 64 and 4096.

The epoch is timed the way quantlab times its own (`training time` of `quantlab train`):
host batches moved to the device each step, the loss read back every 100 steps, the device
synchronised before the clock stops. Inference is the median of timed runs after warm-up.
Prints one JSON object.

usage: torch_mnist.py --data DIR [--device cuda|cpu] [--epochs 1] [--reps 50]
"""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np
import torch
from torch import nn


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data):
    x = idx(os.path.join(data, "train-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = idx(os.path.join(data, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    xt = idx(os.path.join(data, "t10k-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    mean, std = x.mean(), x.std()
    x, xt = (x - mean) / std, (xt - mean) / std
    return torch.from_numpy(x[:, None]), torch.from_numpy(y), torch.from_numpy(xt[:, None])


def mlp():
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 50), nn.ReLU(),
        nn.Linear(50, 80), nn.ReLU(),
        nn.Linear(80, 30), nn.ReLU(),
        nn.Linear(30, 10),
    )


def cnn():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def train_epoch(model, x, y, device, batch=64, lr=1e-3, seed=1):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    sync(device)
    t = time.perf_counter()
    last = float("nan")
    for step, i in enumerate(range(0, len(x), batch)):
        idx_ = order[i : i + batch]
        xb, yb = x[idx_].to(device), y[idx_].to(device)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        if step % 100 == 0:
            last = loss.item()
    sync(device)
    return time.perf_counter() - t, last


def infer_us(model, xt, device, batch, reps):
    xb = xt[:batch] if batch <= len(xt) else xt[torch.arange(batch) % len(xt)]
    xb = xb.contiguous()
    with torch.no_grad():
        for _ in range(10):
            model(xb.to(device)).cpu()
        samples = []
        for _ in range(reps):
            t = time.perf_counter()
            model(xb.to(device)).cpu()  # .cpu() waits for the device
            samples.append((time.perf_counter() - t) * 1e6)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--reps", type=int, default=50)
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(1)
    x, y, xt = load(a.data)
    out = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "models": {},
    }
    for name, make in [("mlp", mlp), ("cnn", cnn)]:
        model = make().to(device)
        epochs = [train_epoch(model, x, y, device) for _ in range(a.epochs)]
        model.eval()
        out["models"][name] = {
            "epoch_s": [round(e[0], 3) for e in epochs],
            "last_loss": epochs[-1][1],
            "infer_us": {b: round(infer_us(model, xt, device, b, a.reps), 1) for b in (1, 64, 4096)},
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

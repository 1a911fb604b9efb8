#!/usr/bin/env python3
"""The ONNX files quantlab's import is tested on: small MNIST classifiers trained in PyTorch
and exported with `torch.onnx.export`, the way a user brings a model (issue 20).

- `lenet_bn_opset{13,17}.onnx`: LeNet-5-like, conv 5x5 1->6 (padding 2) + BatchNorm + ReLU
  + max pool, conv 5x5 6->16 + BatchNorm + ReLU + max pool, linear 400->120->84->10.
- `mlp_bn_softmax_opset13.onnx`: flatten, linear 784->64 + BatchNorm1d + ReLU + Dropout,
  linear 64->10, Softmax (a final Softmax, which the import drops for classification).
- `resnet_small_opset{13,17}.onnx`: conv 3x3 1->16 + BN + ReLU, two residual blocks (conv
  + BN + ReLU, conv + BN, identity Add, ReLU) with a max pool between them, global average
  pool, linear 16->10.
- `mobilenet_small_opset13.onnx`: MobileNet-like, conv 3x3 1->16 stride 2 + BN + ReLU6, two
  depthwise-separable blocks (depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN + ReLU6; 16->32,
  then 32->64 with a stride-2 depthwise conv), global average pool, linear 64->10. PyTorch
  exports ReLU6 as `Clip(0, 6)` and the depthwise convs as `Conv` with `group` = channels.

BatchNormalization nodes are kept in the files (`do_constant_folding=False` and training
mode PRESERVE on an eval-mode model): the import must fold them itself.

Training: 2 epochs, Adam 1e-3, batch 64, seed 0, pixels / 255 normalised with MNIST's usual
mean and std (0.1307, 0.3081), which `meta.json` records for the tests.

usage: onnx_fixtures.py --data data/mnist --out crates/import/tests/fixtures [--only NAME]
(`--only` remakes one model and keeps the others' entries in meta.json)
(needs torch and onnx: `pip install torch onnx`)
"""
import argparse
import json
import os

import numpy as np
import torch
from torch import nn

from torch_mnist import idx  # the IDX reader beside this script

MEAN, STD = 0.1307, 0.3081


def load(folder, split):
    x = idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    y = idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    x = (x - MEAN) / STD
    return torch.from_numpy(x[:, None]), torch.from_numpy(y)


def lenet_bn():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def mlp_bn_softmax():
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.1),
        nn.Linear(64, 10),
        nn.Softmax(dim=1),
    )


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + x)


def resnet_small():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        Block(16), nn.MaxPool2d(2), Block(16),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )


def separable(cin, cout, stride):
    return [
        nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin), nn.BatchNorm2d(cin),
        nn.ReLU6(),
        nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU6(),
    ]


def mobilenet_small():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
        *separable(16, 32, 1),
        *separable(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10),
    )


def train(model, x, y, epochs=2, batch=64, seed=0):
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    # A model ending in Softmax trains on its log (NLL), the others on logits.
    softmax_out = isinstance(model[-1], nn.Softmax)
    loss_fn = nn.NLLLoss() if softmax_out else nn.CrossEntropyLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            j = order[i : i + batch]
            out = model(x[j])
            loss = loss_fn(torch.log(out + 1e-12) if softmax_out else out, y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def export(model, path, opset):
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 28, 28),
        path,
        opset_version=opset,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        do_constant_folding=False,
        training=torch.onnx.TrainingMode.PRESERVE,
        dynamo=False,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/mnist")
    ap.add_argument("--out", default="crates/import/tests/fixtures")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--only")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    x, y = load(args.data, "train")
    xt, yt = load(args.data, "t10k")
    meta = {"normalize": [MEAN, STD], "torch": torch.__version__, "models": {}}
    meta_path = os.path.join(args.out, "meta.json")
    if args.only and os.path.exists(meta_path):
        meta["models"] = json.load(open(meta_path))["models"]
    for name, make, opsets in [
        ("lenet_bn", lenet_bn, [13, 17]),
        ("mlp_bn_softmax", mlp_bn_softmax, [13]),
        ("resnet_small", resnet_small, [13, 17]),
        ("mobilenet_small", mobilenet_small, [13]),
    ]:
        if args.only and name != args.only:
            continue
        model = train(make(), x, y, epochs=args.epochs)
        acc = accuracy(model, xt, yt)
        for opset in opsets:
            path = os.path.join(args.out, f"{name}_opset{opset}.onnx")
            export(model, path, opset)
            meta["models"][os.path.basename(path)] = {"torch_test_accuracy": acc}
            print(f"{path}: {os.path.getsize(path)} bytes, PyTorch test accuracy {acc:.4f}")
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Two quantlab binaries on the same model files: are their results identical, and is the
new one slower?

For a refactoring of the engine (or any change that must not change results): both
binaries score every `.safetensors` file of a run folder on the test split with
`quantlab eval --json` under every kernel path this CPU has (`QUANTLAB_KERNEL`), and the
accuracy and the f64 mean loss must be equal to the last bit. Then `quantlab time` times
each file with both binaries in rounds (A then B, then B then A, ...), pinned to one core
by the binaries themselves, and the B/A ratio of the medians is taken per round, so a noise
burst lands on one round, not on one binary. Prints one line per file and path, and the
median ratio with its min-max over rounds.

usage: ab_engine.py OLD_BIN NEW_BIN RUN_DIR [--rounds R] [--reps K] [--paths P,Q] [--only S]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run_json(exe, args, env):
    out = subprocess.run([exe, *args], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{exe} {' '.join(args)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def known_paths(exe, model, env):
    """The kernel path names `exe` knows: its error for an unknown one lists them."""
    out = subprocess.run([exe, "eval", "--model", str(model), "--json"], capture_output=True,
                         text=True, env=dict(env, QUANTLAB_KERNEL="?"))
    known = out.stderr.split("known:")[-1].strip().splitlines()[0]
    return [p.strip() for p in known.split(",") if p.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("run_dir")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--paths", default="",
                    help="kernel paths (QUANTLAB_KERNEL names); default: every one the new "
                         "binary lists in its error for an unknown name")
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--only", default="", help="substring a file name must contain")
    a = ap.parse_args()
    files = sorted(p for p in Path(a.run_dir, "models").glob("*.safetensors") if a.only in p.name)
    if not files:
        sys.exit(f"no .safetensors files under {a.run_dir}/models")
    base = dict(os.environ)
    names = a.paths.split(",") if a.paths else known_paths(a.new, files[0], base)
    paths = []
    for p in names:
        env = dict(base, QUANTLAB_KERNEL=p)
        probe = subprocess.run([a.new, "eval", "--model", str(files[0]), "--json"],
                               capture_output=True, text=True, env=env)
        if probe.returncode == 0:
            paths.append(p)
        else:
            print(f"path {p}: not on this CPU, skipped")
    mismatches = 0
    for f in files:
        for p in paths:
            env = dict(base, QUANTLAB_KERNEL=p)
            old = run_json(a.old, ["eval", "--model", str(f), "--json"], env)
            new = run_json(a.new, ["eval", "--model", str(f), "--json"], env)
            same = all(old[k] == new[k] for k in ("accuracy", "loss", "samples"))
            mismatches += not same
            print(f"{'same' if same else 'DIFFERENT'}  {f.name:<48} {p:<11} "
                  f"acc {new['accuracy']:.6f} loss {new['loss']!r}"
                  + ("" if same else f"  (old acc {old['accuracy']} loss {old['loss']!r})"))
    print()
    print(f"timing: {a.rounds} rounds, {a.reps} reps each, batches {a.batches}, one thread; "
          "ratio = new median / old median per round")
    for f in files:
        ratios = {}
        for r in range(a.rounds):
            order = [("old", a.old), ("new", a.new)]
            if r % 2:
                order.reverse()
            med = {}
            for name, exe in order:
                res = run_json(exe, ["time", str(f), "--batch", a.batches, "--threads", "1",
                                     "--reps", str(a.reps), "--json"], base)
                for row in res["results"]:
                    med[(name, row["batch"])] = row["median_us"]
            for b in a.batches.split(","):
                b = int(b)
                ratios.setdefault(b, []).append(med[("new", b)] / med[("old", b)])
        for b, v in ratios.items():
            print(f"{f.name:<48} b{b:<3} new/old {statistics.median(v):.3f} "
                  f"(min {min(v):.3f}, max {max(v):.3f})")
    sys.exit(1 if mismatches else 0)


if __name__ == "__main__":
    main()

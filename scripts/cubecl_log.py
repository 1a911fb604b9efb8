#!/usr/bin/env python3
"""Where a wgpu training run's GPU time goes, from CubeCL's log
(`CUBECL_DEBUG_LOG=FILE CUBECL_DEBUG_OPTION=profile quantlab train ... --device gpu`).

Steps are split at burn's cross-entropy gather (one `GatherKernel` launch per training
step, as in crates/cli/tests/gpu_probes.rs). For each step: kernel launches, kernel time,
throughput-probe launches and their time, and keys autotuned (the autotune log's
`Fastest result` lines, written to the same file). Then the steady state (the second half
of the steps, less the last segment, which also holds the end-of-epoch evaluation): kernel
time per step, the kernels that take it, and any key autotuned there.

usage: cubecl_log.py LOG [--top 12]
"""
import argparse
import collections
import json

PROBES = ("MemoryDirectThroughput", "LaunchOverhead", "ComputeDirectThroughput", "PrimeBuffer")
UNITS = {"ns": 1e-3, "µs": 1.0, "us": 1.0, "ms": 1e3, "s": 1e6}


def duration_us(text):
    for unit in ("ns", "µs", "us", "ms", "s"):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * UNITS[unit]
            except ValueError:
                return None
    return None


def parse(path):
    """[{launches, kernel_us, probes, probe_us, tunes, by_name}] per step (step 0 = before
    the first gather)."""
    step = lambda: {"launches": 0, "kernel_us": 0.0, "probes": 0, "probe_us": 0.0,
                    "tunes": 0, "tuned": [], "by_name": collections.Counter()}
    steps = [step()]
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("Fastest result"):
                steps[-1]["tunes"] += 1
                # "Fastest result <candidate>-<key>": the key says why a tune ran.
                steps[-1]["tuned"].append(line.split("-", 1)[-1].strip()[:300])
                continue
            if not line.startswith("|"):
                continue
            parts = line[1:].split("|", 1)
            if len(parts) < 2:
                continue
            us = duration_us(parts[0].strip())
            if us is None:
                continue  # a summary table row starts with a name
            name = parts[1].strip()
            if name.startswith("GatherKernel"):
                steps.append(step())
            s = steps[-1]
            if name.startswith(PROBES):
                s["probes"] += 1
                s["probe_us"] += us
            else:
                s["launches"] += 1
                s["kernel_us"] += us
                s["by_name"][name.split(" | ")[0].split("_")[0]] += us
    return steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    steps = parse(a.log)
    half = steps[len(steps) // 2 : -1] if len(steps) > 2 else steps
    n = max(len(half), 1)
    summary = {
        "steps": len(steps) - 1,
        "probes_per_step": [s["probes"] for s in steps],
        "tunes_per_step": [s["tunes"] for s in steps],
        "steady": {
            "steps": len(half),
            "launches_per_step": sum(s["launches"] for s in half) / n,
            "kernel_us_per_step": sum(s["kernel_us"] for s in half) / n,
            "probe_us_per_step": sum(s["probe_us"] for s in half) / n,
            "tunes": sum(s["tunes"] for s in half),
        },
    }
    top = collections.Counter()
    for s in half:
        top.update(s["by_name"])
    summary["steady"]["top_kernels_us_per_step"] = {k: round(v / n, 1) for k, v in top.most_common(a.top)}
    keys = collections.Counter(k for s in half for k in s["tuned"])
    summary["steady"]["tuned_keys"] = dict(keys.most_common(a.top))
    if a.json:
        print(json.dumps(summary))
        return
    print(f"{summary['steps']} steps; probe launches per step: {summary['probes_per_step']}")
    print(f"keys autotuned per step: {summary['tunes_per_step']}")
    st = summary["steady"]
    print(f"steady state (last {st['steps']} steps): {st['launches_per_step']:.1f} launches, "
          f"{st['kernel_us_per_step']:.1f} us of kernels, {st['probe_us_per_step']:.1f} us of probes "
          f"per step; {st['tunes']} keys autotuned")
    for k, v in st["top_kernels_us_per_step"].items():
        print(f"  {v:10.1f} us/step  {k}")
    if st["tuned_keys"]:
        print("keys autotuned in the steady state (times):")
        for k, v in st["tuned_keys"].items():
            print(f"  {v:4d}  {k}")


if __name__ == "__main__":
    main()

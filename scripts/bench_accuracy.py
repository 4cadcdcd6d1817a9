"""Prediction accuracy on this machine: calibrate once, then predict and measure models at 1 and 2 threads.

    python scripts/bench_accuracy.py [FOLDER ...] [--runs 30] [--threads 1,2] [--spec host.yaml]

Calibration uses microbenchmarks only (single Conv, MatMul, Add, Relu ops), never the models predicted, so
the error printed is the error a user gets on an unseen model. Each model is measured with onnxruntime
(median of --runs after warm-up, graph optimizations at EXTENDED, one inter-op thread) and predicted with
the `runtime` fusion preset at fp32, batch 1. Each point is measured --repeat times in separate passes
and the median kept, because the timings on a shared 2-vCPU machine move by tens of percent between runs.
"""

from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import tempfile

import yaml
from tabulate import tabulate

from onnx_hwutil.calibrate import calibrate
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.validate import validate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--spec", default=None, help="an existing calibrated spec instead of calibrating now")
    ap.add_argument("--repeat", type=int, default=3,
                    help="independent measurements per point, at different times; their median is used")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    spec = args.spec
    if spec is None:
        spec = os.path.join(tempfile.mkdtemp(), "host.yaml")
        with open(spec, "w") as f:
            yaml.safe_dump(calibrate(max(threads)), f, sort_keys=False)
        print(f"calibrated: {spec}", file=sys.stderr)
    paths = sorted(glob.glob(os.path.join(ROOT, "models", "*.onnx")))
    for folder in args.folders:
        paths += sorted(glob.glob(os.path.join(folder, "**", "*.onnx"), recursive=True))
    # Shared 2-vCPU machines are noisy (a neighbour's burst moves one median by 30%): every point is
    # measured --repeat times, in separate passes over all models, and the median of those is kept.
    measured: dict[tuple[str, int], list[float]] = {}
    predicted: dict[tuple[str, int], float] = {}
    failed: dict[tuple[str, int], str] = {}
    for _ in range(args.repeat):
        for path in paths:
            for t in threads:
                try:
                    v = validate(path, spec, threads=t, runs=args.runs)
                except HwUtilError as e:
                    failed[(path, t)] = f"failed: {e}"[:60]
                    continue
                measured.setdefault((path, t), []).append(v.measured_latency_s)
                predicted[(path, t)] = v.predicted_latency_s
    rows, errors = [], {t: [] for t in threads}
    for path in paths:
        row = [os.path.relpath(path, ROOT) if path.startswith(ROOT) else path]
        for t in threads:
            if (path, t) in failed:
                row += ["-", "-", failed[(path, t)]]
                continue
            meas = statistics.median(measured[(path, t)])
            err = (predicted[(path, t)] - meas) / meas
            errors[t].append(abs(err))
            row += [f"{predicted[(path, t)] * 1e3:.2f}", f"{meas * 1e3:.2f}", f"{100 * err:+.1f}%"]
        rows.append(row)
    cols = ("predicted ms", "measured ms", "error")
    headers = ["model"] + [f"{h} ({t} thr)" for t in threads for h in cols]
    print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    for t in threads:
        e = errors[t]
        if e:
            print(f"{t} thread(s): median |error| {100 * statistics.median(e):.1f}%, "
                  f"max {100 * max(e):.1f}%, over {len(e)} models")
    return 0


if __name__ == "__main__":
    sys.exit(main())

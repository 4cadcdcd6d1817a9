"""Benchmark the sweep of issue 5: 2 models x 4 chips x 7 batches x 3 precisions x 2 presets = 336 points.

Each configuration runs the whole command in a fresh subprocess (interpreter start-up and imports count):

    onnx-hwutil sweep models/resnet18.onnx models/resnet50.onnx --hw xeon-8490h,h100-sxm5,kpu-t256,tpu-v4
        --batch 1,2,4,8,16,32,64 --precision fp32,fp16,int8 --fusion none,runtime -f csv -o /dev/null
        --jobs N                          for N in --jobs (default 1,2)
        --scheduler tcp://127.0.0.1:PORT  a dask.distributed cluster of --dask-workers worker processes
                                          started here beforehand (its start-up is not timed)

Every configuration runs --repeat times (default 3); the table shows the median wall time, the speed-up
against --jobs 1, how many points failed (fp16 on the Xeon 8490H and the TPU v4, which have none, fail by
design) and the target (336 points in at most 20 s). The CSV of every configuration must be identical;
the script checks. It exits 0 regardless (it is a benchmark). Run from the repository root on an otherwise
idle machine:

    python scripts/bench_sweep.py [--repeat 3] [--jobs 1,2] [--dask-workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ARGS = ["models/resnet18.onnx", "models/resnet50.onnx", "--hw", "xeon-8490h,h100-sxm5,kpu-t256,tpu-v4",
        "--batch", "1,2,4,8,16,32,64", "--precision", "fp32,fp16,int8", "--fusion", "none,runtime",
        "-f", "csv"]
TARGET_S = 20.0


def run(extra: list[str], out: str) -> float:
    cmd = [sys.executable, "-m", "onnx_hwutil.cli", "sweep", *ARGS, "-o", out, *extra]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", default="1,2")
    ap.add_argument("--dask-workers", type=int, default=2, help="0 skips the Dask run")
    ap.add_argument("--json")
    a = ap.parse_args()
    configs = [(f"--jobs {j}", ["--jobs", j]) for j in a.jobs.split(",")]
    cluster = None
    if a.dask_workers:
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=a.dask_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        configs.append((f"dask, {a.dask_workers} workers", ["--scheduler", cluster.scheduler_address]))
    results, outputs = [], {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, extra in configs:
                out = os.path.join(tmp, f"{len(outputs)}.csv")
                times = [run(extra, out) for _ in range(a.repeat)]
                with open(out) as f:
                    outputs[name] = f.read()
                results.append({"config": name, "median_s": statistics.median(times), "runs_s": times})
    finally:
        if cluster is not None:
            cluster.close()
    first = next(iter(outputs.values()))
    points = first.count("\n") - 1
    failed = sum(1 for line in first.splitlines()[1:] if line.rstrip().split(",")[-1])
    base = results[0]["median_s"]
    print(f"{points} points ({failed} failed by design: a precision a chip lacks), {a.repeat} runs each, "
          f"{os.cpu_count()} CPUs\n")
    print(f"{'configuration':<22} {'median s':>9} {'speed-up':>9}  target <= {TARGET_S:g} s")
    for r in results:
        ok = "PASS" if r["median_s"] <= TARGET_S else "FAIL"
        print(f"{r['config']:<22} {r['median_s']:>9.2f} {base / r['median_s']:>8.2f}x  {ok}")
    same = all(o == first for o in outputs.values())
    print(f"\nidentical CSV from every configuration: {same}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"points": points, "failed": failed, "results": results, "identical": same}, f,
                      indent=1)


if __name__ == "__main__":
    main()

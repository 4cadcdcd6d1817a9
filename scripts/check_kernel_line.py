"""Check kernel_line.py on the corpus: a batch taken off the line through batches 1, 2 and 4 maps as the fused
graph costed and settled at that batch does, schedule for schedule and peak for peak.

For every corpus model (its dims bound as corpus/manifest.json says) on an H100, a Xeon and a TPU v4 at the
chip's own precision and fusion preset: batches 1 and 4 are analyzed (which binds 1, 2 and 4), then at
batches 3, 5, 8, 37 and 256 the Analyzer's schedule (off the line, where there is one) is compared with
`schedule()` of the fused graph at that batch, and its peak memory with the Profile's. Prints one line per
point (line or not, and why not: no affine binding) and a summary; exits 1 on any difference.

    python scripts/check_kernel_line.py [--corpus corpus]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onnx_hwutil.analysis import Analyzer, Point
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.fusion import for_chip
from onnx_hwutil.hardware.mapping import schedule

CHIPS = ("h100-sxm5", "xeon-8490h", "tpu-v4")
BATCHES = (3, 5, 8, 37, 256)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path("corpus"))
    args = ap.parse_args()
    models = json.loads((args.corpus / "manifest.json").read_text())["models"]
    points = lines = differences = 0
    for entry in models:
        path = str(args.corpus / entry["file"])
        a = Analyzer(dims=entry.get("dims") or {})
        for hw in CHIPS:
            spec = a.spec(hw)
            try:
                precision = a.run(Point(path, hw, 1, "auto", "auto")).precision
                a.run(Point(path, hw, 4, precision, "auto"))
            except HwUtilError as e:
                print(f"{entry['name']} {hw}: no batch 4 ({e})")
                continue
            fusion = for_chip("auto", spec.kind)
            line = a._kernel_line(path, precision, fusion)
            points += 1
            lines += line is not None
            for b in BATCHES:
                try:
                    fast = a.run(Point(path, hw, b, precision, "auto"))
                    slow = schedule(a.fused(path, b, precision, fusion), spec, precision, b)
                except HwUtilError as e:
                    print(f"{entry['name']} {hw} batch {b}: {e}")
                    break
                if fast.to_dict(True) != slow.to_dict(True):
                    differences += 1
                    print(f"DIFFERENCE {entry['name']} {hw} batch {b}: schedule")
                peak = a.profile(path, b, precision).totals.peak_memory_bytes
                if a.peak_memory_bytes(path, b, precision) != peak:
                    differences += 1
                    print(f"DIFFERENCE {entry['name']} {hw} batch {b}: peak memory")
            why = "on a line" if line else ("no line" if a.affine_in_batch(path) else "no affine binding")
            print(f"{entry['name']} {hw}: {why}", flush=True)
    print(f"SUMMARY: {points} points, {lines} on a line, {len(BATCHES)} batches each, "
          f"{differences} differences")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())

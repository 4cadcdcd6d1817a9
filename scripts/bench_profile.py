"""Benchmark whole-process `onnx-hwutil profile` runs against onnx-tool's profiler.

What it measures: wall time and peak RSS of a *fresh subprocess* per run (so interpreter start-up and
imports count), via ``/usr/bin/time -f "%e %M"`` around each child:

* ``onnx-hwutil profile MODEL --batch 1 --format json -o /dev/null`` for ``models/resnet50.onnx``,
  ``models/bert_base.onnx`` and synthetic chains of 10,000 and 100,000 nodes
  (written by ``scripts/gen_graph.py`` into a temporary directory; generation is not timed);
* ``onnx_tool.model_profile`` on the same ResNet50 and BERT files, in a fresh ``python3 -c`` child with its
  printed table sent to /dev/null and its CSV written to a temporary file (checked for the ``Total`` row).
  onnx-tool needs the weights: if ``models/NAME.onnx.data`` is present the model is loaded as is; if it is
  absent (it is not committed, so a fresh clone lacks it) a temporary copy is written with every external
  initializer filled with random values of the right dtype and shape.  The symbolic ``batch`` dim is bound
  to 1 both ways: the inputs are passed to onnx-tool as arrays (its ``dynamic_shapes`` takes arrays, not
  shape tuples) and, in the temporary copy, the graph-input dims are rewritten too.

Each case runs R times (``--repeat``, default 3); the table gives the median wall time and the maximum peak
RSS (MiB) over the runs, then the targets with PASS/FAIL:

* ResNet50: onnx-hwutil time <= 0.6 x onnx-tool time;
* 100k-node graph: <= 15 s and <= 2 GiB peak RSS;
* 100k-node time <= 12 x the 10k-node time;

and the BERT time ratio against onnx-tool (no target).  A case whose child fails is recorded as
``failed: <reason>`` and the targets depending on it as ``n/a``.  It exits 0 regardless (it is a benchmark).

Run it from the repository root (the machine should be otherwise idle)::

    python scripts/bench_profile.py [--repeat 3] [--json results.json]

Needs onnx-tool (``pip install onnx-tool``; it is in the project's ``dev`` extra) and the ``onnx-hwutil``
package installed.  ``--synthetic-weights`` forces the random-weights copy even where the .data files exist
(to exercise the fresh-clone path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tabulate import tabulate

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
GEN_GRAPH = REPO / "scripts" / "gen_graph.py"
GNU_TIME = "/usr/bin/time"
BATCH = 1

# onnx-tool child: argv = model path, csv path, JSON {input name: [shape, numpy dtype name]}.
ONNX_TOOL_CHILD = """
import json, sys
import numpy as np
import onnx_tool
spec = json.loads(sys.argv[3])
inputs = {k: np.ones(shape, dtype=np.dtype(dt)) for k, (shape, dt) in spec.items()}
onnx_tool.model_profile(sys.argv[1], dynamic_shapes=inputs, save_profile=sys.argv[2])
"""


@dataclass
class Case:
    name: str
    argv: list[str]
    check_csv: Path | None = None  # onnx-tool: its CSV must end up holding the Total row
    runs: list[tuple[float, int]] = field(default_factory=list)  # (wall s, peak RSS KiB)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    @property
    def wall(self) -> float | None:
        return statistics.median(w for w, _ in self.runs) if self.ok else None

    @property
    def rss_mib(self) -> float | None:
        return max(r for _, r in self.runs) / 1024 if self.ok else None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def run_once(argv: list[str], cwd: Path, tmp: Path) -> tuple[float, int]:
    """One fresh child; returns (wall s, peak RSS KiB).  Raises RuntimeError with a reason on failure."""
    tfile = tmp / "time.out"
    if Path(GNU_TIME).exists():
        cmd = [GNU_TIME, "-f", "%e %M", "-o", str(tfile), *argv]
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {_last_line(p.stderr)}")
        wall_s, rss_kib = _last_line(tfile.read_text()).split()
        return float(wall_s), int(rss_kib)
    # Fallback without GNU time: per-child rusage from wait4.
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {_last_line(err)}")
    return round(wall, 2), int(usage.ru_maxrss)


def measure(case: Case, repeat: int, tmp: Path) -> None:
    for i in range(repeat):
        try:
            if case.check_csv is not None:
                case.check_csv.unlink(missing_ok=True)
            res = run_once(case.argv, REPO, tmp)
            if case.check_csv is not None:
                text = case.check_csv.read_text() if case.check_csv.exists() else ""
                if "Total" not in text:
                    raise RuntimeError("onnx-tool exited 0 but wrote no profile Total row")
        except (RuntimeError, OSError, ValueError) as e:
            case.error = f"failed: {e}"
            print(f"  {case.name}: run {i + 1}/{repeat} {case.error}", flush=True)
            return
        case.runs.append(res)
        print(f"  {case.name}: run {i + 1}/{repeat} {res[0]:.2f} s, {res[1] / 1024:.0f} MiB", flush=True)


# ---------------------------------------------------------------- onnx-tool inputs and weights


def input_spec(model: onnx.ModelProto) -> dict[str, tuple[list[int], str]]:
    """Graph inputs (not initializers) with the `batch` dim bound; {name: (shape, numpy dtype name)}."""
    inits = {t.name for t in model.graph.initializer}
    spec = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        shape = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                shape.append(d.dim_value)
            elif d.dim_param == "batch":
                shape.append(BATCH)
            else:
                raise ValueError(f"input {vi.name}: unbound symbolic dim {d.dim_param!r}")
        spec[vi.name] = (shape, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)).name)
    return spec


def bind_batch_dims(model: onnx.ModelProto) -> None:
    for vi in model.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param == "batch":
                d.ClearField("dim_param")
                d.dim_value = BATCH


def materialize(src: Path, dst: Path, rng: np.random.Generator) -> int:
    """Write a copy of `src` with external initializers filled with random data; returns how many."""
    model = onnx.load(str(src), load_external_data=False)
    n = 0
    for i, t in enumerate(model.graph.initializer):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
        shape = tuple(t.dims)
        if dtype.kind == "f":
            arr = (rng.standard_normal(shape) * 0.02).astype(dtype)
        elif dtype.kind in "iu":
            arr = rng.integers(0, 2, size=shape).astype(dtype)  # small, valid as indices
        elif dtype.kind == "b":
            arr = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ValueError(f"initializer {t.name}: cannot synthesise dtype {dtype}")
        model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
        n += 1
    bind_batch_dims(model)
    onnx.save(model, str(dst))
    return n


def onnx_tool_case(name: str, model_path: Path, tmp: Path, synthetic: bool, rng: np.random.Generator,
                   notes: list[str]) -> Case:
    csv = tmp / f"{model_path.stem}_onnx_tool.csv"
    case = Case(name, [], check_csv=csv)
    try:
        spec = input_spec(onnx.load(str(model_path), load_external_data=False))
        data = model_path.with_name(model_path.name + ".data")
        target = model_path
        if synthetic or not data.exists():
            target = tmp / f"{model_path.stem}_weights.onnx"
            n = materialize(model_path, target, rng)
            why = "forced" if synthetic else f"{data.name} absent"
            notes.append(f"{name}: {why}; random weights for {n} external initializers in a temp copy")
        else:
            notes.append(f"{name}: real weights ({data.name} present)")
    except (OSError, ValueError, onnx.checker.ValidationError) as e:
        case.error = f"failed: preparing model: {e}"
        return case
    case.argv = [sys.executable, "-c", ONNX_TOOL_CHILD, str(target), str(csv), json.dumps(spec)]
    return case


# ---------------------------------------------------------------- report


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def target(desc: str, value: str, ok: bool | None) -> dict:
    return {"target": desc, "value": value, "result": "n/a" if ok is None else ("PASS" if ok else "FAIL")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--synthetic-weights", action="store_true",
                    help="give onnx-tool random-weight copies even where models/*.onnx.data exist")
    args = ap.parse_args()
    repeat = max(1, args.repeat)

    hwutil = shutil.which("onnx-hwutil")
    hw_cmd = [hwutil] if hwutil else [sys.executable, "-m", "onnx_hwutil.cli"]
    onnx_tool_missing = ""
    try:
        import onnx_tool

        onnx_tool_version = getattr(onnx_tool, "VERSION", None) or "unknown"
    except ImportError as e:
        onnx_tool_version = None
        onnx_tool_missing = f"failed: onnx-tool not importable ({e}); pip install onnx-tool"
    notes: list[str] = []
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory(prefix="bench_profile_") as td:
        tmp = Path(td)
        print("generating synthetic graphs ...", flush=True)
        graphs = {}
        for n in (10_000, 100_000):
            path = tmp / f"g{n // 1000}k.onnx"
            subprocess.run([sys.executable, str(GEN_GRAPH), str(n), str(path)], check=True)
            graphs[n] = path

        def hw(path: Path) -> list[str]:
            return [*hw_cmd, "profile", str(path), "--batch", str(BATCH), "--format", "json",
                    "-o", os.devnull]

        cases = {
            "hw_resnet50": Case("onnx-hwutil resnet50", hw(MODELS / "resnet50.onnx")),
            "hw_bert": Case("onnx-hwutil bert_base", hw(MODELS / "bert_base.onnx")),
            "hw_10k": Case("onnx-hwutil 10k-node graph", hw(graphs[10_000])),
            "hw_100k": Case("onnx-hwutil 100k-node graph", hw(graphs[100_000])),
        }
        for key, stem in (("ot_resnet50", "resnet50"), ("ot_bert", "bert_base")):
            name = f"onnx-tool {stem}"
            if onnx_tool_version is None:
                cases[key] = Case(name, [], error=onnx_tool_missing)
            else:
                cases[key] = onnx_tool_case(name, MODELS / f"{stem}.onnx", tmp, args.synthetic_weights, rng,
                                            notes)

        print(f"running {len(cases)} cases x {repeat} ...", flush=True)
        for case in cases.values():
            if case.error is None:
                measure(case, repeat, tmp)

    c = cases
    rows = [[k.name, fmt(k.wall, ".2f"), fmt(k.rss_mib, ".0f"), k.error or ""] for k in c.values()]

    def ratio(a: Case, b: Case) -> float | None:
        return a.wall / b.wall if a.ok and b.ok and b.wall else None

    r_resnet = ratio(c["hw_resnet50"], c["ot_resnet50"])
    r_bert = ratio(c["hw_bert"], c["ot_bert"])
    r_scale = ratio(c["hw_100k"], c["hw_10k"])
    h100 = c["hw_100k"]
    targets = [
        target("ResNet50: onnx-hwutil time <= 0.6x onnx-tool", fmt(r_resnet, ".2f") + "x",
               None if r_resnet is None else r_resnet <= 0.6),
        target("100k-node graph time <= 15 s", fmt(h100.wall, ".2f") + " s",
               None if not h100.ok else h100.wall <= 15),
        target("100k-node graph peak RSS <= 2 GiB", fmt(h100.rss_mib, ".0f") + " MiB",
               None if not h100.ok else h100.rss_mib <= 2048),
        target("100k-node time <= 12x 10k-node time", fmt(r_scale, ".2f") + "x",
               None if r_scale is None else r_scale <= 12),
    ]

    print()
    print(f"whole-process runs, median wall of {repeat}, max peak RSS of {repeat} "
          f"({platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"onnx-tool {onnx_tool_version})")
    print(tabulate(rows, headers=["case", "median wall s", "peak RSS MiB", "error"], tablefmt="github",
                   disable_numparse=True, colalign=("left", "right", "right", "left")))
    print()
    print(tabulate([[t["target"], t["value"], t["result"]] for t in targets],
                   headers=["target", "measured", "result"], tablefmt="github",
                   disable_numparse=True, colalign=("left", "right", "left")))
    print()
    print(f"BERT: onnx-hwutil / onnx-tool time = {fmt(r_bert, '.2f')}x (no target)")
    for note in notes:
        print(f"note: {note}")
    n_pass = sum(t["result"] == "PASS" for t in targets)
    bad = [t["target"] for t in targets if t["result"] != "PASS"]
    tail = f"; not passed: {'; '.join(bad)}" if bad else ""
    print(f"SUMMARY: {n_pass}/{len(targets)} targets passed{tail}")

    if args.json:
        out = {
            "repeat": repeat,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "onnx_tool_version": onnx_tool_version,
            "cases": {k: {"name": v.name, "runs": [{"wall_s": w, "peak_rss_kib": r} for w, r in v.runs],
                          "median_wall_s": v.wall, "peak_rss_mib": v.rss_mib, "error": v.error}
                      for k, v in c.items()},
            "ratios": {"resnet50_vs_onnx_tool": r_resnet, "bert_vs_onnx_tool": r_bert,
                       "100k_vs_10k": r_scale},
            "targets": targets,
            "notes": notes,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

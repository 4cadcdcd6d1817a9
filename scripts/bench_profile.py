"""Benchmark issue 16's speed targets, whole process, with onnx-tool's profiler in the same run.

What it measures: wall time and peak RSS of a *fresh subprocess* per run (so interpreter start-up and
imports count), via ``/usr/bin/time -f "%e %M"`` around each child:

* start-up: ``onnx-hwutil --version`` against ``python -c "import onnx"``; and ``python -c "import onnx,
  networkx"``, the floor under any ``profile`` built on those two (printed against onnx-tool's runs);
* ``onnx-hwutil profile`` on ``models/resnet50.onnx`` and ``models/bert_base.onnx`` (and any ``--extra
  NAME=PATH`` full model, e.g. EfficientNet-B0 and GPT-2 from the corpus, its other dims bound as
  corpus/manifest.json says), and ``onnx_tool.model_profile``
  on the same files in a fresh child (its CSV checked for the ``Total`` row). onnx-tool needs the weights:
  where ``NAME.onnx.data`` is absent a temporary copy gets random ones of the right dtype and shape;
* ``onnx-hwutil analyze`` of ViT-B/16 on a GPU and a CPU with and without findings;
* ``analyze --hw h100-sxm5`` (load, shapes, fuse, map) of synthetic chains of 10,000 and 100,000 nodes
  (``scripts/gen_graph.py``; generation is not timed);
* ``profile`` and ``analyze`` of a Llama-3-8B-shaped decoder exported graph-only (scripts/build_llama.py:
  its weights are external references that are never written) at one decode step.

Each case runs R times (``--repeat``, default 3), round-robin over the cases; the table gives the median
wall time and the maximum peak RSS (MiB) over the runs, then the targets with PASS/FAIL: start-up <= 1.5x
``import onnx``; profile <= 0.5x onnx-tool on BERT-base and GPT-2, <= 0.8x on EfficientNet-B0; analyze
with findings <= 2x without; the 100k-node analyze <= 10 s, <= 1 GiB and <= 11x the 10k-node one; the 8B
decoder under 1 GiB. A case whose
child fails is recorded as ``failed: <reason>`` and the targets depending on it as ``n/a``. It exits 0
regardless (it is a benchmark). Run it from the repository root on an otherwise idle machine::

    python scripts/bench_profile.py [--repeat 3] [--json results.json] [--extra gpt2=PATH ...]

Needs onnx-tool (``pip install onnx-tool``; it is in the project's ``dev`` extra) and the ``onnx-hwutil``
package installed. ``--synthetic-weights`` forces the random-weights copy even where the .data files exist.
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
CHIPS = "h100-sxm5,xeon-8490h"  # the findings case: a GPU and a CPU, each with its own what-ifs

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
    model: Path | None = None  # onnx-tool: the file it reads (with weights), which ours then reads too

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


def measure(case: Case, i: int, repeat: int, tmp: Path) -> None:
    """Run `i` of `repeat` of one case; a failure ends the case."""
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


def manifest_dims(path: Path) -> dict[str, int]:
    """The symbolic dims other than the batch that corpus/manifest.json binds for a corpus file (GPT-2's
    `sequence`), so that both tools run it at the same shapes; {} for any other file."""
    manifest = path.resolve().parent / "manifest.json"
    if not manifest.exists():
        return {}
    entries = json.loads(manifest.read_text()).get("models", [])
    return next((dict(e.get("dims") or {}) for e in entries if e.get("file") == path.name), {})


def input_spec(model: onnx.ModelProto,
               dims: dict[str, int] | None = None) -> dict[str, tuple[list[int], str]]:
    """Graph inputs (not initializers) with the `batch` dim (and `dims`) bound; {name: (shape, numpy dtype
    name)}."""
    dims = dims or {}
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
            elif d.dim_param in dims:
                shape.append(dims[d.dim_param])
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
        spec = input_spec(onnx.load(str(model_path), load_external_data=False), manifest_dims(model_path))
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
    case.model = target
    return case


def _llama_8b() -> onnx.ModelProto:
    """Llama-3-8B's dims (scripts/build_llama.py), graph-only: weights are external references never
    written, so neither tool can read them, and a profile must not need them."""
    import importlib.util
    from dataclasses import replace

    spec = importlib.util.spec_from_file_location("build_llama", REPO / "scripts" / "build_llama.py")
    bl = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bl
    spec.loader.exec_module(bl)
    cfg = replace(bl.LLAMA_1B, hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128,
                  intermediate=14336, max_pos=8192)
    return bl.build_plain(cfg)


# ---------------------------------------------------------------- report


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def target(desc: str, value: str, ok: bool | None) -> dict:
    return {"target": desc, "value": value, "result": "n/a" if ok is None else ("PASS" if ok else "FAIL")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--extra", nargs="*", default=[], metavar="NAME=PATH",
                    help="more full models for profile against onnx-tool, e.g. efficientnet_b0=corpus/... "
                         "gpt2=corpus/... (EfficientNet-B0's target is 0.8x, the others' 0.5x)")
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
        print("generating synthetic graphs and the 8B decoder ...", flush=True)
        graphs = {}
        for n in (10_000, 100_000):
            path = tmp / f"g{n // 1000}k.onnx"
            subprocess.run([sys.executable, str(GEN_GRAPH), str(n), str(path)], check=True)
            graphs[n] = path
        llama8b = tmp / "llama3_8b.onnx"
        llama8b.write_bytes(_llama_8b().SerializeToString())

        def hw(path: Path, *extra: str) -> list[str]:
            return [*hw_cmd, "profile", str(path), "--batch", str(BATCH), "--format", "json",
                    "-o", os.devnull, *extra]

        def analyze(path: Path, *extra: str) -> list[str]:
            return [*hw_cmd, "analyze", str(path), "--format", "json", "-o", os.devnull, *extra]

        decode = ["--dim", "batch_size=1", "--dim", "sequence_length=1", "--dim", "past_sequence_length=1024",
                  "--dim", "total_sequence_length=1025"]
        cases = {
            "version": Case("onnx-hwutil --version", [*hw_cmd, "--version"]),
            "import_onnx": Case("python -c 'import onnx'", [sys.executable, "-c", "import onnx"]),
            # The floor under any `profile`: the libraries the brief builds it on (the ONNX parser and the
            # networkx DAG), imported and nothing else
            "floor": Case("python -c 'import onnx, networkx'",
                          [sys.executable, "-c", "import onnx, networkx"]),
            "hw_resnet50": Case("onnx-hwutil profile resnet50", hw(MODELS / "resnet50.onnx")),
            "hw_bert": Case("onnx-hwutil profile bert_base", hw(MODELS / "bert_base.onnx")),
            "an_vit": Case("analyze vit_b_16 (2 chips) --no-findings",
                           analyze(MODELS / "vit_b_16.onnx", "--hw", CHIPS, "--no-findings")),
            "an_vit_f": Case("analyze vit_b_16 (2 chips) with findings",
                             analyze(MODELS / "vit_b_16.onnx", "--hw", CHIPS)),
            "an_10k": Case("analyze 10k-node graph --hw h100-sxm5",
                           analyze(graphs[10_000], "--hw", "h100-sxm5", "--no-findings")),
            "an_100k": Case("analyze 100k-node graph --hw h100-sxm5",
                            analyze(graphs[100_000], "--hw", "h100-sxm5", "--no-findings")),
            "llama_profile": Case("profile Llama-3-8B graph-only (decode step)", hw(llama8b, *decode)),
            "llama_analyze": Case("analyze Llama-3-8B graph-only (decode step)",
                                  analyze(llama8b, "--hw", "h100-sxm5", "--no-findings", *decode)),
        }
        extra = dict(e.split("=", 1) for e in args.extra)
        extra_dims = {stem: [f for k, v in manifest_dims(Path(path)).items() for f in ("--dim", f"{k}={v}")]
                      for stem, path in extra.items()}
        for stem, path in extra.items():
            cases[f"hw_{stem}"] = Case(f"onnx-hwutil profile {stem}", hw(Path(path), *extra_dims[stem]))
        for stem, path in [("resnet50", MODELS / "resnet50.onnx"), ("bert_base", MODELS / "bert_base.onnx"),
                           *((k, Path(v)) for k, v in extra.items())]:
            name = f"onnx-tool {stem}"
            key = "ot_bert" if stem == "bert_base" else f"ot_{stem}"
            if onnx_tool_version is None:
                cases[key] = Case(name, [], error=onnx_tool_missing)
            else:
                cases[key] = onnx_tool_case(name, path, tmp, args.synthetic_weights, rng, notes)
                ours = "hw_bert" if stem == "bert_base" else f"hw_{stem}"
                if cases[key].model is not None and ours in cases:  # the same full file for both tools
                    cases[ours].argv = hw(cases[key].model, *extra_dims.get(stem, []))

        print(f"running {len(cases)} cases x {repeat}, interleaved ...", flush=True)
        # Round-robin: a machine whose speed drifts during the run (a shared host's clock) slows every case
        # of a round alike, so a ratio compares runs made minutes apart at most.
        for i in range(repeat):
            for case in cases.values():
                if case.error is None:
                    measure(case, i, repeat, tmp)

    c = cases
    rows = [[k.name, fmt(k.wall, ".2f"), fmt(k.rss_mib, ".0f"), k.error or ""] for k in c.values()]

    def ratio(a: Case | None, b: Case | None) -> float | None:
        return a.wall / b.wall if a and b and a.ok and b.ok and b.wall else None

    def at_most(desc: str, value: float | None, limit: float, unit: str) -> dict:
        return target(f"{desc} <= {limit:g}{unit}", fmt(value, ".2f") + unit,
                      None if value is None else value <= limit)

    r_version = ratio(c["version"], c["import_onnx"])
    r_findings = ratio(c["an_vit_f"], c["an_vit"])
    r_scale = ratio(c["an_100k"], c["an_10k"])
    big = c["an_100k"]
    targets = [
        at_most("start-up: --version / import onnx", r_version, 1.5, "x"),
        at_most("profile BERT-base / onnx-tool", ratio(c["hw_bert"], c.get("ot_bert")), 0.5, "x"),
        *(at_most(f"profile {stem} / onnx-tool", ratio(c[f"hw_{stem}"], c.get(f"ot_{stem}")),
                  0.8 if "efficientnet" in stem else 0.5, "x") for stem in extra),
        at_most("analyze with findings / without (ViT-B/16, 2 chips)", r_findings, 2, "x"),
        at_most("analyze 100k-node graph", big.wall, 10, " s"),
        at_most("analyze 100k-node graph peak RSS", big.rss_mib, 1024, " MiB"),
        at_most("analyze 100k-node / 10k-node time", r_scale, 11, "x"),
        at_most("profile Llama-3-8B graph-only peak RSS", c["llama_profile"].rss_mib, 1024, " MiB"),
        at_most("analyze Llama-3-8B graph-only peak RSS", c["llama_analyze"].rss_mib, 1024, " MiB"),
    ]
    r_bert = ratio(c["hw_bert"], c.get("ot_bert"))
    r_resnet = ratio(c["hw_resnet50"], c.get("ot_resnet50"))
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
    print(f"ResNet-50: onnx-hwutil / onnx-tool time = {fmt(r_resnet, '.2f')}x (no target; BERT's is "
          f"{fmt(r_bert, '.2f')}x)")
    for stem in extra:  # what no profile built on onnx and networkx can go below
        floor = ratio(c["floor"], c.get(f"ot_{stem}"))
        print(f"floor, {stem}: importing onnx and networkx alone takes {fmt(floor, '.2f')}x "
              "onnx-tool's whole run")
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

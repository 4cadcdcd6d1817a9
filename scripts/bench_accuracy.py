"""Prediction accuracy on this machine: calibrate once, then predict and measure models at 1 and 2 threads.

    python scripts/bench_accuracy.py [FOLDER ...] [--runs 30] [--threads 1,2] [--spec host.yaml] [--level all]
    python scripts/bench_accuracy.py --corpus corpus --half tuning|heldout|both --threads 1 --spec host.yaml
    python scripts/bench_accuracy.py --corpus corpus --half tuning --threads 1 --spec host.yaml --by-class

Calibration uses microbenchmarks only (single Conv, MatMul, Add, Relu ops), never the models predicted, so
the error printed is the error a user gets on an unseen model. Each model is predicted with the `runtime`
fusion preset at fp32 (as `validate` does, quantized models included), batch 1, and measured with
onnxruntime on the CPU: median of --runs after 5 warm-up runs, --threads intra-op threads, one inter-op
thread, sequential execution, weights from the model's folder or random. `--level all` (the default) is a
default InferenceSession (ORT_ENABLE_ALL, NCHWc layout included), what users run; `--level extended` is
ORT_ENABLE_EXTENDED, what `validate` measures today. Each point is measured --repeat times in separate passes
and the median kept, because the timings on a shared 2-vCPU machine move by tens of percent between runs.

With --corpus the models are those of corpus/manifest.json (scripts/build_corpus.py), their symbolic dims
bound as the manifest says (a decoder's sequence 128 with past 0, dynamic H/W at 224; the bundled decoders get
the same prefill, sequence_length 128 and past_sequence_length 0), one table per half with the median and 90th
percentile of |error| per thread count (a model either side fails on is listed, and left out of those
statistics); the bundled models are reported apart and count in neither half.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import numpy as np
import yaml
from tabulate import tabulate

from corpus import HALVES, model_groups
from onnx_hwutil.analysis import Analyzer, Point
from onnx_hwutil.calibrate import calibrate
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.validate import median_run_s, random_feeds, runnable_model, session_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()[0][:150] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"


def predict(path: str, spec: str, dims: dict[str, int], threads: int) -> tuple[float, dict]:
    """Our latency (s) at fp32 with the runtime preset, and the input shapes it was predicted for."""
    analyzer = Analyzer(dims=dims)
    batch = None  # the model's own shapes, else batch 1 (the rule `validate` follows)
    try:
        bound = analyzer.bound(path, None)
    except HwUtilError:
        batch = 1
        bound = analyzer.bound(path, batch)
    return analyzer.run(Point(path, spec, batch, "fp32", "runtime", threads)).latency_s, dict(bound.inputs)


def _runnable(path: str, tmp: str) -> bytes | str:
    """The model with its weights (random where the file has none): bytes, or a file in `tmp` with external
    data when it is past protobuf's 2 GiB (the bundled Llama-1B at fp32)."""
    import onnx

    m = runnable_model(path, np.random.default_rng(0))
    # ByteSize() wraps past 2 GiB, so the weights are added up instead
    weights = sum(len(t.raw_data) for t in m.graph.initializer)
    if weights < 2**31 - 2**26:
        return m.SerializeToString()
    out = os.path.join(tmp, "model.onnx")
    onnx.save_model(m, out, save_as_external_data=True, location="model.onnx.data")
    return out


def measure(model: bytes | str, shapes: dict, threads: int, runs: int, level: str) -> float:
    import onnxruntime as ort

    so = session_options(ort, threads, level)
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    return median_run_s(sess, random_feeds(sess, shapes, np.random.default_rng(0)), runs)


def stats_line(errors: list[float], n: int) -> str:
    if not errors:
        return f"no model predicted and measured (of {n})"
    e = np.abs(errors)
    return (f"median |error| {100 * float(np.median(e)):.1f}%, p90 {100 * float(np.percentile(e, 90)):.1f}%, "
            f"max {100 * float(e.max()):.1f}%, within 15%: {int((e <= 0.15).sum())}, within 30%: "
            f"{int((e <= 0.30).sum())}, over {len(e)} models"
            + (f" ({n - len(e)} failed)" if n > len(e) else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--spec", default=None, help="an existing calibrated spec instead of calibrating now")
    ap.add_argument("--repeat", type=int, default=3,
                    help="independent measurements per point, at different times; their median is used")
    ap.add_argument("--level", choices=["all", "extended"], default="all",
                    help="onnxruntime's level when measuring: all (a default session) or extended")
    ap.add_argument("--corpus", help="a corpus folder (scripts/build_corpus.py): its models, per half")
    ap.add_argument("--half", choices=[*HALVES, "both"], default="both")
    ap.add_argument("--no-bundled", action="store_true", help="leave out the bundled models")
    ap.add_argument("--by-class", action="store_true",
                    help="also where the error comes from: each half's kernel time per op class, predicted "
                         "and measured (onnxruntime's profile, mapped by `validate`), at the first --threads")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    spec = args.spec
    if spec is None:
        spec = os.path.join(tempfile.mkdtemp(), "host.yaml")
        with open(spec, "w") as f:
            yaml.safe_dump(calibrate(max(threads)), f, sort_keys=False)
        print(f"calibrated: {spec}", file=sys.stderr)

    groups = model_groups(ROOT, args.folders, args.corpus, args.half, not args.no_bundled)
    models = [m for _, ms in groups for m in ms]

    predicted: dict[tuple[str, int], float] = {}
    shapes: dict[str, dict] = {}
    failed: dict[tuple[str, int], str] = {}
    for name, _, path, dims in models:
        for t in threads:
            try:
                predicted[(name, t)], shapes[name] = predict(path, spec, dims, t)
            except Exception as e:  # an analyzer failure on a model is a finding: recorded, not fatal
                failed[(name, t)] = f"onnx-hwutil: {_one_line(e)}"
    # Shared 2-vCPU machines are noisy (a neighbour's burst moves one median by 30%): every point is
    # measured --repeat times, in separate passes over all models, and the median of those is kept.
    measured: dict[tuple[str, int], list[float]] = {}
    for rep in range(args.repeat):
        for name, _, path, _ in models:
            if name not in shapes:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    model = _runnable(path, tmp)
                except Exception as e:  # weights that cannot be had: the row says so
                    for t in threads:
                        failed.setdefault((name, t), f"weights: {_one_line(e)}")
                    continue
                for t in threads:
                    if (name, t) in failed:
                        continue
                    try:
                        measured.setdefault((name, t), []).append(measure(model, shapes[name], t, args.runs,
                                                                          args.level))
                    except Exception as e:  # onnxruntime cannot run it: reported, the others still run
                        failed[(name, t)] = f"onnxruntime: {_one_line(e)}"
            print(f"  pass {rep + 1}/{args.repeat}: {name}", file=sys.stderr, flush=True)

    level = {"all": "ORT_ENABLE_ALL (default session)", "extended": "ORT_ENABLE_EXTENDED"}[args.level]
    for title, ms in groups:
        rows, errors = [], {t: [] for t in threads}
        for name, kind, _, _ in ms:
            row = [name, kind] if args.corpus else [name]
            for t in threads:
                if (name, t) in failed or (name, t) not in measured:
                    row += ["-", "-", f"FAILED ({failed.get((name, t), 'not measured')})"]
                    continue
                meas = statistics.median(measured[(name, t)])
                err = (predicted[(name, t)] - meas) / meas
                errors[t].append(err)
                row += [f"{predicted[(name, t)] * 1e3:.2f}", f"{meas * 1e3:.2f}", f"{100 * err:+.1f}%"]
            rows.append(row)
        cols = ("predicted ms", "measured ms", "error")
        headers = (["model", "exporter"] if args.corpus else ["model"]) + [
            f"{h} ({t} thr)" for t in threads for h in cols]
        print(f"\n### {title}: measured at {level}\n")
        print(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
        for t in threads:
            print(f"{title}, {t} thread(s): {stats_line(errors[t], len(ms))}")
    if args.by_class:
        for title, ms in groups:
            print(f"\n### {title}: kernel time per op class, {threads[0]} thread(s)\n")
            print(by_class(ms, spec, threads[0], args.runs))
    return 0


def by_class(models, spec: str, threads: int, runs: int) -> str:
    """Kernel time per op class (a fused kernel's first op label), summed over the models: what we predict
    and what onnxruntime's profile measured for the same kernels, and the kernel time `validate` could not
    map onto ours (renamed NCHWc and quantized nodes), so that a ratio is read with its coverage."""
    from onnx_hwutil.bindings import Bindings
    from onnx_hwutil.validate import validate

    rows: dict[str, list] = {}
    unmapped = total = 0.0
    for name, _, path, dims in models:
        try:
            v = validate(path, spec, threads, runs, bindings=Bindings(dims=dict(dims)))
        except Exception as e:  # a failure is reported in the main table; here it is left out, said
            print(f"  {name}: left out of the per-class table ({_one_line(e)})", file=sys.stderr)
            continue
        measured = sum(r["measured_s"] for r in v.subgraphs)
        total += measured / v.coverage if v.coverage else measured
        unmapped += (measured / v.coverage - measured) if v.coverage else 0.0
        for r in v.subgraphs:
            cls = r["label"].split("+")[0] or "?"
            row = rows.setdefault(cls, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += r["predicted_s"]
            row[2] += r["measured_s"]
    table = sorted(([c, n, p * 1e3, m * 1e3, p / m if m else None] for c, (n, p, m) in rows.items()),
                   key=lambda r: -max(r[2], r[3]))
    head = ["op class", "kernels", "predicted ms", "measured ms", "predicted / measured"]
    return (tabulate(table[:20], headers=head, floatfmt=".3f") +
            f"\n\nkernel time onnxruntime ran that `validate` could not map onto our kernels: "
            f"{1e3 * unmapped:.1f} of {1e3 * total:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())

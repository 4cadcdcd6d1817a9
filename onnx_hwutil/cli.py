"""The `onnx-hwutil` command: parses arguments, calls the API, prints. Exit codes: 0 ok, 1 a gate or
--strict check failed, 2 bad input (one line on stderr), 3 an internal error (a bug: please report it)."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from .bindings import Bindings, parse_dim_flag, parse_shape_flag
from .errors import HwUtilError
from .limits import MAX_DIM, MAX_SWEEP_POINTS

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="How well will this ONNX model use that hardware, and why? A static analyzer.")

EXIT_GATE, EXIT_INPUT, EXIT_BUG = 1, 2, 3


@app.callback()
def _root() -> None:
    """profile (counts), fuse (kernels after fusion), analyze and compare (on hardware), hw (the chips)."""


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"onnx-hwutil: error: {message}", err=True)
    return typer.Exit(code)


def guarded(fn):
    """Turn our errors into one line and exit 2, and anything else into one line and exit 3."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            _never_overwrite_inputs(kwargs)
            return fn(*args, **kwargs)
        except HwUtilError as e:
            raise _fail(str(e), EXIT_INPUT) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except RecursionError:
            raise _fail("the model is nested too deeply to analyze", EXIT_INPUT) from None
        except MemoryError:
            raise _fail("out of memory while analyzing the model", EXIT_INPUT) from None
        except Exception as e:
            if os.environ.get("ONNX_HWUTIL_DEBUG"):
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            raise _fail(f"internal error ({type(e).__name__}: {first}); this is a bug in onnx-hwutil, "
                        "rerun with ONNX_HWUTIL_DEBUG=1 for a traceback", EXIT_BUG) from None

    return wrapper


def _never_overwrite_inputs(kwargs: dict) -> None:
    """-o naming one of the command's own input files (a model, a spec) would destroy it: refuse."""
    out = kwargs.get("output")
    if not out or not os.path.exists(out):
        return
    given = []
    for key in ("model", "model_a", "model_b", "models", "old", "new", "hw", "baseline"):
        v = kwargs.get(key)
        for item in ([v] if isinstance(v, str) else v or []):
            given += item.split(",") if key == "hw" else [item]
    for path in given:
        with contextlib.suppress(OSError):
            if os.path.exists(path) and os.path.samefile(path, out):
                raise HwUtilError(f"--output {out}: that is an input of this command ({path}); "
                                  "choose another file")


ShapeOpt = Annotated[list[str] | None, typer.Option(
    "--shape", help="Bind an input's shape: NAME=1x3x224x224 (repeatable).")]
DimOpt = Annotated[list[str] | None, typer.Option(
    "--dim", help="Bind a symbolic dim: NAME=VALUE (repeatable).")]
BatchOpt = Annotated[int | None, typer.Option("--batch", min=1, help="Batch size: binds the inputs' leading "
                                                                      "dim (a file that fixes batch 1 is "
                                                                      "re-batched in memory).")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="model (the file's own dtypes), fp32, tf32, fp16, bf16, int8 or fp8.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]


class Doc(StrEnum):  # commands whose output is a document, not rows: no csv
    table = "table"
    json = "json"


DocOpt = Annotated[Doc, typer.Option("--format", "-f", help="Output format.")]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="Write here instead of to stdout.")]


@contextlib.contextmanager
def progress_bar(label: str, total: int):
    """A rich progress bar on stderr (stdout stays clean for JSON/CSV); yields advance(n)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    with Progress(label, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def to_csv(rows: list[dict], keys: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def bindings(shape: list[str] | None, dim: list[str] | None, batch: int | None,
             models: list[str] | None = None) -> Bindings:
    """The one parser of --shape, --dim and --batch. With `models` (commands over several models) the
    bindings are scoped: each model takes those that name its inputs and dims (or `MODEL:NAME` shapes), and
    one that names none of them is an error."""
    shapes = dict(parse_shape_flag(s) for s in shape or [])
    dims = dict(parse_dim_flag(d) for d in dim or [])
    if models is None:
        return Bindings(shapes, dims, batch)
    from .bindings import check_scoped

    b = Bindings(shapes, dims, batch, scoped=True)
    if shapes or dims:  # reads each model's inputs: only worth it when there is a binding to check
        check_scoped([m for m in models if os.path.isfile(m)], b)
    return b


def to_json(obj, indent: int | None = 1) -> str:
    """Strict JSON: NaN and Infinity are not JSON, so a non-finite number is a bug, never output."""
    return json.dumps(obj, indent=indent, allow_nan=False)


def _read_json(path: str, flag: str):
    """A JSON file a user names: one line for a missing, unreadable, huge or malformed one."""
    if not os.path.isfile(path):
        raise HwUtilError(f"{flag} {path}: no such file")
    if os.path.getsize(path) > 256 << 20:
        raise HwUtilError(f"{flag} {path}: over 256 MiB, not an analyze result")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise HwUtilError(f"{flag} {path}: not valid JSON ({str(e).splitlines()[0][:100]})") from None


def emit(text: str, output: str | None) -> None:
    if output is None:
        typer.echo(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError as e:
        raise HwUtilError(f"--output {output}: cannot write: {e.strerror}") from None


@app.command()
@guarded
def profile(
    model: Annotated[str, typer.Argument(help="Path to an .onnx file.")],
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    batch: BatchOpt = None,
    precision: PrecisionOpt = "model",
    format: FormatOpt = Format.table,
    top: Annotated[int, typer.Option("--top", min=0, help="Show the K heaviest nodes.")] = 10,
    strict: Annotated[bool, typer.Option(help="Exit 1 if an op is uncovered or unshaped.")] = False,
    output: OutputOpt = None,
) -> None:
    """Exact per-node MACs, FLOPs and bytes, and the model's characteristics."""
    from .dtypes import check_precision
    from .profile import Profile, bind
    from .report import profile_view

    check_precision(precision)
    p = Profile(bind(model, bindings(shape, dim, batch)), precision)
    if format is Format.json:
        emit(to_json(p.to_dict()), output)
    elif format is Format.csv:
        emit(profile_view.to_csv(p), output)
    else:
        emit(profile_view.render(p, top), output)
    if strict:
        _check_strict(p)


def _check_strict(p) -> None:
    """--strict: exit 1 naming what a profile leaves out of its counts."""
    if p.uncovered or p.unresolved:
        what = [f"{u['domain']}::{u['op_type']}" for u in p.uncovered]
        what += [f"{len(p.unresolved)} unshaped nodes"] if p.unresolved else []
        raise _fail("--strict: not fully costed: " + ", ".join(what), EXIT_GATE)


class Export(StrEnum):
    dot = "dot"
    mermaid = "mermaid"


def _csv_list(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


@app.command()
@guarded
def fuse(
    model: Annotated[str, typer.Argument(help="Path to an .onnx file.")],
    preset: Annotated[str, typer.Option(help="none, runtime (ONNX Runtime CPU) or aggressive.")] = "runtime",
    passes: Annotated[list[str] | None, typer.Option(
        "--passes", help="Run exactly these passes instead of a preset (comma-separated).")] = None,
    disable: Annotated[list[str] | None, typer.Option(help="Drop passes from the preset.")] = None,
    compare: Annotated[str | None, typer.Option(help="Compare with another preset (what-if).")] = None,
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    batch: BatchOpt = None,
    precision: PrecisionOpt = "model",
    format: DocOpt = Doc.table,
    export: Annotated[Export | None, typer.Option(help="Write the fused graph as dot or mermaid.")] = None,
    top: Annotated[int, typer.Option(min=0, help="Show only the K subgraphs with most DRAM traffic.")] = 0,
    output: OutputOpt = None,
) -> None:
    """Fused subgraphs (the kernels a runtime would launch) and fusion what-ifs."""
    from .dtypes import check_precision
    from .fusion import fuse as run_fusion
    from .profile import Profile, bind
    from .report import fusion_view

    check_precision(precision)
    p = Profile(bind(model, bindings(shape, dim, batch)), precision)
    fused = run_fusion(p, preset, _csv_list(passes), _csv_list(disable))
    other = run_fusion(p, compare) if compare else None
    if export is Export.dot:
        emit(fusion_view.to_dot(fused), output)
    elif export is Export.mermaid:
        emit(fusion_view.to_mermaid(fused), output)
    elif format == "json":
        d = fused.to_dict()
        if other is not None:
            d["compare"] = {"preset": other.preset, "totals": other.totals}
        emit(to_json(d), output)
    else:
        emit(fusion_view.render(fused, other, top or None), output)


def _ints(values: list[str] | None, flag: str) -> list[int]:
    out = []
    for v in _csv_list(values):
        try:
            n = int(v)
        except ValueError:
            raise HwUtilError(f"{flag} {v!r}: expected whole numbers, comma-separated") from None
        if n < 1:
            raise HwUtilError(f"{flag} {n}: must be at least 1")
        if n > MAX_DIM:
            raise HwUtilError(f"{flag} {n}: more than {MAX_DIM:,}, past any batch a model takes")
        out.append(n)
    return out


HwOpt = Annotated[list[str] | None, typer.Option("--hw", help="Chips: bundled names or spec YAML paths, "
                                                               "comma-separated.")]
FusionOpt = Annotated[str, typer.Option("--fusion", help="Fusion preset: none, runtime or aggressive.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="CPU: cores (threads) to use.")]


@app.command()
@guarded
def analyze(
    model: Annotated[str, typer.Argument(help="Path to an .onnx file.")],
    hw: HwOpt = None,
    batch: Annotated[list[str] | None, typer.Option("--batch", help="Batch sizes, comma-separated.")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", help="auto (each chip's 16-bit float, else int8), model, fp32, tf32, fp16, bf16, "
                            "int8, fp8; comma-separated.")] = None,
    fusion: FusionOpt = "runtime",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    per_subgraph: Annotated[bool, typer.Option(
        help="Kernels per class (count, time, share, bound); in JSON, every kernel.")] = False,
    all_kernels: Annotated[bool, typer.Option(
        help="With --per-subgraph: every kernel, not classes.")] = False,
    threads: ThreadsOpt = None,
    fail_if: Annotated[list[str] | None, typer.Option(
        "--fail-if", help='Exit 1 if this holds for any result, e.g. "latency_ms>5" (repeatable).')] = None,
    with_findings: Annotated[bool, typer.Option(
        "--findings/--no-findings", help="Computed observations with evidence and a mitigation.")] = True,
    plot: Annotated[str | None, typer.Option(
        "--plot", help="Write each result's roofline (PNG and SVG) into this directory.")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 if an op is uncovered or unshaped.")] = False,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="The JSON of an earlier analyze of the same points: relative gates "
                           "(--fail-if \"latency_ms>+5%\") compare with it.")] = None,
    format: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """Utilization, latency, throughput, units allocated, energy and findings of a model on chips."""
    from .analysis import Analyzer, plan
    from .findings import findings
    from .gates import failures, match_baseline, parse_gate
    from .report import analysis_view

    if plot:
        from .report.plots import ensure_dir

        ensure_dir(plot)
    b = bindings(shape, dim, None)
    a = Analyzer(b.shapes, b.dims)
    pts = plan(a, model, _csv_list(hw) or ["h100-sxm5"], _ints(batch, "--batch") or None,
               _csv_list(precision) or ["auto"], fusion, threads)
    schedules = [a.run(p) for p in pts]
    found = [[f.to_dict() for f in findings(a, p, s)] if with_findings else None
             for p, s in zip(pts, schedules, strict=True)]
    entries = [s.to_dict(per_subgraph) | ({"findings": f} if f is not None else {})
               for s, f in zip(schedules, found, strict=True)]
    gates = [parse_gate(g, entries[0], baseline is not None) for g in fail_if or []]
    old = match_baseline(entries, _read_json(baseline, "--baseline"), baseline) if baseline else None
    if plot:
        from .report import plots

        for e in entries if per_subgraph else [s.to_dict(True) for s in schedules]:
            plots.save(plots.roofline(e), plot, f"roofline_{e['hardware']}_{e['precision']}_b{e['batch']}")
    if format is Format.json:
        emit(to_json(entries), output)
    elif format is Format.csv:
        emit(to_csv(entries, [k for k in entries[0] if not isinstance(entries[0][k], (dict, list))]), output)
    else:
        full = [s.to_dict(True) | ({"findings": f} if f is not None else {})
                for s, f in zip(schedules, found, strict=True)]
        parts = [analysis_view.bottleneck(e) for e in full if e["subgraphs"]]
        parts += ["", analysis_view.analyze_table(schedules)]
        if per_subgraph:
            for s, e in zip(schedules, full, strict=True):
                if all_kernels:
                    parts += ["", f"{s.spec.name}, {s.precision}, batch {s.batch}: slowest kernels",
                              analysis_view.subgraph_table(s, len(s.kernels))]
                else:
                    parts += ["", f"{s.spec.name}, {s.precision}, batch {s.batch}: kernel classes by time",
                              analysis_view.class_table(e)]
        for e in entries:
            if e.get("findings"):
                parts += ["", f"Findings: {e['hardware']}, {e['precision']}, batch {e['batch']}"]
                parts += analysis_view.findings_list(e["findings"])
        notes = sorted({n for s in schedules for n in s.notes})
        if notes:
            parts += ["", "Notes:"] + [f"- {n}" for n in notes]
        emit("\n".join(parts), output)
    failed = failures(gates, entries, old)
    if failed:
        raise _fail("gate failed: " + "; ".join(failed), EXIT_GATE)
    if strict:
        for batch in dict.fromkeys(p.batch for p in pts):
            _check_strict(a.profile(model, batch))


@app.command("diff")
@guarded
def diff_cmd(
    old: Annotated[str, typer.Argument(help="The earlier .onnx file.")],
    new: Annotated[str, typer.Argument(help="The later .onnx file.")],
    hw: HwOpt = None,
    batch: BatchOpt = None,
    precision: Annotated[str, typer.Option(help="auto, model or a precision, for every chip.")] = "auto",
    fusion: FusionOpt = "runtime",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, markdown or json.")] = "table",
    top: Annotated[int, typer.Option(min=1, help="Kernels shown: the K that moved most.")] = 20,
    output: OutputOpt = None,
) -> None:
    """What changed between two versions of a model: counts, op types, kernels and their time per chip."""
    from .diff import diff
    from .report import diff_view

    if format not in ("table", "markdown", "json"):
        raise HwUtilError(f"--format {format!r}: choose table, markdown or json")
    b = bindings(shape, dim, None, [old, new])
    d = diff(old, new, _csv_list(hw) or ["h100-sxm5"], batch, precision, fusion, b.shapes, b.dims)
    emit(to_json(d) if format == "json" else diff_view.render(d, format == "markdown", top), output)


@app.command()
@guarded
def compare(
    model_a: Annotated[str, typer.Argument(help="First .onnx file.")],
    model_b: Annotated[str, typer.Argument(help="Second .onnx file.")],
    hw: HwOpt = None,
    batch: Annotated[list[str] | None, typer.Option(
        "--batch", help="Batch sizes: the first for the per-chip tables, all for the advice.")] = None,
    precision: Annotated[str, typer.Option(help="auto, model or a precision, for every chip.")] = "auto",
    fusion: FusionOpt = "runtime",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    cited_only: Annotated[bool, typer.Option(
        help="Rank only chips whose numbers are not all assumed (no designs without silicon).")] = False,
    format: DocOpt = Doc.table,
    output: OutputOpt = None,
) -> None:
    """Two models side by side on the same chips: the seed report's tables, with defensible numbers."""
    from .analysis import REPORT_HARDWARE, Analyzer, Point
    from .profile import SCHEMA
    from .report import analysis_view
    from .study import QUESTIONS, best_chips, marked

    hws = _csv_list(hw) or REPORT_HARDWARE
    asked = _ints(batch, "--batch")
    models = [model_a, model_b]
    b = bindings(shape, dim, None, models)
    a = Analyzer(b.shapes, b.dims, scoped=True)
    names = [os.path.splitext(os.path.basename(m))[0] for m in models]
    if names[0] == names[1]:
        names = models
    # A model without a symbolic batch dim runs at its own shapes unless --batch says otherwise.
    per_model = {m: asked or ([1, 32] if a.default_batch(m) == 1 else [None]) for m in models}
    results = {(m, hwn, b): a.run(Point(m, hwn, b, precision, fusion)) for m in models for hwn in hws
               for b in per_model[m]}
    chars = [a.characteristics(m, per_model[m][0], fusion) for m in models]
    by_hw = {hwn: [results[(m, hwn, per_model[m][0])] for m in models] for hwn in hws}
    advice = []
    for name, m in zip(names, models, strict=True):
        for b in per_model[m]:
            runs = [results[(m, hwn, b)].to_dict(False) for hwn in hws]
            best = best_chips(runs, {a.spec(h).name: a.spec(h) for h in hws}, cited_only)
            advice.append((name, runs[0]["batch"], *(marked(best, q) for q, _, _ in QUESTIONS)))
    notes = sorted({n for s in results.values() for n in s.notes})
    notes.append("precision per chip: " + ", ".join(f"{h} {by_hw[h][0].precision}" for h in hws))
    notes += [f"{a.spec(h).name}: every number of this chip is an assumption (no silicon); see hw show {h}"
              for h in hws if all(c.assumed for c in a.spec(h).sources.values())]
    if format == "json":
        emit(to_json({"schema": SCHEMA, "models": dict(zip(names, models, strict=True)),
                      "characteristics": dict(zip(names, chars, strict=True)),
                      "results": [s.to_dict(False) | {"model": n} for (m, _, _), s in results.items()
                                  for n in [names[models.index(m)]]],
                      "advice": [dict(zip(["model", "batch", "latency", "throughput", "energy"], r,
                                          strict=True)) for r in advice],
                      "notes": notes}), output)
    else:
        emit(analysis_view.comparison(names, chars, by_hw, advice, notes), output)


@app.command()
@guarded
def sweep(
    models: Annotated[list[str], typer.Argument(help="One or more .onnx files.")],
    hw: HwOpt = None,
    batch: Annotated[list[str] | None, typer.Option("--batch", help="Batch sizes, comma-separated.")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", help="Precisions, comma-separated (auto, model, fp32, fp16, ...).")] = None,
    fusion: Annotated[list[str] | None, typer.Option("--fusion", help="Presets, comma-separated.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes on this machine.")] = 1,
    scheduler: Annotated[str | None, typer.Option(
        help="Run on a dask.distributed cluster instead: its scheduler address, e.g. tcp://host:8786.")
    ] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or jsonl.")] = "table",
    plot: Annotated[str | None, typer.Option(
        "--plot", help="Write the batch curves (batch_sweep.png and .svg) into this directory.")] = None,
    max_points: Annotated[int, typer.Option(
        min=1, help="Refuse a sweep of more points than this (a typo like --batch 1..20000 is not meant).")
    ] = MAX_SWEEP_POINTS,
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 if any point fails.")] = False,
    output: OutputOpt = None,
) -> None:
    """The cross product of models, chips, batches, precisions and fusion presets."""

    from .analysis import REPORT_HARDWARE
    from .sweep import check_scheduler, points
    from .sweep import sweep as run

    if format not in ("table", "csv", "jsonl"):
        raise HwUtilError(f"--format {format!r}: choose table, csv or jsonl")
    pts = points(models, _csv_list(hw) or REPORT_HARDWARE, _ints(batch, "--batch") or [1],
                 _csv_list(precision) or ["auto"], _csv_list(fusion) or ["runtime"])
    if len(pts) > max_points:
        raise HwUtilError(f"{len(pts):,} points (models x chips x batches x precisions x presets), more than "
                          f"--max-points {max_points:,}")
    b = bindings(shape, dim, None, models)
    if scheduler:
        check_scheduler(scheduler)
    if plot:
        from .report.plots import ensure_dir

        ensure_dir(plot)
    with progress_bar("sweeping", len(pts)) as advance:
        rows = run(pts, jobs, progress=advance, scheduler=scheduler, bindings=b)
    keys = ["model", "hardware", "batch", "precision", "fusion", "latency_s", "throughput_per_s",
            "compute_utilization", "memory_bandwidth_utilization", "attained_ops_per_s",
            "energy_per_inference_j", "energy_per_batch_j", "error"]
    flat = [{k: (r.get(k) or r["asked_precision"]) if k == "precision" else r.get(k, "") for k in keys}
            for r in rows]
    if format == "jsonl":
        emit("\n".join(to_json(r, None) for r in rows), output)
    elif format == "csv":
        emit(to_csv(flat, keys), output)
    else:
        from .report.analysis_view import sweep_table
        from .study import model_names

        emit(sweep_table(flat, dict(zip(models, model_names(models), strict=True))), output)
    if plot:
        from .report import plots

        plots.save(plots.batch_curves(rows), plot, "batch_sweep")
    failed = sum(not r["ok"] for r in rows)
    if failed == len(rows):
        raise HwUtilError(f"every point failed; the first: {rows[0]['error']}")
    if failed and strict:
        raise _fail(f"--strict: {failed} of {len(rows)} points failed; the first: "
                    f"{next(r['error'] for r in rows if not r['ok'])}", EXIT_GATE)
    if failed:
        typer.echo(f"{failed} of {len(rows)} points failed (reason in the error column)", err=True)


@app.command()
@guarded
def report(
    models: Annotated[list[str], typer.Argument(help="One or two .onnx files.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write the report into.")],
    hw: HwOpt = None,
    batch: Annotated[int | None, typer.Option(
        "--batch", min=1, help="Batch of the per-chip tables (default 1, or the file's own).")] = None,
    sweep_batch: Annotated[list[str] | None, typer.Option(
        "--sweep-batch", help="Batches of the batch sweep, comma-separated.")] = None,
    precision: Annotated[str, typer.Option(help="auto, model or a precision, for every chip.")] = "auto",
    fusion: FusionOpt = "runtime",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    cited_only: Annotated[bool, typer.Option(
        help="Rank only chips whose numbers are not all assumed (no designs without silicon).")] = False,
) -> None:
    """The seed report's analysis for any model: Markdown, self-contained HTML, JSON and plots."""
    from .analysis import REPORT_HARDWARE
    from .report import document
    from .report.plots import ensure_dir
    from .study import build

    ensure_dir(output)
    b = bindings(shape, dim, None, models)
    study = build(models, _csv_list(hw) or REPORT_HARDWARE, batch,
                  _ints(sweep_batch, "--sweep-batch") or None, precision, fusion, b.shapes, b.dims,
                  cited_only)
    written = document.write(study, output)
    typer.echo(f"wrote {len(written)} files to {output}: report.md, report.html, report.json and plots",
               err=True)


@app.command()
@guarded
def calibrate(
    threads: ThreadsOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write the spec.")] = "host.yaml",
    quick: Annotated[bool, typer.Option(help="Fewer microbenchmarks: seconds, not a minute.")] = False,
) -> None:
    """Measure this machine with onnxruntime microbenchmarks and write its hardware spec."""
    import yaml

    from .calibrate import calibrate as run
    from .calibrate import steps
    from .hardware.spec import parse

    n = threads or os.cpu_count() or 1
    with progress_bar("calibrating", steps(quick) * n) as advance:
        data = run(threads, quick, progress=lambda _: advance(1))
    parse(data, output)  # what we write must load
    emit(yaml.safe_dump(data, sort_keys=False, width=110), output)
    typer.echo(f"wrote {output}: {n} thread count(s) measured; use --hw {output}", err=True)


@app.command()
@guarded
def validate(
    model: Annotated[str, typer.Argument(help="Path to an .onnx file.")],
    hw: Annotated[str, typer.Option("--hw", help="This machine's spec (from calibrate), or host.")] = "host",
    threads: ThreadsOpt = None,
    runs: Annotated[int, typer.Option(min=3, help="Timed runs after warm-up.")] = 50,
    fusion: FusionOpt = "runtime",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    batch: BatchOpt = None,
    format: DocOpt = Doc.table,
    output: OutputOpt = None,
) -> None:
    """Run the model with onnxruntime here and set the measurement beside our prediction, per kernel."""
    from .report import validation_view
    from .validate import validate as run

    r = run(model, hw, threads, runs, fusion, bindings(shape, dim, batch))
    if format == "json":
        emit(to_json(r.to_dict()), output)
    else:
        emit(validation_view.render(r), output)


hw_app = typer.Typer(no_args_is_help=True, help="The bundled hardware specs, with their sources.")
app.add_typer(hw_app, name="hw")


@hw_app.command("list")
@guarded
def hw_list(
    kind: Annotated[str | None, typer.Option(help="Only this kind: cpu, gpu, tpu or kpu.")] = None,
    precision: Annotated[str | None, typer.Option(help="Only chips that run this precision.")] = None,
    min_memory: Annotated[str | None, typer.Option(help="Only chips with at least this much memory, "
                                                        "e.g. 80GB or 64GiB.")] = None,
    sort: Annotated[str, typer.Option(help="name, peak, bandwidth, memory or tdp (largest first).")] = "name",
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
) -> None:
    """The bundled chips (and `host`): kind, units, dense peak, bandwidth, memory, power, precisions."""
    from .dtypes import check_precision
    from .hardware.spec import KINDS, known_specs, load_spec
    from .report import hardware_view
    from .report.units import parse_bytes

    if kind is not None and kind not in KINDS:
        raise HwUtilError(f"--kind {kind!r}: choose one of {', '.join(KINDS)}")
    if precision is not None:
        check_precision(precision)
    floor = parse_bytes(min_memory, "--min-memory") if min_memory else 0
    keys = {"name": None, "peak": lambda s: -max(s.peak_ops_per_s.values()),
            "bandwidth": lambda s: -s.dram_bandwidth, "memory": lambda s: -s.dram_capacity,
            "tdp": lambda s: -s.tdp_w}
    if sort not in keys:
        raise HwUtilError(f"--sort {sort!r}: sort by {', '.join(keys)}")
    if format not in ("table", "json"):
        raise HwUtilError(f"--format {format!r}: table or json")
    specs = [s for s in (load_spec(n) for n in known_specs())
             if (kind is None or s.kind == kind) and (precision is None or precision in s.precisions)
             and s.dram_capacity >= floor]
    if keys[sort]:
        specs.sort(key=keys[sort])
    typer.echo(to_json([hardware_view.summary(s) for s in specs]) if format == "json"
               else hardware_view.list_table(specs))


@hw_app.command("show")
@guarded
def hw_show(names: Annotated[list[str], typer.Argument(
        help="A bundled chip's name or a spec YAML path; two or more side by side.")]) -> None:
    """Every number of one chip with its source (or why it is assumed); several chips side by side."""
    from .hardware import load_spec
    from .report import hardware_view

    specs = [load_spec(n) for n in names]
    typer.echo(hardware_view.show(specs[0]) if len(specs) == 1 else hardware_view.side_by_side(specs))


@hw_app.command("check")
@guarded
def hw_check(
    path: Annotated[str, typer.Argument(help="A spec YAML of yours.")],
    strict: Annotated[bool, typer.Option(help="Exit 1 if any number is assumed rather than cited.")] = False,
) -> None:
    """Validate a spec: a schema error is one line naming the field (exit 2); otherwise what is assumed,
    what optional parts are absent, and whether its peaks agree with its units and clock."""
    from .hardware import load_spec
    from .report import hardware_view

    s = load_spec(path)
    text, assumed = hardware_view.check(s)
    typer.echo(text)
    if strict and assumed:
        raise _fail(f"--strict: {assumed} numbers of {path} are assumed, not cited", EXIT_GATE)


def main() -> None:
    """The console script: usage errors (an option out of range, a missing argument) become one line and
    exit 2 like every other bad input, instead of click's boxed message."""
    try:
        code = app(standalone_mode=False)
    except Exception as e:
        if not hasattr(e, "format_message"):  # not click's usage error (ours are handled by `guarded`)
            raise
        if type(e).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
            ctx = getattr(e, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"onnx-hwutil: error: {e.format_message()}{hint}", err=True)
        code = EXIT_INPUT
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

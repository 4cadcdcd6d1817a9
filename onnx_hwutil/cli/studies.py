"""Commands over several models and chips: compare (two models, the seed report's tables), sweep
(the cross product) and report (the whole document)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from ..errors import HwUtilError
from ..limits import MAX_SWEEP_POINTS
from .common import (
    EXIT_GATE,
    CitedOnlyOpt,
    DimOpt,
    Doc,
    DocOpt,
    FusionOpt,
    HwOpt,
    OutputOpt,
    ShapeOpt,
    StudyPrecisionOpt,
    app,
    bindings,
    csv_list,
    emit,
    fail,
    guarded,
    ints,
    progress_bar,
    to_csv,
    to_json,
)

# compare's advice is also given at this batch, a batched serving point beside batch 1's latency, for a
# model whose batch is free
ADVICE_BATCH = 32


@app.command()
@guarded
def compare(
    model_a: Annotated[str, typer.Argument(help="First .onnx file.")],
    model_b: Annotated[str, typer.Argument(help="Second .onnx file.")],
    hw: HwOpt = None,
    batch: Annotated[list[str] | None, typer.Option(
        "--batch", help="Batch sizes: the first for the per-chip tables, all for the advice.")] = None,
    precision: StudyPrecisionOpt = "auto",
    fusion: FusionOpt = "auto",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    cited_only: CitedOnlyOpt = False,
    format: DocOpt = Doc.table,
    output: OutputOpt = None,
) -> None:
    """Two models side by side on the same chips: the seed report's tables, with defensible numbers."""
    from ..analysis import REPORT_HARDWARE
    from ..profile import SCHEMA
    from ..report import analysis_view
    from ..study import QUESTIONS, build, marked

    hws = csv_list(hw) or REPORT_HARDWARE
    asked = ints(batch, "--batch")
    b = bindings(shape, dim, None, [model_a, model_b])
    more = asked[1:] if asked else [ADVICE_BATCH]
    study = build([model_a, model_b], hws, asked[0] if asked else None, more or asked, precision, fusion,
                  b.shapes, b.dims, cited_only, parts=frozenset(), advice_batches=more)
    names = [m["name"] for m in study["models"]]
    hw_names = [h["name"] for h in study["hardware"]]
    advice = [(a["model"], a["batch"], *(marked(a, q) for q, _, _ in QUESTIONS)) for a in study["advice"]]
    notes = study["notes"] + ["precision per chip: " + ", ".join(
        f"{h['name']} {h['precision']}" for h in study["hardware"])]
    notes += [f"{h['name']}: every number of this chip is an assumption (no silicon); see hw show {h['name']}"
              for h in study["hardware"] if h["numbers_assumed"] == h["numbers"]]
    if format == "json":
        own = [{k: v for k, v in r.items() if k != "findings"} for r in study["results"]]
        others = [{k: v for k, v in r.items() if k not in ("asked_precision", "ok")} for r in study["sweep"]
                  if r["ok"] and r["batch"] in more
                  and r["batch"] != next(m["batch"] for m in study["models"] if m["name"] == r["model"])]
        emit(to_json({"schema": SCHEMA, "models": {m["name"]: m["path"] for m in study["models"]},
                      "characteristics": {m["name"]: m["characteristics"] for m in study["models"]},
                      "results": sorted(own + others, key=lambda r: (
                          names.index(r["model"]), hw_names.index(r["hardware"]), r["batch"])),
                      "advice": [dict(zip(["model", "batch", "latency", "throughput", "energy"], r,
                                          strict=True)) for r in advice],
                      "notes": notes}), output)
    else:
        emit(analysis_view.comparison(study, names, advice, notes), output)


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

    from ..analysis import REPORT_HARDWARE, Analyzer
    from ..sweep import check_scheduler, points
    from ..sweep import sweep as run

    if format not in ("table", "csv", "jsonl"):
        raise HwUtilError(f"--format {format!r}: choose table, csv or jsonl")
    asked = ints(batch, "--batch")
    pts = points(models, csv_list(hw) or REPORT_HARDWARE, asked or [None], csv_list(precision) or ["auto"],
                 csv_list(fusion) or ["auto"])
    if len(pts) > max_points:
        raise HwUtilError(f"{len(pts):,} points (models x chips x batches x precisions x presets), more than "
                          f"--max-points {max_points:,}")
    b = bindings(shape, dim, None, models)
    if not asked:  # each model at its own default batch
        a = Analyzer(b.shapes, b.dims, scoped=True)
        own = {m: a.batches(m)[0] for m in dict.fromkeys(p.model for p in pts)}
        pts = [replace(p, batch=own[p.model]) for p in pts]
    if scheduler:
        check_scheduler(scheduler)
    if plot:
        from ..report.plots import ensure_dir

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
        from ..report.analysis_view import sweep_table
        from ..study import model_names

        emit(sweep_table(flat, dict(zip(models, model_names(models), strict=True))), output)
    if plot:
        from ..report import plots

        plots.save(plots.batch_curves(rows), plot, "batch_sweep")
    failed = sum(not r["ok"] for r in rows)
    if failed == len(rows):
        raise HwUtilError(f"every point failed; the first: {rows[0]['error']}")
    if failed and strict:
        raise fail(f"--strict: {failed} of {len(rows)} points failed; the first: "
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
    precision: StudyPrecisionOpt = "auto",
    fusion: FusionOpt = "auto",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    cited_only: CitedOnlyOpt = False,
) -> None:
    """The seed report's analysis for any model: Markdown, self-contained HTML, JSON and plots."""
    from ..analysis import REPORT_HARDWARE
    from ..report import document
    from ..report.plots import ensure_dir
    from ..study import build

    ensure_dir(output)
    b = bindings(shape, dim, None, models)
    study = build(models, csv_list(hw) or REPORT_HARDWARE, batch,
                  ints(sweep_batch, "--sweep-batch") or None, precision, fusion, b.shapes, b.dims,
                  cited_only)
    written = document.write(study, output)
    typer.echo(f"wrote {len(written)} files to {output}: report.md, report.html, report.json and plots",
               err=True)

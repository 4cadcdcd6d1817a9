"""Commands on one model: profile (counts), fuse (kernels), analyze (on chips), diff (two versions)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import HwUtilError
from .common import (
    EXIT_GATE,
    BatchOpt,
    DimOpt,
    Doc,
    DocOpt,
    Export,
    Format,
    FormatOpt,
    FusionOpt,
    HwOpt,
    JobsOpt,
    OutputOpt,
    PrecisionOpt,
    ShapeOpt,
    ThreadsOpt,
    app,
    bindings,
    check_strict,
    csv_list,
    emit,
    fail,
    guarded,
    ints,
    read_json,
    to_csv,
    to_json,
)


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
    from ..dtypes import check_precision
    from ..profile import Profile, bind
    from ..report import profile_view

    check_precision(precision)
    p = Profile(bind(model, bindings(shape, dim, batch)), precision)
    if format is Format.json:
        emit(to_json(p.to_dict()), output)
    elif format is Format.csv:
        emit(profile_view.to_csv(p), output)
    else:
        emit(profile_view.render(p, top), output)
    if strict:
        check_strict(p)


@app.command()
@guarded
def fuse(
    model: Annotated[str, typer.Argument(help="Path to an .onnx file.")],
    preset: Annotated[str, typer.Option(help=(
        "runtime (ONNX Runtime CPU), ort (onnxruntime's own optimized graph), tensorrt, xla, none or "
        "aggressive; auto is runtime here (no chip).")
    )] = "runtime",
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
    explain: Annotated[str | None, typer.Option(
        help="One node: the rule that took it and the subgraph it landed in, or why each rule that could "
             "have taken it did not.")] = None,
    output: OutputOpt = None,
) -> None:
    """Fused subgraphs (the kernels a runtime would launch) and fusion what-ifs."""
    from ..dtypes import check_precision
    from ..fusion import fuse as run_fusion
    from ..profile import Profile, bind
    from ..report import fusion_view

    check_precision(precision)
    p = Profile(bind(model, bindings(shape, dim, batch)), precision)
    if explain is not None:
        from ..fusion.explain import explain as why

        e = why(p, explain, preset, csv_list(passes), csv_list(disable))
        emit(to_json(e.to_dict()) if format == "json" else "\n".join(e.lines()), output)
        return
    fused = run_fusion(p, preset, csv_list(passes), csv_list(disable))
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


@app.command()
@guarded
def analyze(
    model: Annotated[str, typer.Argument(help="Path to an .onnx file.")],
    hw: HwOpt = None,
    batch: Annotated[list[str] | None, typer.Option("--batch", help="Batch sizes, comma-separated.")] = None,
    precision: Annotated[list[str] | None, typer.Option(
        "--precision", help="auto (each chip's 16-bit float, else int8), model, fp32, tf32, fp16, bf16, "
                            "int8, fp8; comma-separated.")] = None,
    fusion: FusionOpt = "auto",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    per_subgraph: Annotated[bool, typer.Option(
        help="Kernels per class (count, time, share, bound); in JSON, every kernel.")] = False,
    all_kernels: Annotated[bool, typer.Option(
        help="With --per-subgraph: every kernel, not classes.")] = False,
    threads: ThreadsOpt = None,
    fail_if: Annotated[list[str] | None, typer.Option(
        "--fail-if", help='Exit 1 if this holds for any result, e.g. "latency_ms>5" (repeatable).')] = None,
    jobs: JobsOpt = None,
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
    from ..analysis import Analyzer, plan
    from ..findings import findings_of
    from ..gates import failures, match_baseline, parse_gate
    from ..report import analysis_view

    if plot:
        from ..report.plots import ensure_dir

        ensure_dir(plot)
    b = bindings(shape, dim, None)
    a = Analyzer(b.shapes, b.dims)
    pts = plan(a, model, csv_list(hw) or ["h100-sxm5"], ints(batch, "--batch") or None,
               csv_list(precision) or ["auto"], fusion, threads)
    schedules = [a.run(p) for p in pts]
    points = list(zip(pts, schedules, strict=True))
    found = findings_of(a, points, jobs) if with_findings else [None] * len(pts)
    entries = [s.to_dict(per_subgraph) | ({"findings": f} if f is not None else {})
               for s, f in zip(schedules, found, strict=True)]
    gates = [parse_gate(g, entries[0], baseline is not None) for g in fail_if or []]
    old = match_baseline(entries, read_json(baseline, "--baseline"), baseline) if baseline else None
    if plot:
        from ..report import plots

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
        raise fail("gate failed: " + "; ".join(failed), EXIT_GATE)
    if strict:
        for batch in dict.fromkeys(p.batch for p in pts):
            check_strict(a.profile(model, batch))


@app.command("diff")
@guarded
def diff_cmd(
    old: Annotated[str, typer.Argument(help="The earlier .onnx file.")],
    new: Annotated[str, typer.Argument(help="The later .onnx file.")],
    hw: HwOpt = None,
    batch: BatchOpt = None,
    precision: Annotated[str, typer.Option(help="auto, model or a precision, for every chip.")] = "auto",
    fusion: FusionOpt = "auto",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table, markdown or json.")] = "table",
    top: Annotated[int, typer.Option(min=1, help="Kernels shown: the K that moved most.")] = 20,
    output: OutputOpt = None,
) -> None:
    """What changed between two versions of a model: counts, op types, kernels and their time per chip."""
    from ..diff import diff
    from ..report import diff_view

    if format not in ("table", "markdown", "json"):
        raise HwUtilError(f"--format {format!r}: choose table, markdown or json")
    b = bindings(shape, dim, None, [old, new])
    d = diff(old, new, csv_list(hw) or ["h100-sxm5"], batch, precision, fusion, b.shapes, b.dims)
    emit(to_json(d) if format == "json" else diff_view.render(d, format == "markdown", top), output)

"""Commands that run things on this machine: calibrate (microbenchmarks into a spec) and validate (the
model under onnxruntime beside our prediction)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from .common import (
    BatchOpt,
    DimOpt,
    Doc,
    DocOpt,
    FusionOpt,
    OutputOpt,
    ShapeOpt,
    ThreadsOpt,
    app,
    bindings,
    emit,
    guarded,
    progress_bar,
    to_json,
)


@app.command()
@guarded
def calibrate(
    threads: ThreadsOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="Where to write the spec.")] = "host.yaml",
    quick: Annotated[bool, typer.Option(help="Fewer microbenchmarks: seconds, not a minute.")] = False,
) -> None:
    """Measure this machine with onnxruntime microbenchmarks and write its hardware spec."""
    import yaml

    from ..calibrate import calibrate as run
    from ..calibrate import steps
    from ..hardware.spec import parse

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
    fusion: FusionOpt = "auto",
    level: Annotated[str, typer.Option(
        "--level", help="onnxruntime's optimization level: all (a default session) or extended.")] = "all",
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    batch: BatchOpt = None,
    format: DocOpt = Doc.table,
    output: OutputOpt = None,
) -> None:
    """Run the model with onnxruntime here and set the measurement beside our prediction, per kernel."""
    from ..report import validation_view
    from ..validate import validate as run

    r = run(model, hw, threads, runs, fusion, bindings(shape, dim, batch), level)
    if format == "json":
        emit(to_json(r.to_dict()), output)
    else:
        emit(validation_view.render(r), output)

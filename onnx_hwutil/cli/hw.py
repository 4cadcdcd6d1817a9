"""`hw list`, `hw show`, `hw check`: the chips, their numbers and their sources."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import HwUtilError
from .common import EXIT_GATE, fail, guarded, hw_app, to_json


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
    from ..dtypes import check_precision
    from ..hardware.catalog import known_specs, load_spec
    from ..hardware.spec import KINDS
    from ..report import hardware_view
    from ..units import parse_bytes

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
    from ..hardware import load_spec
    from ..report import hardware_view

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
    from ..hardware import load_spec
    from ..report import hardware_view

    s = load_spec(path)
    text, assumed = hardware_view.check(s)
    typer.echo(text)
    if strict and assumed:
        raise fail(f"--strict: {assumed} numbers of {path} are assumed, not cited", EXIT_GATE)

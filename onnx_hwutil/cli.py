"""The `onnx-hwutil` command: parses arguments, calls the API, prints. Exit codes: 0 ok, 1 a gate or
--strict check failed, 2 bad input (one line on stderr), 3 an internal error (a bug: please report it)."""

from __future__ import annotations

import functools
import json
import os
import sys
from enum import StrEnum
from typing import Annotated

import typer

from .errors import HwUtilError
from .shapes import Bindings, parse_dim_flag, parse_shape_flag

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="How well will this ONNX model use that hardware, and why? A static analyzer.")

EXIT_GATE, EXIT_INPUT, EXIT_BUG = 1, 2, 3


@app.callback()
def _root() -> None:
    """Subcommands: profile (more arrive with fusion and hardware)."""


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


ShapeOpt = Annotated[list[str] | None, typer.Option(
    "--shape", help="Bind an input's shape: NAME=1x3x224x224 (repeatable).")]
DimOpt = Annotated[list[str] | None, typer.Option(
    "--dim", help="Bind a symbolic dim: NAME=VALUE (repeatable).")]
BatchOpt = Annotated[int | None, typer.Option("--batch", min=1, help="Batch size: binds the inputs' leading "
                                                                      "symbolic dim.")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="model (the file's own dtypes), fp32, tf32, fp16, bf16, int8 or fp8.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="Write here instead of to stdout.")]


def bindings(shape: list[str] | None, dim: list[str] | None, batch: int | None) -> Bindings:
    shapes = dict(parse_shape_flag(s) for s in shape or [])
    dims = dict(parse_dim_flag(d) for d in dim or [])
    return Bindings(shapes, dims, batch)


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
        emit(json.dumps(p.to_dict(), indent=1), output)
    elif format is Format.csv:
        emit(profile_view.to_csv(p), output)
    else:
        emit(profile_view.render(p, top), output)
    if strict and (p.uncovered or p.unresolved):
        what = [f"{u['domain']}::{u['op_type']}" for u in p.uncovered]
        what += [f"{len(p.unresolved)} unshaped nodes"] if p.unresolved else []
        raise _fail("--strict: not fully costed: " + ", ".join(what), EXIT_GATE)


def main() -> None:
    sys.exit(app())

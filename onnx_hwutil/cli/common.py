"""What every command shares: the typer apps, option types, the error guard, output helpers and the one
parser of --shape/--dim/--batch. Exit codes: 0 ok, 1 a gate or --strict check failed, 2 bad input (one line
on stderr), 3 an internal error (a bug: please report it)."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import os
from enum import StrEnum
from typing import Annotated

import typer

from ..errors import HwUtilError
from ..limits import MAX_DIM

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="How well will this ONNX model use that hardware, and why? A static analyzer.")
hw_app = typer.Typer(no_args_is_help=True, help="The bundled hardware specs, with their sources.")
app.add_typer(hw_app, name="hw")

EXIT_GATE, EXIT_INPUT, EXIT_BUG = 1, 2, 3


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"onnx-hwutil {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="Print the version and exit.")] = False) -> None:
    """profile (counts), fuse (kernels after fusion), analyze and compare (on hardware), llm (decoder
    phases), hw (the chips)."""


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def fail(message: str, code: int) -> typer.Exit:
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
            raise fail(str(e), EXIT_INPUT) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except RecursionError:
            raise fail("the model is nested too deeply to analyze", EXIT_INPUT) from None
        except MemoryError:
            raise fail("out of memory while analyzing the model", EXIT_INPUT) from None
        except Exception as e:
            if os.environ.get("ONNX_HWUTIL_DEBUG"):
                raise
            first = str(e).splitlines()[0] if str(e) else ""
            raise fail(f"internal error ({type(e).__name__}: {first}); this is a bug in onnx-hwutil, "
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
             models: list[str] | None = None):
    """The one parser of --shape, --dim and --batch. With `models` (commands over several models) the
    bindings are scoped: each model takes those that name its inputs and dims (or `MODEL:NAME` shapes), and
    one that names none of them is an error."""
    from ..bindings import Bindings, check_scoped, parse_dim_flag, parse_shape_flag

    shapes = dict(parse_shape_flag(s) for s in shape or [])
    dims = dict(parse_dim_flag(d) for d in dim or [])
    if models is None:
        return Bindings(shapes, dims, batch)
    b = Bindings(shapes, dims, batch, scoped=True)
    if shapes or dims:  # reads each model's inputs: only worth it when there is a binding to check
        check_scoped([m for m in models if os.path.isfile(m)], b)
    return b


def to_json(obj, indent: int | None = 1) -> str:
    """Strict JSON: NaN and Infinity are not JSON, so a non-finite number is a bug, never output."""
    return json.dumps(obj, indent=indent, allow_nan=False)


def read_json(path: str, flag: str):
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


def check_strict(p) -> None:
    """--strict: exit 1 naming what a profile leaves out of its counts."""
    if p.uncovered or p.unresolved:
        what = [f"{u['domain']}::{u['op_type']}" for u in p.uncovered]
        what += [f"{len(p.unresolved)} unshaped nodes"] if p.unresolved else []
        raise fail("--strict: not fully costed: " + ", ".join(what), EXIT_GATE)


class Export(StrEnum):
    dot = "dot"
    mermaid = "mermaid"


def csv_list(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def ints(values: list[str] | None, flag: str) -> list[int]:
    out = []
    for v in csv_list(values):
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


# compare, report: one precision and the ranking rule for every chip of a study
StudyPrecisionOpt = Annotated[str, typer.Option(help="auto, model or a precision, for every chip.")]
CitedOnlyOpt = Annotated[bool, typer.Option(
    help="Rank only chips whose numbers are not all assumed (no designs without silicon).")]
HwOpt = Annotated[list[str] | None, typer.Option("--hw", help="Chips: bundled names or spec YAML paths, "
                                                               "comma-separated.")]
FusionOpt = Annotated[str, typer.Option("--fusion", help=(
    "Fusion preset: auto (each chip's runtime: ONNX Runtime's rules on CPUs, TensorRT-like on GPUs, "
    "XLA-like on TPUs and NPUs), runtime, tensorrt, xla, ort (onnxruntime's own optimized graph), none or "
    "aggressive."))]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", min=1, help="CPU: cores (threads) to use.")]
JobsOpt = Annotated[int | None, typer.Option(
    "--jobs", "-j", min=1, help="Findings worked out at once, in forked workers (default: the CPUs "
                                "available; 1: in order, in this process).")]

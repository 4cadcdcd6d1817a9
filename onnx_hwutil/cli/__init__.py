"""The `onnx-hwutil` command: parses arguments, calls the API, prints. Each command module imports what it
uses inside its commands, so start-up costs typer and the argument parsers only. Exit codes: 0 ok, 1 a gate
or --strict check failed, 2 bad input (one line on stderr), 3 an internal error (a bug: please report it)."""

from __future__ import annotations

import gc
import sys

import typer

from .common import EXIT_INPUT, app

# Each module registers its commands on `app`; this order is the order of `--help`.
from . import model, llm, studies, measure, hw  # noqa: F401  # isort: skip


def main() -> None:
    """The console script: usage errors (an option out of range, a missing argument) become one line and
    exit 2 like every other bad input, instead of click's boxed message."""
    # One command, one short process: the cyclic collector would walk every graph object alive again and
    # again (a fifth of a 100k-node analyze) to free almost nothing; what little cyclic garbage a command
    # leaves goes with the process. The API, and the CLI called in-process (CliRunner), keep it on.
    gc.disable()
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


__all__ = ["app", "main"]

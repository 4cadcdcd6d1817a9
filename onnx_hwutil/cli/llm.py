"""`llm`: a decoder's prefill and decode phases, read from the graph's own KV cache."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import HwUtilError
from .common import (
    DimOpt,
    Format,
    FormatOpt,
    HwOpt,
    OutputOpt,
    ShapeOpt,
    app,
    bindings,
    csv_list,
    emit,
    guarded,
    ints,
    to_csv,
    to_json,
)


@app.command()
@guarded
def llm(
    model: Annotated[str, typer.Argument(help="A decoder .onnx file with a KV cache.")],
    hw: HwOpt = None,
    batch: Annotated[list[str] | None, typer.Option("--batch", help="Batch sizes, comma-separated.")] = None,
    context: Annotated[list[str] | None, typer.Option(
        "--context", help="Context lengths, comma-separated: the prompt of a prefill row, the tokens already "
                          "cached in a decode row.")] = None,
    prompt: Annotated[int | None, typer.Option(min=1, help="Prompt tokens: adds time to first token, per "
                                                           "output token and end to end.")] = None,
    generate: Annotated[int, typer.Option(min=1, help="Tokens generated after the prompt.")] = 128,
    weights: Annotated[str, typer.Option(help="Weight storage what-if: model, int8, int4 (MatMulNBits-style, "
                                              "block 32) or fp8.")] = "model",
    kv: Annotated[str, typer.Option("--kv", help="KV-cache storage what-if: model, int8 or fp8.")] = "model",
    devices: Annotated[int, typer.Option(min=1, max=1024, help="Tensor-parallel devices.")] = 1,
    precision: Annotated[str, typer.Option(help="Arithmetic precision: auto (each chip's 16-bit float), "
                                                "model or a precision.")] = "auto",
    fusion: Annotated[str, typer.Option("--fusion", help="Fusion preset (aggressive: fused attention, as LLM "
                                                         "runtimes run).")] = "aggressive",
    kv_cache: Annotated[list[str] | None, typer.Option(
        "--kv-cache", help="PAST=PRESENT: name a cache input and its output when the graph is unusual "
                           "(repeatable).")] = None,
    shape: ShapeOpt = None,
    dim: DimOpt = None,
    format: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """Prefill and decode of a decoder LLM: latency, tokens/s, KV cache, fit, quantization and multi-device
    what-ifs."""
    from ..llm.study import ROW_KEYS, Query, study
    from ..report import llm_view

    named = {}
    for item in kv_cache or []:
        past, sep, present = item.partition("=")
        if not sep or not past or not present:
            raise HwUtilError(f"--kv-cache {item!r}: expected PAST=PRESENT (an input and an output name)")
        named[past] = present
    b = bindings(shape, dim, None)
    q = Query(tuple(csv_list(hw) or ["h100-sxm5"]), tuple(ints(batch, "--batch") or [1]),
              tuple(ints(context, "--context") or [1024]), prompt, generate if prompt else None, weights, kv,
              precision, fusion, devices, named)
    d = study(model, q, b.shapes, b.dims)
    if format is Format.json:
        emit(to_json(d), output)
    elif format is Format.csv:
        emit(to_csv(d["rows"], list(ROW_KEYS)), output)
    else:
        emit(llm_view.render(d), output)

"""Export the ONNX models bundled with onnx-hwutil into ``models/``.

This is the only place in the project that imports torch; the analyzer
itself only ever reads the exported ``.onnx`` files.  Run it from the repo
root with a Python that has torch, torchvision, transformers, onnx and
onnxruntime installed, e.g.::

    /work/torchenv/bin/python scripts/export_models.py
    /work/torchenv/bin/python scripts/export_models.py --out models --only resnet18 bert_base

Models (all randomly initialised, ``weights=None``; nothing is downloaded,
``torch.manual_seed(0)`` before each model for determinism):

* ``resnet18``, ``resnet50``, ``mobilenet_v2``, ``vit_b_16`` from
  torchvision, input ``input`` of shape ``[batch, 3, 224, 224]``, output
  ``output`` of shape ``[batch, 1000]``.
* ``bert_base``: ``transformers.BertModel(BertConfig(),
  add_pooling_layer=False)``, inputs ``input_ids`` and ``attention_mask``
  (int64, ``[batch, 128]``), output ``last_hidden_state``
  (``[batch, 128, 768]``).  Only the batch dim is symbolic.

The Llama-3.2-1B-sized decoders ``llama_1b_kv`` and ``llama_1b_int4`` need no torch:
``scripts/build_llama.py`` writes them (graph-only too) with onnx.helper.

Export uses the legacy TorchScript exporter
(``torch.onnx.export(..., dynamo=False, opset_version=17,
do_constant_folding=True)``), which torch 2.14.1 still provides (it only
emits a DeprecationWarning, silenced here), with a symbolic dim named exactly
``batch`` on dim 0 of every input and output, so the analyzer's ``--batch``
can bind it.  Constant folding folds every BatchNorm into the preceding Conv.

Graph-only storage: the weights of these models are 14-440 MB each, far too
big for git, yet the analyzer needs only the graph, the shapes and the dtypes
of the initializers, never their values.  After export each model is
re-saved with every initializer of 1 KiB or more moved to an external file
``NAME.onnx.data`` next to ``NAME.onnx`` (``models/.gitignore`` keeps those
out of git).  The committed ``.onnx`` still holds each initializer's name,
dtype and dims (as a TensorProto with an external-data reference), plus the
small tensors (shape constants, scalars, short biases) inline.  Only running
the model (e.g. with onnxruntime) needs the ``.data`` file; re-run this
script to recreate it.

Departures from a bare export, each keeping the model's maths unchanged:

* ``bert_base`` is exported through ``BertWrapper`` (explicit position and
  token-type ids, a precomputed additive mask, eager attention); without it
  transformers' shape-driven mask and embedding code leaves ~500 tensors,
  the output's sequence dim included, without static shapes.
* The exporter merges initializers with equal values (every zero bias and
  unit norm weight of a random init) behind ``Identity`` nodes; those are
  turned back into one initializer per parameter.
* Output dims other than ``batch`` are declared with the static size torch
  produced.
* ViT's zero-initialised head gets a random one, and the fused inference path
  of ``nn.MultiheadAttention`` is switched off (it cannot be exported).

Left as exported in ``vit_b_16``: torchvision's ``nn.MultiheadAttention``
traces into Shape/Gather/Slice/Mod/Div/Concat/Reshape chains that plain
``onnx.shape_inference`` (even with ``data_prop`` and batch bound) cannot
resolve; the analyzer's own shape-folding layer does, which is why it is kept
this way: it is what real TorchScript exports look like.

While the ``.data`` file is present the script verifies each model with
onnxruntime (CPU) against torch at batch 1 and batch 2 (atol 1e-3, and
within 1e-3 of the output's magnitude), and prints the file size, node
count, op-type histogram, initializer count and the conv/matmul MACs that
``torch.utils.flop_counter.FlopCounterMode`` reports at batch 1, to
cross-check the analyzer.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
import transformers
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

OPSET = 17
SEQ_LEN = 128
ATOL = 1e-3
SIZE_THRESHOLD = 1024

# Published MACs at batch 1 (conv/gemm/matmul only), for the cross-check.
EXPECTED_MACS = {
    "resnet18": 1_814_073_344,
    "resnet50": 4_089_184_256,
    "mobilenet_v2": 300_774_272,
    "vit_b_16": 17_563_828_224,
    "bert_base": 11_173_625_856,
}


class BertWrapper(torch.nn.Module):
    """BertModel returning only ``last_hidden_state`` as a plain tensor.

    Numerically the same as ``BertModel(input_ids, attention_mask)`` (checked
    by ``plain_forward`` during verification), but it hands BERT what it would
    otherwise derive from the input shapes at run time:

    * ``position_ids`` (0..127) and ``token_type_ids`` (all 0) as constants,
      instead of slicing buffers by ``input_ids.shape``, which traces into
      Slice/GatherElements/Expand subgraphs that leave the sequence dim
      unresolved for ONNX shape inference;
    * the classic additive ``[batch, 1, 1, 128]`` mask, which transformers
      uses as-is, instead of its Range/Gather mask builder;
    * eager attention (MatMul/Softmax/MatMul), instead of the SDPA symbolic
      with its IsNaN/Where and shape-derived scale.
    """

    def __init__(self) -> None:
        super().__init__()
        config = transformers.BertConfig(attn_implementation="eager")
        self.bert = transformers.BertModel(config, add_pooling_layer=False)
        positions = torch.arange(SEQ_LEN).unsqueeze(0)
        self.register_buffer("position_ids", positions, persistent=False)
        self.register_buffer("token_type_ids", torch.zeros_like(positions), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask[:, None, None, :].to(torch.float32)
        additive_mask = (1.0 - mask) * torch.finfo(torch.float32).min
        out = self.bert(
            input_ids=input_ids,
            attention_mask=additive_mask,
            position_ids=self.position_ids,
            token_type_ids=self.token_type_ids,
        )
        return out.last_hidden_state

    def plain_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state


def _vision(ctor: Callable[..., torch.nn.Module]) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        model = ctor(weights=None)
        if isinstance(model, torchvision.models.VisionTransformer):
            # torchvision zero-initialises the ViT head, which would make every
            # output 0 and the onnxruntime comparison meaningless.
            torch.nn.init.normal_(model.heads.head.weight, std=0.02)
        return model

    return build


def _image_inputs(batch: int) -> tuple[torch.Tensor, ...]:
    return (torch.randn(batch, 3, 224, 224),)


def _bert_inputs(batch: int) -> tuple[torch.Tensor, ...]:
    vocab = transformers.BertConfig().vocab_size
    input_ids = torch.randint(0, vocab, (batch, SEQ_LEN), dtype=torch.int64)
    attention_mask = torch.ones(batch, SEQ_LEN, dtype=torch.int64)
    # Pad the tail of every other row so masking is actually exercised.
    attention_mask[1::2, SEQ_LEN - 16 :] = 0
    return input_ids, attention_mask


# name -> (model factory, input factory, input names, output names)
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], Callable, list[str], list[str]]] = {
    "resnet18": (_vision(torchvision.models.resnet18), _image_inputs, ["input"], ["output"]),
    "resnet50": (_vision(torchvision.models.resnet50), _image_inputs, ["input"], ["output"]),
    "mobilenet_v2": (
        _vision(torchvision.models.mobilenet_v2),
        _image_inputs,
        ["input"],
        ["output"],
    ),
    "vit_b_16": (_vision(torchvision.models.vit_b_16), _image_inputs, ["input"], ["output"]),
    "bert_base": (
        BertWrapper,
        _bert_inputs,
        ["input_ids", "attention_mask"],
        ["last_hidden_state"],
    ),
}


def export(name: str, out_dir: Path) -> None:
    build, make_inputs, input_names, output_names = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    path = out_dir / f"{name}.onnx"
    data_name = f"{name}.onnx.data"
    data_path = out_dir / data_name

    example = make_inputs(1)
    dynamic_axes = {n: {0: "batch"} for n in input_names + output_names}
    with torch.no_grad():
        torch.onnx.export(
            model,
            example,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )

    with torch.no_grad():
        reference = model(*example)
    proto = onnx.load(str(path))
    _undo_initializer_dedup(proto.graph)
    _pin_static_output_dims(proto.graph, [reference])

    # Re-save graph-only.  onnx appends to an existing data file, so remove it.
    if data_path.exists():
        data_path.unlink()
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_name,
        size_threshold=SIZE_THRESHOLD,
    )
    onnx.checker.check_model(str(path), full_check=True)

    report(name, model, make_inputs, path, data_path)


def _undo_initializer_dedup(graph: onnx.GraphProto) -> None:
    """Give every parameter its own initializer again.

    The TorchScript exporter merges initializers with equal values and feeds
    the duplicates through ``Identity`` nodes.  With random init that hits
    every all-zero bias and all-one norm weight, so parameter counts read off
    the initializers would come out low.  Each ``Identity(initializer)`` is
    replaced by a copy of that initializer under the Identity's output name
    (the parameter's own name).
    """
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            copy = onnx.TensorProto()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _pin_static_output_dims(graph: onnx.GraphProto, outputs: list[torch.Tensor]) -> None:
    """Declare every non-batch output dim as the static size torch produced.

    The exporter sometimes names a static dim it could not prove static (e.g.
    ``LayerNormalizationlast_hidden_state_dim_1`` for BERT's sequence dim).
    """
    for value, tensor in zip(graph.output, outputs, strict=True):
        dims = value.type.tensor_type.shape.dim
        for i, size in enumerate(tensor.shape):
            if i > 0:
                dims[i].Clear()
                dims[i].dim_value = size


def _check_io(graph: onnx.GraphProto) -> list[str]:
    """Describe graph inputs/outputs; fail unless dim 0 is exactly ``batch``."""
    lines = []
    for kind, values in (("in", graph.input), ("out", graph.output)):
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in t.shape.dim]
            if not dims or dims[0] != "batch" or any(isinstance(d, str) for d in dims[1:]):
                raise SystemExit(f"{v.name}: unexpected shape {dims}")
            dtype = onnx.TensorProto.DataType.Name(t.elem_type)
            lines.append(f"{kind} {v.name} {dtype} {dims}")
    return lines


def _unresolved_shapes(proto: onnx.ModelProto, batch: int) -> tuple[int, int, int]:
    """Count values ONNX shape inference leaves non-static with ``batch`` bound.

    Returns (unresolved values, all node outputs, Conv/Gemm/MatMul nodes with
    an unresolved input or output): how far a plain
    ``onnx.shape_inference.infer_shapes(..., data_prop=True)`` gets.
    """
    bound = onnx.ModelProto()
    bound.CopyFrom(proto)
    for value in [*bound.graph.input, *bound.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == "batch":
                dim.dim_value = batch
    graph = onnx.shape_inference.infer_shapes(bound, data_prop=True).graph
    static = {t.name for t in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        t = value.type.tensor_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            static.add(value.name)
    outputs = [o for node in graph.node for o in node.output]
    unresolved = sum(1 for o in outputs if o not in static)
    compute = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    bad_compute = sum(1 for n in compute if any(x not in static for x in [*n.input[:2], *n.output]))
    return unresolved, len(outputs), bad_compute


def _compare(got: np.ndarray, expected: np.ndarray) -> tuple[bool, str]:
    """atol 1e-3, and also within 1e-3 of the output's scale (mobilenet_v2's
    random-init outputs are ~1e-9, so atol alone would pass anything)."""
    scale = float(np.max(np.abs(expected)))
    diff = float(np.max(np.abs(got - expected)))
    ok = got.shape == expected.shape and scale > 0 and diff <= ATOL * min(1.0, scale)
    return ok, f"max|ref| {scale:.2e} max|diff| {diff:.2e}"


def report(
    name: str,
    model: torch.nn.Module,
    make_inputs: Callable,
    path: Path,
    data_path: Path,
) -> None:
    graph_only = onnx.load(str(path), load_external_data=False)
    graph = graph_only.graph
    hist = collections.Counter(n.op_type for n in graph.node)
    n_external = sum(1 for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)

    print(f"== {name}")
    for line in _check_io(graph):
        print(f"  {line}")
    print(
        f"  {path.name}: {path.stat().st_size:,} bytes; {data_path.name}: {data_path.stat().st_size:,} bytes"
    )
    print(f"  nodes: {len(graph.node)}")
    print(
        f"  initializers: {len(graph.initializer)} "
        f"({n_external} external, {len(graph.initializer) - n_external} inline)"
    )
    print("  ops: " + ", ".join(f"{op} {n}" for op, n in hist.most_common()))
    unresolved, total, bad_compute = _unresolved_shapes(graph_only, batch=2)
    print(
        f"  onnx shape inference (data_prop, batch=2): {unresolved}/{total} values "
        f"not fully static; {bad_compute} Conv/Gemm/MatMul touch one"
    )

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 2):
        torch.manual_seed(batch)
        inputs = make_inputs(batch)
        with torch.no_grad():
            expected = model(*inputs).numpy()
        feeds = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), inputs, strict=True)}
        (got,) = sess.run(None, feeds)
        ok, detail = _compare(got, expected)
        print(f"  ort batch {batch}: shape {list(got.shape)} {detail} {'OK' if ok else 'MISMATCH'}")
        if not ok:
            raise SystemExit(f"{name}: onnxruntime output differs from torch at batch {batch}")
        if isinstance(model, BertWrapper):
            with torch.no_grad():
                plain = model.plain_forward(*inputs).numpy()
            ok, detail = _compare(expected, plain)
            print(f"  wrapper vs plain BertModel batch {batch}: {detail} {'OK' if ok else 'MISMATCH'}")
            if not ok:
                raise SystemExit(f"{name}: wrapper differs from plain BertModel")

    # The math SDPA backend decomposes into matmuls that FlopCounterMode
    # counts; the fused CPU kernel has no flop formula.
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(*make_inputs(1))
    macs = counter.get_total_flops() // 2
    expected_macs = EXPECTED_MACS[name]
    print(
        f"  FlopCounterMode MACs @batch1: {macs:,} (published {expected_macs:,}, "
        f"delta {macs - expected_macs:+,})"
    )
    by_op = counter.get_flop_counts().get("Global", {})
    print("  by op: " + ", ".join(f"{op} {n // 2:,}" for op, n in by_op.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models"), help="output directory (default: models)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=sorted(MODELS),
        metavar="NAME",
        help=f"export only these models ({', '.join(MODELS)})",
    )
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    gitignore = args.out / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(
            "# Weights of the bundled models; recreate with scripts/export_models.py\n*.onnx.data\n"
        )
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    # Expected noise: the legacy exporter is deprecated, and the tracer warns
    # about Python-side shape checks (verified at batch 2 below instead).
    warnings.filterwarnings("ignore", ".*legacy TorchScript-based ONNX export", DeprecationWarning)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    # nn.MultiheadAttention (ViT) otherwise takes a fused inference fast path
    # under no_grad, which neither the ONNX exporter nor FlopCounterMode knows.
    torch.backends.mha.set_fastpath_enabled(False)
    for name in args.only or MODELS:
        export(name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Re-batching a file that fixes its batch (torchvision's legacy exporter, model zoos, many HF exports).

The inputs get the new leading dim (bindings.bind_inputs); what else carries the old batch is a constant
written at export time: `x.view(1, -1)` traced at batch 1 is Reshape(x, [1, -1]), which at batch 8 would
silently make one row of 8x the width, and Resize(x, sizes=[1, 3, 16, 16]) would drop the batch. Every
Reshape target and Resize size on a tensor that descends from a re-batched input has its batch entry
rewritten, in the in-memory copy only (the file is never touched). The batch entry is dim 0, or dim 1
where the tensor feeds a recurrent op in its default sequence-first layout, or else the one entry equal to
the old batch (a sequence-first layout's [197, 1, 3, 768]). A Reshape that folds the batch into another
dim of a constant target (a seq-first attention's [197, batch * 12, 64]) is refused with the node named.
A constant expanded to [1, ...] that a Concat joins with batched tensors (a class token) gets the new batch;
one that only broadcasts (a mask added to the scores) needs nothing. Fixed rows of the batch (Slice or
Gather of rows along dim 0) stop carrying it. Where the batch sits in a tensor is read off the file's own
shapes (`known`), so a target whose only 1 is not the batch is refused rather than rewritten.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import HwUtilError
from .shape_readers import constant_values

_RECURRENT = {"LSTM", "GRU", "RNN"}
# A shape target has one entry per dim: 16 is past any real rank, and a longer int64 vector is data (ids,
# indices), never a target to rewrite.
_MAX_TARGET_ENTRIES = 16
_NAMES_SHOWN = 5  # rewritten nodes named in the note; the rest are counted
_METADATA = {"Shape", "Size"}  # their outputs describe a batched tensor; they do not carry its rows


def rebatch(model: onnx.ModelProto, inputs: set[str], old: int, new: int,
            known: dict | None = None) -> list[str]:
    """Rewrite `model` (in memory) so that the re-batched `inputs` flow at batch `new`; notes for the
    output. `known` holds the tensors' shapes at the file's own batch, to tell where the batch sits."""
    graph = model.graph
    consts = _constants(graph)
    known = known or {}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in n.input:
            readers.setdefault(t, []).append(n)
    order = _in_order(graph)
    batched = _descendants(order, set(inputs), consts)
    rewritten: list[str] = []
    for pos, node in enumerate(order):
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type in _GENERATORS and _joins_batched_concat(node, readers, batched):
            slot, axis = _GENERATORS[node.op_type], 0  # a class token expanded to [1, ...] at export
        elif node.op_type in ("Reshape", "Resize") and node.input and node.input[0] in batched:
            slot, axis = {"Reshape": 1, "Resize": 3}[node.op_type], _batch_axis(node, readers)
        else:
            continue
        if len(node.input) <= slot or node.input[slot] not in consts:
            continue  # computed at run time (Shape -> Gather -> Concat): it follows the batch by itself
        data = (known.get(node.input[0], (None, 0))[0] if node.input else None)
        fixed = _rewrite(node, consts[node.input[slot]], axis, old, new, data)
        if fixed is not None:
            name = f"{node.input[slot]}__batch{new}_{pos}"
            graph.initializer.append(numpy_helper.from_array(fixed, name))
            node.input[slot] = name
            rewritten.append(node.name or node.output[0])
    if not rewritten:
        return []
    more = len(rewritten) - _NAMES_SHOWN
    shown = ", ".join(rewritten[:_NAMES_SHOWN]) + (f" and {more} more" if more > 0 else "")
    return [f"re-batching rewrote {len(rewritten)} shape constants fixed at batch {old}: {shown}"]


# Generators of a constant shape (the slot holding it): at batch 1 `cls.expand(B, -1, -1)` traces to
# Expand(cls, [1, -1, -1]), which a Concat with the batched patches then cannot join.
_GENERATORS = {"Expand": 1, "Tile": 1, "ConstantOfShape": 0}


def _descendants(order: list[onnx.NodeProto], inputs: set[str], consts: dict) -> set[str]:
    """Tensors that carry the batch: those computed from a batched input, except the shape of one (Shape,
    Size) and a slice or gather of fixed rows along the batch axis (x[0:1], x[0])."""
    batched = set(inputs)
    for node in order:
        if not any(t in batched for t in node.input if t) or node.op_type in _METADATA:
            continue
        if node.op_type == "Gather" and node.input[0] in batched and node.input[1] in consts \
                and not any(a.name == "axis" and a.i for a in node.attribute):
            continue  # fixed rows of the batch (x[0]); an embedding Gather of batched ids carries it
        if node.op_type == "Slice" and 0 in _slice_axes(node, consts):
            continue
        batched.update(o for o in node.output if o)
    return batched


def _slice_axes(node: onnx.NodeProto, consts: dict) -> list[int]:
    if len(node.input) > 3 and node.input[3]:
        axes = consts.get(node.input[3])
        return [int(a) for a in axes.reshape(-1)] if axes is not None else []
    starts = consts.get(node.input[1]) if len(node.input) > 1 else None
    return list(range(starts.size)) if starts is not None else []


def _joins_batched_concat(node: onnx.NodeProto, readers: dict, batched: set[str]) -> bool:
    return any(r.op_type == "Concat" and any(t in batched for t in r.input if t)
               for r in readers.get(node.output[0], ()))


def _batch_axis(node: onnx.NodeProto, readers: dict) -> int:
    """Dim 1 where the output goes into a sequence-first recurrent op ([seq, batch, input]), else dim 0."""
    for r in readers.get(node.output[0], ()):
        if r.op_type in _RECURRENT and not any(a.name == "layout" and a.i for a in r.attribute):
            return 1
    return 0


def _rewrite(node: onnx.NodeProto, target: np.ndarray, axis: int, old: int, new: int,
             data: tuple | None) -> np.ndarray | None:
    """The constant for the new batch; None where the original serves; an error where the batch is folded
    into another dim. `data` is the input's shape at the old batch, where known."""
    t = [int(v) for v in target.reshape(-1)]
    if axis >= len(t):
        return None
    if node.op_type in _GENERATORS:
        return np.asarray([new, *t[1:]], dtype=target.dtype) if t[0] == old else None
    if t[axis] == old:
        t[axis] = new
        return np.asarray(t, dtype=target.dtype)
    allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
    if node.op_type == "Resize" or t[axis] == -1 or (t[axis] == 0 and not allowzero):
        return None  # the batch is inferred or copied from the input: it flows through
    at = [i for i, d in enumerate(t) if d == old]
    outermost = data is not None and len(data) > 0 and data[0] == old
    if len(at) == 1 and -1 not in t and data is not None and not outermost and at[0] < len(data) \
            and data[at[0]] == old:
        # A sequence-first layout keeps the batch inside ([197, 1, 2304] -> [197, 1, 3, 768]): the one
        # entry that is the old batch, where the input has it too, is where it went.
        t[at[0]] = new
        return np.asarray(t, dtype=target.dtype)
    raise HwUtilError(f"re-batching to {new}: {node.op_type} {node.name or node.output[0]!r} has a constant "
                      f"target {t} that mixes the batch with other dims; re-export the model with a dynamic "
                      "batch (dynamic_axes) or bind another --shape")


def _in_order(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes producers first (files are usually in order already; a few are not)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, out = list(graph.node), []
    while pending:
        left = [n for n in pending if not all(t in ready for t in n.input)]
        done = [n for n in pending if all(t in ready for t in n.input)]
        if not done:  # a cycle or a dangling input: later stages name it; keep the file's order here
            return out + left
        for n in done:
            ready.update(n.output)
        out += done
        pending = left
    return out


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Shape-sized int64 vectors: the only constants a Reshape, Resize or Expand takes its shape from."""
    return {k: v for k, v in constant_values(graph).items()
            if v.dtype == np.int64 and v.ndim == 1 and v.size <= _MAX_TARGET_ENTRIES}

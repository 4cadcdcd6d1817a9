"""Re-batching a file that fixes its batch (torchvision's legacy exporter, model zoos, many HF exports).

The inputs get the new leading dim (shapes.bind_inputs); what else carries the old batch is a Reshape whose
target is a constant written at export time: `x.view(1, -1)` traced at batch 1 is Reshape(x, [1, -1]), which
at batch 8 would silently make one row of 8x the width. Such a target is rewritten where its data tensor now
leads with the new batch and the target leads with the old one, in the in-memory copy only (the file is
never touched). Broadcasting constants (an Expand or a mask of [1, ...]) need nothing: they broadcast over
the new batch. A Reshape that mixes the batch with other dims in a constant it cannot be traced through is
refused with the node named. Shapes are re-inferred between rounds, since each rewrite makes the next
Reshape's input known.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import HwUtilError

_ROUNDS = 16


def rebatch(model: onnx.ModelProto, old: int, new: int) -> list[str]:
    """Rewrite `model` (in memory) for batch `new`; returns notes on what was rewritten."""
    from .shapes import _onnx_infer, tensor_shapes

    graph = model.graph
    done: set[int] = set()  # node positions settled: rewritten, or seen to follow the batch by themselves
    rewritten: list[str] = []
    for _ in range(_ROUNDS):
        known = tensor_shapes(_onnx_infer(model).graph)
        consts = _constants(graph)
        changed = False
        for pos, node in enumerate(graph.node):
            if pos in done or node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") \
                    or len(node.input) < 2:
                continue
            data = known.get(node.input[0], (None, 0))[0]
            if data is None or not data or data[0] != new or any(d is None for d in data):
                continue  # not (yet) known to carry the new batch
            target = consts.get(node.input[1])
            if target is None:
                done.add(pos)  # computed at run time (Shape -> Gather -> Concat): it follows the batch
                continue
            fixed = _rewrite(node, data, target, old, new)
            done.add(pos)
            if fixed is not None:
                name = f"{node.input[1]}__batch{new}_{pos}"
                graph.initializer.append(numpy_helper.from_array(fixed, name))
                node.input[1] = name
                rewritten.append(node.name or node.output[0])
                changed = True
        if not changed:
            break
    if not rewritten:
        return []
    shown = ", ".join(rewritten[:5]) + (f" and {len(rewritten) - 5} more" if len(rewritten) > 5 else "")
    return [f"re-batching rewrote {len(rewritten)} Reshape targets fixed at batch {old}: {shown}"]


def _rewrite(node: onnx.NodeProto, data: tuple, target: np.ndarray, old: int, new: int) -> np.ndarray | None:
    """The target to use at the new batch, None if the original serves, or an error if the batch cannot be
    traced through it."""
    t = [int(v) for v in target.reshape(-1)]
    numel = int(np.prod(data))
    allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
    if (t and t[0] in (-1,)) or (t and t[0] == 0 and not allowzero):
        return None  # dim 0 inferred or copied from the input: the batch flows through
    if t and t[0] == old:
        candidate = [new, *t[1:]]
        if _fits(candidate, data, numel, allowzero):
            return np.asarray(candidate, dtype=target.dtype)
    if _fits(t, data, numel, allowzero) and -1 not in t:
        return None  # the target holds as written (it does not involve the batch)
    raise HwUtilError(f"re-batching to {new}: Reshape {node.name or node.output[0]!r} has a constant target "
                      f"{t} that mixes the batch with other dims; re-export the model with a dynamic batch "
                      "(dynamic_axes) or bind another --shape")


def _fits(t: list[int], data: tuple, numel: int, allowzero: bool) -> bool:
    dims = [data[i] if d == 0 and not allowzero and i < len(data) else d for i, d in enumerate(t)]
    if dims.count(-1) > 1:
        return False
    known = int(np.prod([d for d in dims if d != -1])) if dims else 1
    return numel % known == 0 if -1 in dims else known == numel


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        if init.data_type == onnx.TensorProto.INT64 and len(init.dims) == 1 and init.dims[0] <= 16:
            out[init.name] = numpy_helper.to_array(init)
    for n in graph.node:
        if n.op_type == "Constant" and n.output:
            t = next((a.t for a in n.attribute if a.name == "value"), None)
            if t is not None and t.data_type == onnx.TensorProto.INT64 and len(t.dims) == 1 \
                    and t.dims[0] <= 16:
                out[n.output[0]] = numpy_helper.to_array(t)
    return out

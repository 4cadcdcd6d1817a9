"""Our own last inference layer: evaluate the small shape computations (Shape -> Gather -> Concat -> Reshape
chains) that exporters leave in a graph, so that ONNX inference sees their results as constants."""

from __future__ import annotations

import contextlib

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .shape_readers import has_typed_data, tensor_shapes

# The ops a shape computation is built from; anything else computes data, not shapes.
FOLDABLE = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Add", "Sub", "Mul",
            "Div", "Floor", "Ceil", "Range", "Equal", "Where", "ConstantOfShape", "ReduceProd", "ReduceMax",
            "ReduceMin", "ReduceSum", "Max", "Min", "Neg", "Abs", "Expand", "Identity", "Size", "Constant",
            "Sqrt", "Not", "And", "Or", "Less", "Greater", "Mod", "Reshape", "Transpose"}
FOLD_LIMIT = 1024  # elements: shape subgraphs are tiny; anything larger is real data
# Ops whose output size their input values decide: estimated before anything is evaluated.
GENERATORS = ("ConstantOfShape", "Expand", "Tile", "Range")
# Reference-evaluator results kept across folding rounds and bindings (evaluate), at most this many: each
# holds at most a few small arrays (inputs and outputs of at most FOLD_LIMIT elements).
_EVALUATED_MAX = 20_000
_EVALUATED: dict[tuple, list[np.ndarray] | None] = {}


def fold_shape_subgraphs(model: onnx.ModelProto, shapes: dict | None = None) -> tuple[onnx.ModelProto, int]:
    """Evaluate nodes whose inputs are known small constants (or the shapes of static tensors) and turn
    their outputs into initializers, so that a second ONNX inference sees Reshape targets as constants.
    `shapes`: the model's tensor_shapes, where the caller has them."""
    shapes = tensor_shapes(model.graph) if shapes is None else shapes
    consts: dict[str, np.ndarray] = {}
    for init in model.graph.initializer:
        n = int(np.prod(init.dims)) if init.dims else 1
        if n <= FOLD_LIMIT and (init.raw_data or has_typed_data(init)):
            with contextlib.suppress(Exception):
                consts[init.name] = numpy_helper.to_array(init)
    folded = 0
    opset = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    opset_key = tuple(o.SerializeToString() for o in opset)
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in FOLDABLE:
            continue
        if node.op_type in ("Shape", "Size"):
            s = shapes.get(node.input[0], (None, 0))[0]
            if s is None or any(d is None for d in s):
                continue
            if node.op_type == "Size":
                consts[node.output[0]] = np.array(int(np.prod(s)), dtype=np.int64)
            else:
                lo, hi = _attr(node, "start", 0), _attr(node, "end", None)
                consts[node.output[0]] = np.array(s, dtype=np.int64)[lo:hi]
            folded += 1
            continue
        if not all((not i) or i in consts for i in node.input):
            continue
        feeds = {i: consts[i] for i in node.input if i}
        if output_too_big(node, feeds):
            continue  # a generator asked for more than shape math ever needs: never allocate it
        outs = evaluate(node, feeds, opset, opset_key)
        if outs is not None:
            for name, value in zip([o for o in node.output if o], outs, strict=False):
                consts[name] = value
            folded += 1
    if not folded:
        return model, 0
    out = onnx.ModelProto()
    out.CopyFrom(model)
    produced = {o for n in model.graph.node for o in n.output}
    existing = {i.name for i in model.graph.initializer}
    keep = []
    for node in out.graph.node:
        if node.output and all((not o) or o in consts for o in node.output) and node.op_type != "Constant":
            continue  # replaced by initializers below
        keep.append(node)
    del out.graph.node[:]
    out.graph.node.extend(keep)
    for name, value in consts.items():
        if name in produced and name not in existing:
            out.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return out, folded


def evaluate(node: onnx.NodeProto, feeds: dict[str, np.ndarray], opset: list,
              opset_key: tuple) -> list[np.ndarray] | None:
    """The node's outputs on `feeds` by onnx's reference evaluator, or None where it cannot run the node or
    an output is over FOLD_LIMIT elements. A pure function of the node, the opset and the input values, so
    each result is kept (_EVALUATED): every inference round, and every batch a model is bound at, asks
    again for the hundreds of nodes (Constants, axes, batch-independent shape math) whose inputs did not
    change."""
    key = (node.SerializeToString(), opset_key,
           tuple((k, v.dtype.str, v.shape, v.tobytes()) for k, v in feeds.items()))
    if key in _EVALUATED:
        return _EVALUATED[key]
    from onnx.reference import ReferenceEvaluator

    result = None
    try:
        inputs = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                  for k, v in feeds.items()]
        outputs = [helper.make_tensor_value_info(o, 0, None) for o in node.output if o]
        sub = helper.make_model(helper.make_graph([node], "fold", inputs, outputs), opset_imports=opset)
        outs = ReferenceEvaluator(sub).run(None, feeds)
        if all(np.asarray(o).size <= FOLD_LIMIT for o in outs):
            result = [np.asarray(o) for o in outs]
    except Exception:  # the reference evaluator rejects what it cannot run; that node stays unfolded
        pass
    if len(_EVALUATED) >= _EVALUATED_MAX:
        _EVALUATED.clear()
    _EVALUATED[key] = result
    return result


def output_too_big(node: onnx.NodeProto, feeds: dict[str, np.ndarray], limit: int = FOLD_LIMIT) -> bool:
    """Generators whose output size their inputs decide; estimate it before evaluating anything."""
    vals = [feeds.get(i) for i in node.input]
    try:
        if node.op_type == "ConstantOfShape" and vals and vals[0] is not None:
            return float(np.prod(np.abs(vals[0].astype(np.float64)))) > limit
        if node.op_type in ("Expand", "Tile") and len(vals) > 1 and vals[1] is not None:
            return float(np.prod(np.abs(vals[1].astype(np.float64)))) * max(vals[0].size, 1) > limit
        if node.op_type == "Range" and len(vals) == 3:
            start, stop, delta = (float(np.asarray(v).reshape(-1)[0]) for v in vals)
            return delta == 0 or abs((stop - start) / delta) > limit
    except (ValueError, TypeError, OverflowError, IndexError, AttributeError):
        return True
    return False


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default

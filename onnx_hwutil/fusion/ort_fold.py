"""What onnxruntime's ConstantFolding computes at load, as a default CPU session does it (inputs bound).

ORT folds a node once its inputs are initializers (or folded), and a Shape once its input's shape is fully
known to ORT's own shape inference; before it folds a node it estimates the output's size from that
inference and skips the node where it cannot (onnxruntime 1.32 logs "output size could not be estimated").
So what ORT cannot infer a shape for stays a kernel, and so does all shape math downstream of it: a legacy
GPT-2 export's causal mask runs through LessOrEqual, ORT infers no shape past it, and every `x.size()`
of the attention and of the layers after it (Shape -> Gather -> Unsqueeze -> Concat -> Reshape) runs at
every inference, about half of that model's kernels.

What ORT's inference knows is tracked per dim (`_rule`: ONNX's rules, so a MatMul recovers its last dim from
the weight and a Reshape target with no -1 names every dim), merged with the shapes the file declares
(ORT starts from the value_info: a quantizer's output declares every shape). ReshapeFusion, which ORT runs
before it needs those shapes, turns a target computed from the Reshape input's own dims into a constant.

Checked against onnxruntime 1.32 with small synthetic sessions (tests/test_ort_fold.py): below opset 16,
LessOrEqual and GreaterOrEqual outputs get no inferred shape (neither a Shape of them nor they, of
constants, are folded); from 16 on they do, and Less, Greater and Equal always do. Data-dependent ops
(NonZero...) have no static output shape. An op whose output shape is set by an input's value (a Reshape
target, Slice bounds...) has a known shape only if that value is folded.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..shape_folding import evaluate
from .context import METADATA_READERS, Context
from .kinds import ShapePass, _static, load_time

# No inferred output shape in onnxruntime 1.32 below opset 16 (see the module's docstring): the versions
# before 16 are ONNX functions whose shape ORT does not infer.
NO_SHAPE = frozenset({"LessOrEqual", "GreaterOrEqual"})
NO_SHAPE_BEFORE = 16
# Output shapes that depend on the data itself.
DATA_DEPENDENT = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Compress"})
_REDUCE = frozenset({"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                     "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin"})
# The inputs whose values (not only shapes) set an op's output shape.
VALUE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3),
    "Resize": (1, 2, 3), "Upsample": (1,), "Unsqueeze": (1,), "Squeeze": (1,), "Split": (1,), "TopK": (1,),
    "OneHot": (1,), "ConstantOfShape": (0,), "Range": (0, 1, 2), "CenterCropPad": (1,),
    **{op: (1,) for op in _REDUCE},
}
# Ops whose output has their first input's shape (ONNX's propagateShapeFromInputToOutput).
_SAME_SHAPE = frozenset({
    "Cast", "CastLike", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Reciprocal",
    "Neg", "Abs", "Softmax", "LogSoftmax", "Identity", "Dropout", "Not", "Gelu", "FastGelu", "BiasGelu",
    "HardSigmoid", "HardSwish", "Clip", "Elu", "Selu", "Softplus", "Sin", "Cos", "Floor", "Ceil", "Round",
    "Sign", "IsNaN",
    "LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization", "BatchNormalization",
    "InstanceNormalization", "QuickGelu", "CumSum", "Mish", "Celu", "ThresholdedRelu", "PRelu", "Shrink",
})
_BROADCAST = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Where", "And", "Or", "Xor", "Equal", "Less",
                        "Greater", "Max", "Min", "Mod", "BitShift", "Sum", "Mean"})

Known = tuple[bool, ...] | None  # per dim of a tensor: does ORT's inference know it? None: not its rank


class OrtShapePass(ShapePass):
    # ORT's ConstantFolding leaves DequantizeLinear alone in a QDQ model (skip_dequantize_linear), so that
    # its QDQ transformers still see the node units: a weight's DQ that no unit takes (a LayerNorm's gamma),
    # and a Gather of the dequantized table (an embedding), run at every inference.
    name = "ort_shape"
    help = ("the shape pass as onnxruntime folds at load: every DequantizeLinear, of a constant too, is left "
            "to run (or to a QDQ node unit), and so is shape math on tensors its shape inference cannot see")
    keep = frozenset({"DequantizeLinear"})

    def load_time(self, ctx: Context) -> set[str]:
        return ort_load_time(ctx, self.keep)


def ort_load_time(ctx: Context, keep: frozenset[str]) -> set[str]:
    """The nodes ORT folds at load: those kinds._static allows, not in `keep`, whose output shapes ORT
    knows; a Shape or Size only where its input's shape is known."""
    key = ("ort_load_time", keep)
    if key in ctx.memo:
        return ctx.memo[key]
    static: set[str] = set()
    known: dict[str, Known] = {}  # what ORT's inference knows of each tensor's shape, where not all of it
    graph = ctx.graph
    opset = graph.opsets.get("", graph.opsets.get("ai.onnx", 0))
    blind = NO_SHAPE if opset < NO_SHAPE_BEFORE else frozenset()
    opaque = blind | DATA_DEPENDENT
    fused: dict[str, list[int]] = {}  # Reshape -> the target ReshapeFusion gave it
    for n in graph.nodes:  # in execution order
        if n.op_type == "Reshape" and len(n.inputs) > 1 and not _value_known(ctx, n.inputs[1], static):
            match = _reshape_fusion(ctx, n, static)
            if match is not None:
                static |= match[0]
                fused[n.name] = match[1]
        if n.domain in ("", "ai.onnx") and n.op_type not in opaque and \
                not any(t in known for t in n.inputs if t) and \
                all(_value_known(ctx, t, static) for i, t in enumerate(n.inputs)
                    if t and i in VALUE_INPUTS.get(n.op_type, ())):
            outs = {}  # the common case: everything it reads is known, so is what it writes
        else:
            outs = _infer(ctx, n, known, static, blind, fused.get(n.name))
        for o in n.outputs:
            if o and outs.get(o, True) is not True:
                mask = _with_declared(outs[o], ctx.declared.get(o))
                if mask is not True:
                    known[o] = mask
        if n.op_type in METADATA_READERS:
            folds = bool(n.inputs) and n.inputs[0] not in known
        else:
            folds = (n.op_type not in keep and not any(o in known for o in n.outputs)
                     and _static(ctx, n, static))
        if folds:
            static.add(n.name)
    ctx.memo[key] = static
    ctx.memo[("ort_partial_shapes", keep)] = known
    return static


def ort_known_dims(ctx: Context, tensor: str) -> Known:
    """Which dims of the tensor ORT's shape inference knows (None: not even its rank)."""
    keep = OrtShapePass.keep
    ort_load_time(ctx, keep)
    partial = ctx.memo[("ort_partial_shapes", keep)]
    if tensor in partial:
        return partial[tensor]
    shape = ctx.graph.tensor(tensor).shape
    return None if shape is None else (True,) * len(shape)


def why_it_runs(ctx: Context, node: str) -> str | None:
    """For shape math a runtime could fold at load (kinds.load_time) that ORT runs at every inference: why,
    naming the tensor whose shape ORT's inference does not see. None for any other node."""
    keep = OrtShapePass.keep
    if node in ort_load_time(ctx, keep) or node not in load_time(ctx, keep):
        return None
    partial = ctx.memo[("ort_partial_shapes", keep)]
    graph, seen, stack = ctx.graph, set(), [node]
    while stack:  # back through the shape math to a Shape (or Size) of a tensor ORT cannot see
        n = graph.by_name[stack.pop()]
        if n.op_type in METADATA_READERS and n.inputs and n.inputs[0] in partial:
            known = partial[n.inputs[0]]
            dims = "rank" if known is None else \
                "dims " + ", ".join(str(i) for i, k in enumerate(known) if not k)
            return (f"it computes from the shape of {n.inputs[0]!r}, whose {dims} onnxruntime's shape "
                    "inference does not know (it infers none past a data-dependent op, nor below opset 16 "
                    "past LessOrEqual or GreaterOrEqual), so onnxruntime cannot fold it at load: it runs at "
                    "every inference")
        for t in n.inputs:
            prod = graph.producer.get(t)
            if prod is not None and prod.name not in seen:
                seen.add(prod.name)
                stack.append(prod.name)
    return ("onnxruntime cannot estimate its output's size at load, so it does not fold it: it runs at every "
            "inference")


def _with_declared(mask: Known, declared: tuple[bool, ...] | None) -> Known | bool:
    """What ORT knows of a tensor: what it infers merged with what the file declares (ORT starts from the
    file's value_info: a quantizer's or optimizer's output declares every shape)."""
    if declared is None:
        return mask
    mask = (False,) * len(declared) if mask is None else mask
    if len(mask) != len(declared):
        return mask  # the file contradicts itself: trust neither
    merged = tuple(a or b for a, b in zip(mask, declared, strict=True))
    return True if all(merged) else merged


def _value_known(ctx: Context, t: str, static: set[str]) -> bool:
    prod = ctx.graph.producer.get(t)
    return ctx.graph.tensor(t).const or (prod is not None and prod.name in static)


def _infer(ctx: Context, n, known: dict[str, Known], static: set[str], blind: frozenset[str],
           target=None) -> dict[str, Known | bool]:
    """ONNX shape inference as ORT runs it, on what it knows: per output, True (all of its shape) or the dims
    it knows; `blind`: the ops it infers nothing for; `target`: a Reshape's target as ReshapeFusion rewrote
    it. Ops not modelled here, and nodes their op's rule cannot read (a malformed node: wrong ranks, axes
    out of range), know all of an output only if they know all of every input."""
    graph = ctx.graph
    outs = [o for o in n.outputs if o]

    def of(t: str) -> Known:
        if t in known:
            return known[t]
        shape = graph.tensor(t).shape
        return None if shape is None else (True,) * len(shape)

    def unknown(t: str) -> Known:
        shape = graph.tensor(t).shape
        return None if shape is None else (False,) * len(shape)

    if n.op_type in blind or n.op_type in DATA_DEPENDENT or n.domain not in ("", "ai.onnx", "com.microsoft"):
        return {o: None for o in outs}
    try:
        mask = _rule(ctx, n, of, static, target)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError, ZeroDivisionError):
        mask = _GENERIC
    if mask is not _GENERIC:
        shape = graph.tensor(outs[0]).shape if outs else None
        if mask is None or (shape is not None and len(mask) == len(shape)):
            return {o: (mask is not None and all(mask)) or mask for o in outs}
    everything = all(m is not None and all(m) for m in (of(t) for t in n.inputs if t))
    return {o: everything or unknown(o) for o in outs}


_GENERIC = object()  # _rule's answer for an op it does not model


def _rule(ctx: Context, n, of, static: set[str], target) -> Known | object:
    """The dims of the node's (first) output ORT's inference knows, by the op's own rule."""
    graph = ctx.graph
    outs = [o for o in n.outputs if o]

    def rank(t: str) -> int | None:
        shape = graph.tensor(t).shape
        return None if shape is None else len(shape)

    op, ins = n.op_type, list(n.inputs)
    x = of(ins[0]) if ins and ins[0] else None
    values = VALUE_INPUTS.get(op, ())
    if any(t and i in values and not _value_known(ctx, t, static) for i, t in enumerate(ins)):
        r = rank(outs[0])  # the value sets the shape and is computed at run time
        return None if r is None else (False,) * r
    if op in _SAME_SHAPE:
        return x
    if op in _BROADCAST:
        return _broadcast(ctx, [t for t in ins if t], of, outs[0])
    if x is None:
        return _GENERIC
    if op == "Transpose":
        return tuple(x[p] for p in (n.attr("perm") or reversed(range(len(x)))))
    if op in ("MatMul", "FusedMatMul") and (w := of(ins[1])) is not None and len(x) > 1 and len(w) > 1:
        batch = _broadcast_masks([x[:-2], w[:-2]], graph.tensor(outs[0]).shape[:-2])
        return (*batch, x[-2], w[-1])
    if op == "Gemm" and (w := of(ins[1])) is not None:
        return x[1] if n.attr("transA", 0) else x[0], w[0] if n.attr("transB", 0) else w[1]
    if op == "Reshape":
        target = load_time_value(ctx, ins[1]) if target is None else target
        mask = [bool(v > 0) or (v == 0 and i < len(x) and x[i]) for i, v in enumerate(target)]
        rest = all(x)  # a -1 is known where everything else is
        return tuple(m or (v == -1 and rest and all(k for j, k in enumerate(mask) if j != i))
                     for i, (m, v) in enumerate(zip(mask, target, strict=True)))
    if op == "Flatten":
        axis = n.attr("axis", 1) % max(len(x), 1)
        return all(x[:axis]), all(x[axis:])
    if op in ("Unsqueeze", "Squeeze"):
        axes = n.attr("axes")
        if axes is None and len(ins) > 1 and ins[1]:
            axes = load_time_value(ctx, ins[1]).tolist()
        if op == "Squeeze":
            if not axes:
                return None  # which dims go depends on the sizes it does not know
            gone = {a % len(x) for a in axes}
            return tuple(d for i, d in enumerate(x) if i not in gone)
        r = rank(outs[0])
        new, kept = {a % r for a in axes}, iter(x)
        return tuple(True if i in new else next(kept) for i in range(r))
    if op == "Concat":
        masks = [of(t) for t in ins if t]
        if any(m is None for m in masks):
            return None
        axis = n.attr("axis") % len(x)
        return tuple(all(m[i] for m in masks) if i == axis else any(m[i] for m in masks)
                     for i in range(len(x)))
    if op in ("Split", "Slice"):
        return x  # bounds known at load: each cut dim is as known as the input's
    if op in _REDUCE:
        axes = n.attr("axes")
        if axes is None and len(ins) > 1 and ins[1]:
            axes = load_time_value(ctx, ins[1]).tolist()
        gone = {a % len(x) for a in axes} if axes else set(range(len(x)))
        if n.attr("keepdims", 1):
            return tuple(True if i in gone else d for i, d in enumerate(x))
        return tuple(d for i, d in enumerate(x) if i not in gone)
    if op == "Gather" and (idx := of(ins[1])) is not None:
        axis = n.attr("axis", 0) % len(x)
        return (*x[:axis], *idx, *x[axis + 1:])
    if op == "Expand":
        return _broadcast_masks([x, (True,) * len(graph.tensor(ins[1]).shape or ())],
                                graph.tensor(outs[0]).shape)
    if op in ("Conv", "MaxPool", "AveragePool", "ConvTranspose", "FusedConv"):
        return x[0], True, *((all(x[2:]),) * (len(x) - 2))
    return _GENERIC


def _reshape_fusion(ctx: Context, reshape, static: set[str]) -> tuple[set[str], list[int]] | None:
    """ORT's ReshapeFusion: a target Concat of constants and of x.shape[i] read off the Reshape's own input
    (Shape -> Gather(i) -> Unsqueeze) becomes a constant target, i copied as 0 where it sits at position i,
    else as the one -1; the shape math goes. (The nodes it removes, the target) or None. Conditions as
    onnxruntime 1.32 applies them, checked with sessions: a shared Shape is fine; a Slice of the shape, a
    Concat another node reads too, two dims out of place or an out-of-place dim beside a -1 are not."""
    graph = ctx.graph
    concat = graph.producer.get(reshape.inputs[1])
    if concat is None or concat.op_type != "Concat" or concat.attr("axis") != 0 \
            or ctx.single_use(concat.outputs[0]) is not None:
        return None  # a target another node reads too stays (checked with a session)
    root = reshape.inputs[0]
    target: list[int] = []
    removed = {concat.name}
    for t in concat.inputs:
        value = load_time_value(ctx, t) if _value_known(ctx, t, static) else None
        if value is not None:
            target.extend(int(v) for v in value.reshape(-1))
            continue
        dim = _shape_dim(ctx, t, root, static)
        if dim is None:
            return None
        chain, i = dim
        removed |= chain
        target.append(0 if i == len(target) else -1)
    if target.count(-1) > 1:
        return None
    # what else reads a piece of the shape math keeps it (the Concat becomes the constant either way)
    return {r for r in removed if r == concat.name
            or all(c in removed for o in graph.by_name[r].outputs for c in ctx.readers(o))}, target


def _shape_dim(ctx: Context, t: str, root: str, static: set[str]) -> tuple[set[str], int] | None:
    """Unsqueeze(axes 0) <- Gather(scalar constant i) <- Shape(root): (those nodes, i), else None."""
    graph = ctx.graph
    unsq = graph.producer.get(t)
    if unsq is None or unsq.op_type != "Unsqueeze" or not unsq.inputs:
        return None
    axes = unsq.attr("axes")
    if axes is None and len(unsq.inputs) > 1 and _value_known(ctx, unsq.inputs[1], static):
        value = load_time_value(ctx, unsq.inputs[1])
        axes = None if value is None else value.tolist()
    gather = graph.producer.get(unsq.inputs[0])
    if axes != [0] or gather is None or gather.op_type != "Gather" or gather.attr("axis", 0) != 0 \
            or len(gather.inputs) < 2:
        return None
    shape = graph.producer.get(gather.inputs[0])
    index = load_time_value(ctx, gather.inputs[1]) if _value_known(ctx, gather.inputs[1], static) else None
    if shape is None or shape.op_type != "Shape" or shape.inputs[:1] != (root,) or index is None \
            or index.ndim != 0 or shape.attr("start", 0) != 0 or shape.attr("end") is not None:
        return None
    return {unsq.name, gather.name, shape.name}, int(index)


def _broadcast(ctx: Context, ins: list[str], of, out: str) -> Known:
    masks = [of(t) for t in ins]
    if any(m is None for m in masks):
        return None  # ONNX infers no shape where an operand's rank is unknown
    return _broadcast_masks(masks, ctx.graph.tensor(out).shape, [ctx.graph.tensor(t).shape for t in ins])


def _broadcast_masks(masks, out_shape, shapes=None) -> Known:
    """A broadcast output dim is known where an operand knows it as the output's size (or every operand
    knows its dim, all 1)."""
    if out_shape is None:
        return None
    r = len(out_shape)
    result = []
    for i in range(r):
        dims = []
        for j, m in enumerate(masks):
            k = i - (r - len(m))
            if k >= 0:
                size = shapes[j][k] if shapes and shapes[j] is not None else None
                dims.append((m[k], size))
        sure = any(k and (s is None or s == out_shape[i]) and (s != 1 or out_shape[i] == 1) for k, s in dims)
        result.append(sure and (out_shape[i] != 1 or all(k for k, _ in dims)))
    return tuple(result)


def load_time_value(ctx: Context, tensor: str, depth: int = 0) -> np.ndarray | None:
    """The value of a tensor known once shapes are: a constant, or shape math on constants and on the shapes
    of tensors (`x.shape[-1] // 2`), as ORT's constant folding computes it before its fusions look at it.
    None where it is computed from data at run time."""
    memo = ctx.memo.setdefault("load_time_values", {})
    if tensor in memo:
        return memo[tensor]
    value = ctx.graph.constant_value(tensor)
    prod = ctx.graph.producer.get(tensor)
    static = ctx.static or load_time(ctx)  # what the shape pass folded, where one ran
    if value is None and prod is not None and prod.name in static and depth < 32:
        if prod.op_type in ("Shape", "Size"):
            shape = ctx.graph.tensor(prod.inputs[0]).shape
            if shape is not None and all(isinstance(d, int) for d in shape):
                dims = np.array(shape, dtype=np.int64)
                value = (np.array(dims.prod(), dtype=np.int64) if prod.op_type == "Size"
                         else dims[prod.attr("start", 0):prod.attr("end", None)])
        else:
            feeds = {t: load_time_value(ctx, t, depth + 1) for t in prod.inputs if t}
            if all(v is not None for v in feeds.values()):
                opset = [helper.make_opsetid(d, v) for d, v in ctx.graph.opsets.items()]
                outs = evaluate(prod.proto, feeds, opset, tuple(o.SerializeToString() for o in opset))
                if outs is not None and tensor in prod.outputs:
                    value = outs[[o for o in prod.outputs if o].index(tensor)]
    memo[tensor] = value
    return value

"""Data movement, shape-only ops, constants and generators.

Movement ops do no arithmetic but move every byte they touch: Transpose, Concat, Slice, Gather are
injective kernels with full DRAM traffic. Shape-only ops (Reshape, Squeeze, Shape...) change metadata and
move nothing. Gather-like ops read the rows they pick, not the whole table.
"""

from __future__ import annotations

from math import log2, prod

from ..errors import HwUtilError
from .registry import MalformedNode, MissingShape, OpContext, OpKind, Work, cost

INJ = OpKind.INJECTIVE
INDEX_BYTES = 8  # the index outputs (NonZero, Unique, NonMaxSuppression) are int64, whatever the precision

cost("Flatten", "Squeeze", "Unsqueeze", "Shape", "Size", "Identity", "Dropout", "Optional",
     "OptionalGetElement", "OptionalHasElement")(lambda ctx: Work(kind=OpKind.SHAPE))


@cost("Reshape")
def _reshape(ctx: OpContext) -> Work:
    # A target shape written into the file for one batch makes another batch impossible: shape inference
    # (not strict) lets it through, onnxruntime refuses to run it, and so do we rather than cost it. The check
    # reads the constant target itself, never the output's declared shape (which a file may carry stale).
    target = ctx.const_value(1)
    try:
        n_in, dims = ctx.numel(0), ctx.shape(0)
    except MissingShape:
        return Work(kind=OpKind.SHAPE)
    if target is None or target.ndim != 1:
        return Work(kind=OpKind.SHAPE)
    if target.dtype.kind not in "iu":
        raise MalformedNode(f"shape is a constant of {target.dtype}, not of integers")
    keep_zero = bool(ctx.attr("allowzero", 0))
    sizes = [int(d) if d != 0 or keep_zero else (dims[i] if i < len(dims) else 0)
             for i, d in enumerate(target.tolist())]
    known = prod(d for d in sizes if d != -1)
    if -1 in sizes:
        ok = n_in % known == 0 if known else n_in == 0
    else:
        ok = known == n_in
    if not ok:
        shape = "x".join(map(str, target.tolist()))
        raise HwUtilError(f"node {ctx.node.name!r} (Reshape): its input has {n_in} elements, which its "
                          f"target shape {shape} cannot hold; the model cannot run with these shapes (a size "
                          "fixed in the file for another batch?)")
    return Work(kind=OpKind.SHAPE)


@cost("Constant")
def _constant(ctx: OpContext) -> Work:
    return Work(kind=OpKind.SHAPE)  # its value is a weight, read by its consumers


@cost("Transpose", "Concat", "Split", "Pad", "Tile", "DepthToSpace", "SpaceToDepth", "ReverseSequence",
      "Trilu", "Compress", "MaxUnpool", "Col2Im", "CenterCropPad", "ScatterElements", "ScatterND",
      "Scatter", "OneHot")
def _move(ctx: OpContext) -> Work:
    return Work(kind=INJ)


@cost("QLinearConcat", domain="com.microsoft")
def _qlinear_concat(ctx: OpContext) -> Work:
    return Work(flops=5 * ctx.numel_out(), kind=INJ)  # requantize each input to the output's scale


@cost("Expand")
def _expand(ctx: OpContext) -> Work:
    return Work(kind=OpKind.BROADCAST)


@cost("Slice")
def _slice(ctx: OpContext) -> Work:
    return Work(kind=INJ, reads={0: ctx.out_bytes()})


@cost("Gather", "GatherElements", "GatherND")
def _gather(ctx: OpContext) -> Work:
    """Reads the picked elements (as many as it writes; for an embedding table, weight traffic) and the
    indices, never the whole table."""
    return Work(kind=INJ, reads={0: ctx.elem_bytes_of_input(0, ctx.numel_out())})


@cost("Resize", "Upsample")
def _resize(ctx: OpContext) -> Work:
    mode = ctx.str_attr("mode", "nearest")
    x, y = ctx.shape(0), ctx.out()
    k = sum(a != b for a, b in zip(x, y, strict=False))
    if mode == "linear":  # 2^k - 1 one-dimensional lerps of 3 FLOPs per output
        per = 3 * (2**k - 1)
    elif mode == "cubic":  # (4^k - 1)/3 one-dimensional 4-tap filters of 7 FLOPs
        per = 7 * (4**k - 1) // 3
    else:
        per = 0
    return Work(flops=per * ctx.numel_out(), kind=INJ if per == 0 else OpKind.OPAQUE)


@cost("GridSample")
def _grid_sample(ctx: OpContext) -> Work:
    return Work(flops=ctx.numel_out() * 12, kind=OpKind.OPAQUE)  # unnormalize (3) + bilinear (9)


@cost("TopK")
def _topk(ctx: OpContext) -> Work:
    x = ctx.shape(0, min_rank=1)
    axis = ctx.int_attr("axis", -1) % len(x)
    k = max(int(ctx.out(rank=len(x))[axis]), 1)
    # a k-element heap per row: one compare per element plus log2(k) sift compares
    return Work(flops=int(ctx.numel(0) * (1 + log2(k))) if k > 1 else ctx.numel(0), kind=OpKind.OPAQUE)


@cost("NonMaxSuppression")
def _nms(ctx: OpContext) -> Work:
    b, classes, n = ctx.shape(1, rank=3)  # scores
    # sort scores (n log n) and, at worst, an IoU (about 15 FLOPs) for every pair of boxes per class
    flops = b * classes * (int(n * log2(max(n, 2))) + 15 * n * (n - 1) // 2)
    limit = ctx.const_int(2)
    # absent means 0 selected boxes (the spec); unknown at load time means every box, the upper bound
    if not ctx.has(2):
        per_class = 0
    else:
        per_class = max(limit, 0) if limit is not None else n
    written = b * classes * min(per_class, n) * 3 * INDEX_BYTES  # at most: [selected, 3] indices
    return Work(flops=flops, kind=OpKind.OPAQUE, writes={0: written})


@cost("NonZero")
def _nonzero(ctx: OpContext) -> Work:
    x = ctx.shape(0)
    written = len(x) * ctx.numel(0) * INDEX_BYTES  # at most: every element nonzero
    return Work(flops=ctx.numel(0), kind=OpKind.OPAQUE, writes={0: written})


@cost("Unique")
def _unique(ctx: OpContext) -> Work:
    n = ctx.numel(0)
    # upper bounds: every element unique
    return Work(flops=int(n * log2(max(n, 2))), kind=OpKind.OPAQUE,
                writes={0: ctx.in_bytes(0), 1: n * INDEX_BYTES, 2: n * INDEX_BYTES, 3: n * INDEX_BYTES})


def _folded(ctx: OpContext) -> bool:
    """Generators fed only by constants are folded at load time by every runtime: they cost nothing."""
    return all(ctx.graph.tensor(t).const for t in ctx.node.inputs if t)


@cost("ConstantOfShape", "EyeLike")
def _fill(ctx: OpContext) -> Work:
    if ctx.node.op_type == "ConstantOfShape" and _folded(ctx):
        return Work(kind=OpKind.SHAPE)
    return Work(kind=INJ, reads={0: 0})  # reads a shape, not data


@cost("Range")
def _range(ctx: OpContext) -> Work:
    if _folded(ctx):
        return Work(kind=OpKind.SHAPE)
    return Work(flops=ctx.numel_out(), kind=INJ)


@cost("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli", "Multinomial")
def _random(ctx: OpContext) -> Work:
    # a counter-based generator plus the transform: a handful of operations, counted as 4
    return Work(flops=4 * ctx.numel_out(), kind=OpKind.OPAQUE)

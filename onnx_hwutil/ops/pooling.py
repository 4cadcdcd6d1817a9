"""Pooling and reductions: FLOPs per element visited."""

from __future__ import annotations

from math import prod

from .registry import OpContext, OpKind, Work, cost

RED = OpKind.REDUCTION


@cost("MaxPool", "AveragePool", "LpPool")
def _pool(ctx: OpContext) -> Work:
    # one compare or add per window element; LpPool's power and root are counted in the 2x
    per = prod(ctx.ints_attr("kernel_shape", [1])) * (2 if ctx.node.op_type == "LpPool" else 1)
    return Work(flops=ctx.numel_out() * per, kind=RED)


@cost("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(ctx: OpContext) -> Work:
    extra = ctx.numel_out() if ctx.node.op_type == "GlobalAveragePool" else 0  # the final divide
    return Work(flops=ctx.numel(0) + extra, kind=RED)


@cost("QLinearGlobalAveragePool", "QLinearAveragePool", domain="com.microsoft")
def _qlinear_pool(ctx: OpContext) -> Work:
    per = prod(ctx.ints_attr("kernel_shape", [1]))
    visited = ctx.numel(0) if ctx.node.op_type == "QLinearGlobalAveragePool" else ctx.numel_out() * per
    return Work(flops=visited + 5 * ctx.numel_out(), kind=RED)  # plus de/requantization per output


@cost("MaxRoiPool")
def _max_roi_pool(ctx: OpContext) -> Work:
    # each output cell scans its bin; bins tile the ROI, so about C x ROI area per ROI: bound by input plane
    x = ctx.shape(0, rank=4)
    return Work(flops=ctx.numel_out() + ctx.shape(1, rank=2)[0] * x[1] * x[2] * x[3], kind=OpKind.OPAQUE)


@cost("RoiAlign")
def _roi_align(ctx: OpContext) -> Work:
    s = ctx.int_attr("sampling_ratio", 0) or 2  # 0 means adaptive; torchvision's usual is 2
    # s*s bilinear samples per output cell, 3 lerps of 3 FLOPs each, plus the average
    return Work(flops=ctx.numel_out() * (s * s * 10), kind=OpKind.OPAQUE)


_REDUCE = {"ReduceSum": 1, "ReduceMean": 1, "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1,
           "ReduceL1": 2, "ReduceL2": 2, "ReduceSumSquare": 2, "ReduceLogSum": 1, "ReduceLogSumExp": 2,
           "ArgMax": 1, "ArgMin": 1}


def _reduce(per: int):
    def formula(ctx: OpContext) -> Work:
        return Work(flops=per * ctx.numel(0) + ctx.numel_out(), kind=RED)
    return formula


for _op, _per in _REDUCE.items():
    cost(_op)(_reduce(_per))


@cost("CumSum")
def _cumsum(ctx: OpContext) -> Work:
    return Work(flops=ctx.numel(0), kind=RED)

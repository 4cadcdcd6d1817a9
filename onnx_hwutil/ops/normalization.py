"""Normalizations and softmax: FLOPs per element of the normalized tensor.

Counts (per element; per-row sqrt/divide are negligible and not counted):
- BatchNormalization at inference: folded to one scale and one shift = 2.
- LayerNormalization / Instance / Group / MeanVarianceNormalization: mean (1), subtract (1), square (1),
  variance sum (1), multiply by 1/std (1), gamma (1), beta (1) = 7.
- RMS norm (SimplifiedLayerNormalization, RMSNormalization): square, sum, multiply by 1/rms, gamma = 4.
- Softmax / LogSoftmax: max (1), subtract (1), exp (1), sum (1), divide or log-subtract (1) = 5.
"""

from __future__ import annotations

from .registry import OpContext, OpKind, Work, cost

BN, LN, RMS, SOFTMAX = 2, 7, 4, 5


def _per_element(ctx: OpContext, per: int, kind: OpKind) -> Work:
    return Work(flops=per * ctx.numel(0), kind=kind)


@cost("BatchNormalization")
def _bn(ctx):
    return _per_element(ctx, BN, OpKind.BROADCAST)


@cost("LayerNormalization", "InstanceNormalization", "GroupNormalization", "MeanVarianceNormalization",
      "LpNormalization")
def _ln(ctx):
    return _per_element(ctx, LN, OpKind.REDUCTION)


@cost("RMSNormalization")
def _rms(ctx):
    return _per_element(ctx, RMS, OpKind.REDUCTION)


@cost("Softmax", "LogSoftmax", "Hardmax")
def _softmax(ctx):
    return _per_element(ctx, SOFTMAX, OpKind.REDUCTION)


@cost("LRN")
def _lrn(ctx):
    # square-sum over `size` neighbours, then scale, power and divide
    return _per_element(ctx, ctx.int_attr("size", 1) + 3, OpKind.REDUCTION)


# -- com.microsoft fusions ------------------------------------------------------------------------------

@cost("LayerNormalization", domain="com.microsoft")
def _ms_ln(ctx):
    return _per_element(ctx, LN, OpKind.REDUCTION)


@cost("SimplifiedLayerNormalization", domain="com.microsoft")
@cost("SimplifiedLayerNormalization")  # exporters emit it in the default domain too
def _ms_rms(ctx):
    return _per_element(ctx, RMS, OpKind.REDUCTION)


@cost("SkipLayerNormalization", domain="com.microsoft")
def _skip_ln(ctx: OpContext):
    # input + skip (+ bias), then layer norm
    return _per_element(ctx, LN + 1 + (1 if ctx.has(4) else 0), OpKind.REDUCTION)


@cost("SkipSimplifiedLayerNormalization", domain="com.microsoft")
def _skip_rms(ctx: OpContext):
    return _per_element(ctx, RMS + 1 + (1 if ctx.has(3) else 0), OpKind.REDUCTION)


@cost("BiasSoftmax", domain="com.microsoft")
def _bias_softmax(ctx):
    return _per_element(ctx, SOFTMAX + 1, OpKind.REDUCTION)


@cost("QLinearSoftmax", domain="com.microsoft")
def _qlinear_softmax(ctx):
    # dequantize (2), softmax (5), requantize (3); ORT implements it with a lookup table of exps
    return _per_element(ctx, SOFTMAX + 5, OpKind.REDUCTION)


@cost("EmbedLayerNormalization", domain="com.microsoft")
def _embed_ln(ctx: OpContext):
    # Gathers word, position (and segment) rows, sums them, then layer norm over [B, S, hidden]:
    # only the rows touched are read from the tables.
    n = ctx.numel_out()
    rows = 3 if ctx.has(4) else 2
    picked = ctx.elem_bytes_of_input(2, n)
    return Work(flops=(LN + rows - 1) * n, kind=OpKind.OPAQUE, reads={2: picked, 3: picked, 4: picked})

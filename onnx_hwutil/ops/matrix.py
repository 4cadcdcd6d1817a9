"""Matrix-class ops: every multiply-accumulate counted as one MAC, FLOPs = 2 x MACs + epilogue.

The pure `*_macs` functions take shapes and numbers only, so tests can check them by hand. Each formula
also states its GEMM geometry (batch, M, N, K), the shape discrete units see; the geometry must reproduce
the counted MACs, so a backend's mapping cannot drift from the count.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from math import prod

from .elementwise import DYNAMIC_QUANTIZE_FLOPS, activation_flops
from .registry import Gemm, MalformedNode, OpContext, OpKind, Work, cost

MATRIX = OpKind.MATRIX

# -- convolution ----------------------------------------------------------------------------------------


def conv_macs(w_shape, y_shape) -> int:
    """Each output element accumulates Cin/group x kernel products: W is [Cout, Cin/g, k...]."""
    return prod(y_shape) * prod(w_shape[1:])


def conv_transpose_macs(x_shape, w_shape) -> int:
    """Each input element scatters into Cout/group x kernel outputs: W is [Cin, Cout/g, k...]."""
    return prod(x_shape) * prod(w_shape[1:])


def checked(gemms: tuple[Gemm, ...], macs: int) -> tuple[Gemm, ...]:
    """The geometry if it reproduces the counted MACs; otherwise one GEMM that keeps M and N, flagged."""
    if macs <= 0:
        return ()
    if sum(g.macs for g in gemms) == macs:
        return gemms
    g = gemms[0] if gemms else Gemm(1, 1, 1, 1)
    m, n = g.m * g.batch, g.n
    return (Gemm(1, m, n, max(macs // max(m * n, 1), 1), g.weight_stationary, approx=True),)


def _epilogue(ctx: OpContext, macs: int, bias_input: int | None, per_out: int = 0,
              gemms: tuple[Gemm, ...] = ()) -> Work:
    n_out = ctx.numel_out()
    bias = n_out if bias_input is not None and ctx.has(bias_input) else 0
    return Work(macs=macs, flops=2 * macs + bias + per_out * n_out, kind=MATRIX, gemms=checked(gemms, macs))


def conv_gemm(w_shape, y_shape, group: int, channels_last: bool = False, const: bool = True) -> Gemm:
    """Implicit GEMM per group: M = N x output pixels, N = Cout/g, K = Cin/g x kernel."""
    spatial = prod(y_shape[1:-1]) if channels_last else prod(y_shape[2:])
    return Gemm(group, y_shape[0] * spatial, w_shape[0] // max(group, 1), prod(w_shape[1:]), const)


def _conv_like(ctx: OpContext, w: int, bias_input: int | None, per_out: int = 0,
               channels_last: bool = False) -> Work:
    w_shape, y = ctx.shape(w, min_rank=3), ctx.out(min_rank=3)  # each with at least one spatial dim
    g = conv_gemm(w_shape, y, ctx.int_attr("group", 1), channels_last, ctx.is_const(w))
    return _epilogue(ctx, conv_macs(w_shape, y), bias_input, per_out, (g,))


@cost("Conv")
def _conv(ctx: OpContext) -> Work:
    return _conv_like(ctx, 1, 2)


@cost("ConvInteger")
def _conv_integer(ctx: OpContext) -> Work:
    return _conv_like(ctx, 1, None)


@cost("QLinearConv")
def _qlinear_conv(ctx: OpContext) -> Work:
    # Requantization per output: scale multiply and zero-point add.
    return _conv_like(ctx, 3, 8, per_out=2)


@cost("ConvTranspose")
def _conv_transpose(ctx: OpContext) -> Work:
    # As the GEMM before col2im: [N*Hin*Win, Cin/g] x [Cin/g, Cout/g*k] per group.
    x, w = ctx.shape(0, min_rank=3), ctx.shape(1, min_rank=3)
    g = max(ctx.int_attr("group", 1), 1)
    gemm = Gemm(g, x[0] * prod(x[2:]), w[1] * prod(w[2:]), w[0] // g, ctx.is_const(1))
    return _epilogue(ctx, conv_transpose_macs(x, w), 2, gemms=(gemm,))


@cost("NhwcConv", domain="com.microsoft")
def _nhwc_conv(ctx: OpContext) -> Work:
    return _conv_like(ctx, 1, 2, channels_last=True)


@cost("FusedConv", domain="com.microsoft")
def _fused_conv(ctx: OpContext) -> Work:
    act = activation_flops(ctx.str_attr("activation", ""))
    residual = 1 if ctx.has(3) else 0
    return _conv_like(ctx, 1, 2, per_out=act + residual)


# -- GEMM and MatMul ------------------------------------------------------------------------------------


def matmul_macs(a_shape, y_shape, trans_a: bool = False) -> int:
    """numpy matmul semantics (batch broadcast, 1-D operands): each output element sums K products."""
    if len(a_shape) == 1:
        k = a_shape[0]
    else:
        k = a_shape[-2] if trans_a else a_shape[-1]
    return prod(y_shape) * k


def _gemm_like(ctx: OpContext, a: int, b: int, bias_input: int | None, per_out: int = 0) -> Work:
    a_shape, y = ctx.shape(a, rank=2), ctx.out()
    k = a_shape[0] if ctx.attr("transA", 0) else a_shape[-1]
    gemm = Gemm(1, y[0], y[1], k, ctx.is_const(b)) if len(y) == 2 else Gemm(1, prod(y), 1, k, ctx.is_const(b))
    return _epilogue(ctx, ctx.numel_out() * k, bias_input, per_out, (gemm,))


@cost("Gemm")
def _gemm(ctx: OpContext) -> Work:
    return _gemm_like(ctx, 0, 1, 2)


@cost("QGemm", domain="com.microsoft")
def _qgemm(ctx: OpContext) -> Work:
    return _gemm_like(ctx, 0, 3, 6, per_out=2)


@cost("FusedGemm", domain="com.microsoft")
def _fused_gemm(ctx: OpContext) -> Work:
    return _gemm_like(ctx, 0, 1, 2, per_out=activation_flops(ctx.str_attr("activation", "")))


def matmul_gemm(a_shape, y_shape, b_shape, k: int, const_b: bool = False) -> Gemm:
    """numpy matmul as GEMMs. When B is one matrix (2-D, or with only 1s before its last two dims) or a
    vector, it is shared by every row of A, so all leading dims of A fold into M: [197, 1, 768] x
    [768, 2304] is one 197 x 2304 x 768 GEMM, not 197 of one row. Otherwise each of the broadcast leading
    dims is its own GEMM."""
    b_rank = len(b_shape)
    n = y_shape[-1] if b_rank >= 2 and y_shape else 1
    if b_rank <= 2 or prod(b_shape[:-2]) == 1:
        return Gemm(1, prod(y_shape) // max(n, 1), n, k, const_b)
    m = y_shape[-2] if len(a_shape) > 1 else 1
    return Gemm(prod(y_shape) // max(m * n, 1), m, n, k, const_b)


def _matmul_like(ctx: OpContext, b: int, bias_input: int | None = None, per_out: int = 0,
                 trans_a: bool = False) -> Work:
    a, b_shape = ctx.shape(0, min_rank=1), ctx.shape(b, min_rank=1)  # numpy matmul takes no scalars
    # numpy's rule: a 1-D operand is promoted to a matrix, then its added dim is dropped from the output
    y = ctx.out(rank=max(len(a), len(b_shape), 2) - (len(a) == 1) - (len(b_shape) == 1))
    macs = matmul_macs(a, y, trans_a)
    k = macs // max(prod(y), 1)
    gemm = matmul_gemm(a, y, b_shape, k, ctx.is_const(b))
    return _epilogue(ctx, macs, bias_input, per_out, (gemm,))


@cost("MatMul", "MatMulInteger")
def _matmul(ctx: OpContext) -> Work:
    return _matmul_like(ctx, 1)


@cost("QLinearMatMul")
def _qlinear_matmul(ctx: OpContext) -> Work:
    return _matmul_like(ctx, 3, per_out=2)


@cost("MatMulInteger16", domain="com.microsoft")
def _matmul_integer16(ctx: OpContext) -> Work:
    return _matmul_like(ctx, 1)


@cost("FusedMatMul", domain="com.microsoft")
def _fused_matmul(ctx: OpContext) -> Work:
    alpha = 1 if ctx.attr("alpha", 1.0) != 1.0 else 0
    return _matmul_like(ctx, 1, per_out=alpha, trans_a=bool(ctx.attr("transA", 0)))


@cost("MatMulIntegerToFloat", domain="com.microsoft")
def _matmul_integer_to_float(ctx: OpContext) -> Work:
    # Dequantize each output (one multiply by the combined scale), then the optional bias.
    return _matmul_like(ctx, 1, 6, per_out=1)


@cost("DynamicQuantizeMatMul", domain="com.microsoft")
def _dynamic_quantize_matmul(ctx: OpContext) -> Work:
    w = _matmul_like(ctx, 1, 4, per_out=1)
    return replace(w, flops=w.flops + DYNAMIC_QUANTIZE_FLOPS * ctx.numel(0))  # A is quantized on the fly


@cost("MatMulNBits", domain="com.microsoft")
def _matmul_nbits(ctx: OpContext) -> Work:
    k, n = ctx.int_attr("K"), ctx.int_attr("N")
    macs = ctx.numel_out() * k
    gemms = checked((Gemm(1, ctx.numel_out() // max(n, 1), n, k, True),), macs)
    # Packed low-bit weights are dequantized once per call: subtract zero point, multiply scale.
    return Work(macs=macs, flops=2 * macs + 2 * n * k + (ctx.numel_out() if ctx.has(5) else 0), kind=MATRIX,
                gemms=gemms)


# -- Einsum ---------------------------------------------------------------------------------------------


def einsum_macs(equation: str, shapes: list[tuple[int, ...]]) -> tuple[int, int]:
    """(MACs, FLOPs) contracting operands left to right, as numpy's unoptimized einsum does.

    One operand is a reduction or a relayout (no MACs); two or more are matrix work whose MACs are the
    product of all index sizes of each pairwise step.
    """
    macs, flops, _ = einsum_work(equation, shapes)
    return macs, flops


def einsum_work(equation: str, shapes: list[tuple[int, ...]]) -> tuple[int, int, list[tuple[int, Gemm]]]:
    """(MACs, FLOPs, [(operand index of B, GEMM) per pairwise step]). In each step a label kept in both
    operands is a batch dim, one kept from the left only is M, from the right only is N, and every label
    summed away is K: their product is the step's MACs, so the geometry is the count."""
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum {equation!r}: {len(terms)} terms for {len(shapes)} operands")
    # labels for the dims "..." stands for: any characters the equation does not use, as many as the rank
    spare = (c for c in map(chr, range(0x100, sys.maxunicode + 1)) if c not in equation)
    max_ell = max((len(s) - len(t) + 3 for t, s in zip(terms, shapes, strict=True) if "..." in t),
                  default=0)
    ell = [next(spare) for _ in range(max_ell)]
    labels: list[str] = []
    sizes: dict[str, int] = {}
    for t, s in zip(terms, shapes, strict=True):
        if "..." in t:
            n = len(s) - (len(t) - 3)
            t = t.replace("...", "".join(ell[max_ell - n:]))
        if len(t) != len(s):
            raise ValueError(f"einsum {equation!r}: term {t!r} does not match rank {len(s)}")
        for c, d in zip(t, s, strict=True):
            sizes[c] = max(sizes.get(c, 1), d)
        labels.append(t)
    if arrow:
        out = rhs.replace("...", "".join(ell))
    else:
        counts = {c: sum(t.count(c) for t in labels) for c in sizes}
        out = "".join(ell) + "".join(sorted(c for c in sizes if counts[c] == 1 and c not in ell))
    if set(out) - set(sizes):
        raise ValueError(f"einsum {equation!r}: output labels {sorted(set(out) - set(sizes))} in no operand")
    if len(labels) == 1:
        summed = set(labels[0]) - set(out)
        n = prod(sizes[c] for c in set(labels[0]))
        return 0, (n if summed else 0), []
    if set().union(*labels) <= set(out):  # nothing summed: a broadcast elementwise product, not matrix work
        return 0, prod(sizes[c] for c in set(out)) * (len(labels) - 1), []
    macs = 0
    steps: list[tuple[int, Gemm]] = []
    cur = labels[0]
    for i in range(1, len(labels)):
        nxt = labels[i]
        union = set(cur) | set(nxt)
        step = prod(sizes[c] for c in union)
        macs += step
        needed = set(out).union(*labels[i + 1:]) if i + 1 < len(labels) else set(out)
        kept_l, kept_r = set(cur) & needed, set(nxt) & needed

        def size(cs):
            return prod(sizes[c] for c in cs)

        steps.append((i, Gemm(size(kept_l & kept_r), size(kept_l - kept_r), size(kept_r - kept_l),
                              size(union - needed))))
        cur = "".join(c for c in union if c in needed)
    return macs, 2 * macs, steps


@cost("Einsum")
def _einsum(ctx: OpContext) -> Work:
    shapes = [ctx.shape(i) for i in range(ctx.n_inputs)]
    try:
        macs, flops, steps = einsum_work(ctx.str_attr("equation"), shapes)
    except ValueError as e:
        raise MalformedNode(str(e)) from None
    if len(shapes) > 1:
        kind = MATRIX if macs else OpKind.BROADCAST
    else:
        kind = OpKind.REDUCTION if flops else OpKind.INJECTIVE
    gemms = tuple(replace(g, weight_stationary=ctx.is_const(i)) for i, g in steps)
    return Work(macs=macs, flops=flops, kind=kind, gemms=checked(gemms, macs))


# -- recurrent ------------------------------------------------------------------------------------------

# Elementwise FLOPs per hidden unit per step (Sigmoid 4, Tanh 1; see elementwise.FLOPS_PER_ELEMENT):
# LSTM: 4 gate sums + 3 sigmoids + 2 tanh + c = f*c + i*g (3) + h = o*tanh(c) (1) = 22; bias adds 8.
# GRU: 3 gate sums + 2 sigmoids + 1 tanh + r*(Rh) + h = (1-z)*n + z*h (3) = 16; bias adds 6.
# RNN: 1 sum + 1 tanh = 2; bias adds 2.
_RNN = {"LSTM": (4, 22, 8), "GRU": (3, 16, 6), "RNN": (1, 2, 2)}


def rnn_macs(kind: str, seq: int, batch: int, dirs: int, input_size: int, hidden: int) -> int:
    gates = _RNN[kind][0]
    return dirs * seq * batch * gates * hidden * (input_size + hidden)


def _rnn(ctx: OpContext, kind: str, w_transposed: bool = False) -> Work:
    x = ctx.shape(0, rank=3)
    seq, batch = (x[1], x[0]) if ctx.attr("layout", 0) else (x[0], x[1])
    w = ctx.shape(1, rank=3)
    dirs = w[0]
    gates, per_unit, bias_per_unit = _RNN[kind]
    hidden = ctx.int_attr("hidden_size", 0) or (w[2] if w_transposed else w[1]) // gates
    macs = rnn_macs(kind, seq, batch, dirs, x[2], hidden)
    steps = dirs * seq * batch * hidden
    flops = 2 * macs + steps * (per_unit + (bias_per_unit if ctx.has(3) else 0))
    if kind == "LSTM" and ctx.has(7):
        flops += steps * 6  # peepholes: three multiply-adds
    # One GEMM per step and direction: [batch, input + H] x [input + H, gates*H]. The directions run side by
    # side; the steps one after another (each needs the last one's hidden state).
    gemm = Gemm(dirs, batch, gates * hidden, x[2] + hidden, True, serial=seq)
    return Work(macs=macs, flops=flops, kind=MATRIX, gemms=checked((gemm,), macs))


@cost("LSTM")
def _lstm(ctx):
    return _rnn(ctx, "LSTM")


@cost("GRU")
def _gru(ctx):
    return _rnn(ctx, "GRU")


@cost("RNN")
def _rnn_op(ctx):
    return _rnn(ctx, "RNN")


@cost("DynamicQuantizeLSTM", domain="com.microsoft")
def _dq_lstm(ctx):
    # Weights are stored transposed, [dirs, input, 4H]; X is quantized per step.
    w = _rnn(ctx, "LSTM", w_transposed=True)
    return replace(w, flops=w.flops + DYNAMIC_QUANTIZE_FLOPS * ctx.numel(0))

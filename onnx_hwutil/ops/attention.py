"""Attention: QK^T and scores x V counted as MACs, per (batch, head), like the matrix ops they are.

The fused forms onnxruntime writes (Attention with its QKV projection, MultiHeadAttention,
GroupQueryAttention) and opset 23's Attention. The MACs depend on the query heads only: grouped K/V heads
are shared, not multiplied. Softmax, scale and mask are priced per score.
"""

from __future__ import annotations

from .matrix import checked
from .normalization import SOFTMAX
from .registry import Gemm, MalformedNode, OpContext, OpKind, Work, cost

MATRIX = OpKind.MATRIX


def attention_macs(batch: int, q_len: int, kv_len: int, qk_dim: int, v_dim: int) -> int:
    """QK^T and scores x V summed over heads: dims are heads x head_size."""
    return batch * q_len * kv_len * (qk_dim + v_dim)


def attention_gemms(batch: int, heads: int, q_len: int, kv_len: int, qk_dim: int, v_dim: int
                    ) -> tuple[Gemm, Gemm]:
    """The two batched products per (batch, head): scores = Q K^T ([S, hd] x [hd, kv]), then scores x V
    ([S, kv] x [kv, hd_v]). Neither operand is a weight. Heads that do not divide the dims stay one GEMM."""
    h = heads if heads > 0 and qk_dim % heads == 0 and v_dim % heads == 0 else 1
    return (Gemm(batch * h, q_len, kv_len, qk_dim // h, False),
            Gemm(batch * h, q_len, v_dim // h, kv_len, False))


def _softmax_flops(batch: int, heads: int, q_len: int, kv_len: int) -> int:
    # per score: the scale (1), the mask add (1) and the softmax
    return (2 + SOFTMAX) * batch * heads * q_len * kv_len


@cost("Attention", domain="com.microsoft")
def _ms_attention(ctx: OpContext) -> Work:
    b, s, d_in = ctx.shape(0, rank=3)
    w = ctx.shape(1, rank=2)
    heads = ctx.int_attr("num_heads", lo=1)
    sizes = ctx.ints_attr("qkv_hidden_sizes", [w[1] // 3] * 3)
    if len(sizes) != 3:
        raise MalformedNode(f"qkv_hidden_sizes has {len(sizes)} entries, not 3")
    dq, _, dv = sizes
    past = ctx.shape(4, rank=5)[3] if ctx.has(4) else 0  # [2, B, N, P, H]
    total = s + past
    proj = b * s * d_in * w[1]
    att = attention_macs(b, s, total, dq, dv)
    macs = proj + att
    flops = 2 * macs + (b * s * w[1] if ctx.has(2) else 0) + _softmax_flops(b, heads, s, total)
    gemms = (Gemm(1, b * s, w[1], d_in, ctx.is_const(1)), *attention_gemms(b, heads, s, total, dq, dv))
    return Work(macs=macs, flops=flops, kind=MATRIX, gemms=checked(gemms, macs))


@cost("MultiHeadAttention", domain="com.microsoft")
def _ms_mha(ctx: OpContext) -> Work:
    heads = ctx.int_attr("num_heads", lo=1)
    q = ctx.shape(0, rank=(3, 5))
    b, s = q[0], q[1]
    if len(q) == 5:  # packed QKV [B, S, N, 3, H]
        d = dv = q[2] * q[4]
        kv = s
    else:
        d = q[2]
        k = ctx.shape(1, rank=(3, 4, 5))  # [B, L, D], [B, N, L, H] or packed KV [B, L, N, 2, H]
        kv = k[2] if len(k) == 4 else k[1]
        dv = ctx.out(rank=3)[2]
    if ctx.has(6):  # past_key [B, N, P, H]
        kv += ctx.shape(6, rank=4)[2]
    macs = attention_macs(b, s, kv, d, dv)
    bias = b * s * (2 * d + dv) if ctx.has(3) else 0
    return Work(macs=macs, flops=2 * macs + bias + _softmax_flops(b, heads, s, kv), kind=MATRIX,
                gemms=checked(attention_gemms(b, heads, s, kv, d, dv), macs))


def _gqa_total_length(ctx: OpContext, new_tokens: int) -> int:
    """The key length every query attends to: total_sequence_length where it is a constant, else past + new
    tokens. Never the present output's inferred length: onnxruntime's symbolic inference copies the past's
    shape into it (the shared-buffer case), one token short of a concatenated cache (the onnxruntime-genai
    exports, whose present is declared past + new); where past and present do share a buffer, past is the
    buffer and the kernel attends at most that plus the new tokens."""
    tl = ctx.const_int(6)
    if tl is not None:
        return tl
    return (ctx.shape(3, rank=4)[2] if ctx.has(3) else 0) + new_tokens


@cost("GroupQueryAttention", domain="com.microsoft")
def _ms_gqa(ctx: OpContext) -> Work:
    heads = ctx.int_attr("num_heads", lo=1)
    kv_heads = ctx.int_attr("kv_num_heads", lo=1)
    q = ctx.shape(0, rank=3)
    b, s = q[0], q[1]
    head = q[2] // (heads + 2 * kv_heads) if not ctx.has(1) else q[2] // heads  # packed QKV or Q alone
    total = _gqa_total_length(ctx, s)
    d = heads * head  # K/V heads are shared across query groups: the MACs depend on query heads only
    macs = attention_macs(b, s, total, d, d)
    return Work(macs=macs, flops=2 * macs + _softmax_flops(b, heads, s, total), kind=MATRIX,
                gemms=checked(attention_gemms(b, heads, s, total, d, d), macs))


@cost("Attention")
def _onnx_attention(ctx: OpContext) -> Work:
    q = ctx.shape(0, rank=(3, 4))
    k, v = ctx.shape(1, rank=len(q)), ctx.shape(2, rank=len(q))
    if len(q) == 4:  # [B, heads, S, head]
        b, heads, s, hd = q
        kv = k[2]
        vd = v[3] * heads
        qd = heads * hd
    else:  # [B, S, hidden] with q_num_heads
        heads = ctx.int_attr("q_num_heads", lo=1)
        b, s, qd = q
        kv = k[1]
        vd = v[2] * heads // ctx.int_attr("kv_num_heads", heads, lo=1)
    if ctx.has(4):  # past_key [B, heads, P, head]
        kv += ctx.shape(4, rank=4)[2]
    macs = attention_macs(b, s, kv, qd, vd)
    return Work(macs=macs, flops=2 * macs + _softmax_flops(b, heads, s, kv), kind=MATRIX,
                gemms=checked(attention_gemms(b, heads, s, kv, qd, vd), macs))

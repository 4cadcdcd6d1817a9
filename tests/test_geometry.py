"""GEMM geometry comes from the op's own formula: the same matrix work maps to the same time whatever op
spells it (issue 11, items 1 and 2)."""

import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.hardware import load_spec
from onnx_hwutil.hardware.backends import BACKENDS
from onnx_hwutil.hardware.rates import rates
from onnx_hwutil.ops import Gemm

MS = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]


def _gemms(tmp_path, m, node=None):
    p = onnx_hwutil.profile(save(m, tmp_path / "m.onnx"), batch=None)
    ncs = [nc for nc in p.costs.nodes if nc.gemms and (node is None or nc.node.name == node)]
    return [g for nc in ncs for g in nc.gemms], sum(nc.cost.macs for nc in ncs)


def _matrix_time(gemms, chip, precision="int8"):
    spec = load_spec(chip)
    backend = BACKENDS[spec.kind](spec, rates(spec, precision))
    return backend.compute(gemms, 0, 0)[0]


def _batched_matmul(b, m, k, n):
    return model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                 [vi("a", T.FLOAT, [b, m, k]), vi("b", T.FLOAT, [b, k, n])], [vi("y", T.FLOAT, [b, m, n])])


def _einsum(b, m, k, n):
    return model([helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")],
                 [vi("a", T.FLOAT, [b, m, k]), vi("b", T.FLOAT, [b, k, n])], [vi("y", T.FLOAT, [b, m, n])])


def test_einsum_is_the_batched_matmul_it_spells(tmp_path):
    mm, mm_macs = _gemms(tmp_path, _batched_matmul(12, 512, 64, 512))
    es, es_macs = _gemms(tmp_path, _einsum(12, 512, 64, 512))
    assert mm == es == [Gemm(12, 512, 512, 64, False)]
    assert mm_macs == es_macs == 12 * 512 * 64 * 512
    for chip in ("h100-sxm5", "tpu-v4", "kpu-t256", "xeon-8490h"):
        assert _matrix_time(es, chip) == pytest.approx(_matrix_time(mm, chip), rel=0.01)


def test_einsum_contraction_steps_carry_their_own_geometry(tmp_path):
    # "bhqd,bhkd->bhqk" (scores) then a 3-operand chain: each step's batch x M x N x K equals its MACs.
    m = model([helper.make_node("Einsum", ["q", "k"], ["s"], equation="bhqd,bhkd->bhqk", name="scores"),
               helper.make_node("Einsum", ["x", "w1", "w2"], ["y"], equation="ij,jk,kl->il", name="chain")],
              [vi("q", T.FLOAT, [2, 3, 5, 7]), vi("k", T.FLOAT, [2, 3, 11, 7]), vi("x", T.FLOAT, [4, 6])],
              [vi("s", T.FLOAT, [2, 3, 5, 11]), vi("y", T.FLOAT, [4, 9])],
              [init("w1", (6, 8)), init("w2", (8, 9))])
    scores, macs = _gemms(tmp_path, m, "scores")
    assert scores == [Gemm(6, 5, 11, 7, False)] and macs == 6 * 5 * 11 * 7
    chain, macs = _gemms(tmp_path, m, "chain")
    # x @ w1 -> [4, 8] (w1 a weight), then @ w2 -> [4, 9]: 4*6*8 + 4*8*9 MACs
    assert chain == [Gemm(1, 4, 8, 6, True), Gemm(1, 4, 9, 8, True)] and macs == 4 * 6 * 8 + 4 * 8 * 9


@pytest.mark.parametrize("a_shape", [[197, 1, 768], [1, 197, 768], [197, 768]])
def test_a_2d_weight_folds_every_leading_dim_into_m(tmp_path, a_shape):
    # ViT exported seq-first: [197, 1, 768] x [768, 2304] is one 197 x 2304 x 768 GEMM, not 197 of one row.
    out = [*a_shape[:-1], 2304]
    m = model([helper.make_node("MatMul", ["x", "W"], ["y"])], [vi("x", T.FLOAT, a_shape)],
              [vi("y", T.FLOAT, out)], [init("W", (768, 2304))])
    gemms, macs = _gemms(tmp_path, m)
    assert gemms == [Gemm(1, 197, 2304, 768, True)] and macs == 197 * 2304 * 768
    g = model([helper.make_node("Gemm", ["x", "W"], ["y"])], [vi("x", T.FLOAT, [197, 768])],
              [vi("y", T.FLOAT, [197, 2304])], [init("W", (768, 2304))])
    as_gemm, _ = _gemms(tmp_path, g)
    for chip in ("h100-sxm5", "tpu-v4"):
        assert _matrix_time(gemms, chip) == pytest.approx(_matrix_time(as_gemm, chip), rel=0.01)


def test_gemm_transposed_a_takes_k_from_its_first_dim(tmp_path):
    m = model([helper.make_node("Gemm", ["a", "b"], ["y"], transA=1)],
              [vi("a", T.FLOAT, [5, 3]), vi("b", T.FLOAT, [5, 4])], [vi("y", T.FLOAT, [3, 4])])
    assert _gemms(tmp_path, m) == ([Gemm(1, 3, 4, 5, False)], 60)


def test_attention_ops_map_like_the_matmuls_they_replace(tmp_path):
    b, s, heads, hd = 1, 512, 12, 64
    d = heads * hd
    # Reference: scores = Q K^T and out = P V as batched MatMuls over (batch x heads).
    ref = model([helper.make_node("MatMul", ["q", "kt"], ["sc"]),
                 helper.make_node("MatMul", ["p", "v"], ["o"])],
                [vi("q", T.FLOAT, [b * heads, s, hd]), vi("kt", T.FLOAT, [b * heads, hd, s]),
                 vi("p", T.FLOAT, [b * heads, s, s]), vi("v", T.FLOAT, [b * heads, s, hd])],
                [vi("sc", T.FLOAT, [b * heads, s, s]), vi("o", T.FLOAT, [b * heads, s, hd])])
    ref_gemms, ref_macs = _gemms(tmp_path, ref)
    mha = model([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="com.microsoft",
                                  num_heads=heads)],
                [vi(n, T.FLOAT, [b, s, d]) for n in "qkv"], [vi("y", T.FLOAT, [b, s, d])], opset=MS)
    past = 0
    gqa = model([helper.make_node("GroupQueryAttention", ["q", "k", "v", "pk", "pv", "sl", "tl"],
                                  ["y", "yk", "yv"], domain="com.microsoft", num_heads=heads,
                                  kv_num_heads=4)],
                [vi("q", T.FLOAT, [b, s, d]), vi("k", T.FLOAT, [b, s, 4 * hd]),
                 vi("v", T.FLOAT, [b, s, 4 * hd]), vi("pk", T.FLOAT, [b, 4, past, hd]),
                 vi("pv", T.FLOAT, [b, 4, past, hd]), vi("sl", T.INT32, [b]), vi("tl", T.INT32, [])],
                [vi("y", T.FLOAT, [b, s, d]), vi("yk", T.FLOAT, [b, 4, s, hd]),
                 vi("yv", T.FLOAT, [b, 4, s, hd])],
                opset=MS)
    for m in (mha, gqa):
        gemms, macs = _gemms(tmp_path, m)
        assert macs == ref_macs == 2 * b * heads * s * s * hd
        assert gemms == [Gemm(b * heads, s, s, hd, False), Gemm(b * heads, s, hd, s, False)]
        for chip in ("h100-sxm5", "tpu-v4", "kpu-t256"):
            assert _matrix_time(gemms, chip) == pytest.approx(_matrix_time(ref_gemms, chip), rel=0.01)


def test_contrib_attention_adds_its_projection_gemm(tmp_path):
    b, s, d, heads = 2, 128, 256, 4
    m = model([helper.make_node("Attention", ["x", "w", "bias"], ["y"], domain="com.microsoft",
                                num_heads=heads)],
              [vi("x", T.FLOAT, [b, s, d])], [vi("y", T.FLOAT, [b, s, d])],
              [init("w", (d, 3 * d)), init("bias", (3 * d,))], opset=MS)
    gemms, macs = _gemms(tmp_path, m)
    assert gemms == [Gemm(1, b * s, 3 * d, d, True), Gemm(b * heads, s, s, d // heads, False),
                     Gemm(b * heads, s, d // heads, s, False)]
    assert macs == b * s * d * 3 * d + 2 * b * s * s * d


def test_loop_bodies_keep_their_geometry(tmp_path):
    body = helper.make_graph(
        [helper.make_node("MatMul", ["xin", "W"], ["xout"]), helper.make_node("Identity", ["c"], ["cout"])],
        "body", [vi("i", T.INT64, []), vi("c", T.BOOL, []), vi("xin", T.FLOAT, [64, 128])],
        [vi("cout", T.BOOL, []), vi("xout", T.FLOAT, [64, 128])])
    m = model([helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)], [vi("x", T.FLOAT, [64, 128])],
              [vi("y", T.FLOAT, [64, 128])], [init("trips", (), __import__("numpy").int64, 3),
                                               init("W", (128, 128))])
    gemms, macs = _gemms(tmp_path, m)
    # three trips, one after another: the same GEMM three times in sequence, not three side by side
    assert gemms == [Gemm(1, 64, 128, 128, True, serial=3)] and macs == 3 * 64 * 128 * 128
    assert _matrix_time(gemms, "h100-sxm5") == pytest.approx(3 * _matrix_time([Gemm(1, 64, 128, 128)],
                                                                              "h100-sxm5"), rel=1e-12)


def test_recurrent_steps_run_in_sequence(tmp_path):
    # LSTM over 200 steps, batch 1, input 64, hidden 128: each step is a [1, 192] x [192, 512] GEMM, and
    # step t needs step t-1's output, so 200 steps take 200 times one step on any chip.
    m = model([helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=128)],
              [vi("x", T.FLOAT, [200, 1, 64])], [vi("y", T.FLOAT, [200, 1, 1, 128])],
              [init("W", (1, 512, 64)), init("R", (1, 512, 128))])
    gemms, macs = _gemms(tmp_path, m)
    assert gemms == [Gemm(1, 1, 512, 192, True, serial=200)] and macs == 200 * 512 * 192
    for chip in ("h100-sxm5", "xeon-8490h", "tpu-v4"):
        one = _matrix_time([Gemm(1, 1, 512, 192)], chip)
        assert _matrix_time(gemms, chip) == pytest.approx(200 * one, rel=1e-12)


def test_a_weight_with_leading_ones_folds_like_a_matrix(tmp_path):
    # [64, 16, 768] x [1, 768, 768]: the weight is one matrix, shared by all 1,024 rows
    m = model([helper.make_node("MatMul", ["x", "W"], ["y"])], [vi("x", T.FLOAT, [64, 16, 768])],
              [vi("y", T.FLOAT, [64, 16, 768])], [init("W", (1, 768, 768))])
    assert _gemms(tmp_path, m)[0] == [Gemm(1, 1024, 768, 768, True)]

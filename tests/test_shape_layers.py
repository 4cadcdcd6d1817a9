"""The order of the shape inference layers (shapes.py): ONNX's own, then ours (rules for runtime and quantized
ops, constant folding of shape math), and onnxruntime's symbolic inference only for what ours leave open.
And the cost memo that lets repeated layers be costed once (ops.cost_graph)."""

import numpy as np
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil import shapes
from onnx_hwutil.profile import Profile, bind

MS = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]


@pytest.fixture
def no_onnxruntime_layer(monkeypatch):
    def refuse(model):
        raise AssertionError("onnxruntime's symbolic inference was asked")
    monkeypatch.setattr(shapes, "symbolic_shapes", refuse)


def test_quantized_outputs_take_their_zero_points_dtype(tmp_path, no_onnxruntime_layer):
    """QLinearAdd (com.microsoft, unknown to ONNX) feeds a QLinearConv and a MatMulIntegerToFloat: each
    output gets the dtype its op's contract says (uint8 from the zero point, float from the scale), not
    input 0's or float by default."""
    u8 = np.uint8
    m = model([helper.make_node("QLinearAdd", ["x", "s", "z", "x", "s", "z", "s", "z"], ["a"],
                                domain="com.microsoft"),
               helper.make_node("QLinearConv", ["a", "s", "z", "w", "s", "z", "s", "z"], ["c"]),
               helper.make_node("Reshape", ["c", "flat"], ["f"]),
               helper.make_node("MatMulIntegerToFloat", ["f", "w2", "s", "s", "z", "z"], ["y"],
                                domain="com.microsoft")],
              [vi("x", T.UINT8, ["N", 4, 5, 5])], [vi("y", T.FLOAT, ["N", 2])],
              [init("s", (), np.float32, 0.1), init("z", (), u8, 128), init("w", (8, 4, 1, 1), u8),
               init("flat", (2,), np.int64, [-1, 200]), init("w2", (200, 2), u8)], opset=MS)
    p = onnx_hwutil.profile(save(m, tmp_path / "q.onnx"), batch=2)
    g = p.graph
    assert [g.tensor(t).dtype for t in ("a", "c", "f", "y")] == [T.UINT8, T.UINT8, T.UINT8, T.FLOAT]
    assert g.tensor("c").shape == (2, 8, 5, 5) and g.tensor("y").shape == (2, 2)
    conv = next(n for n in p.to_dict()["nodes"] if n["op_type"] == "QLinearConv")
    assert conv["bytes_written"] == 2 * 8 * 5 * 5  # one byte each
    assert p.unresolved == []


def test_data_dependent_outputs_are_not_sent_to_onnxruntime(tmp_path, no_onnxruntime_layer):
    """What stays open after our layers is all computed from a NonZero: no inference makes it static, and
    onnxruntime's symbolic one only names the dims (seconds of sympy on a detection model)."""
    m = model([helper.make_node("Relu", ["x"], ["r"]),
               helper.make_node("Greater", ["r", "zero"], ["mask"]),
               helper.make_node("NonZero", ["mask"], ["idx"]),
               helper.make_node("Shape", ["idx"], ["s"]),
               helper.make_node("ConstantOfShape", ["s"], ["pad"])],
              [vi("x", T.FLOAT, ["N", 16])], [vi("pad", T.FLOAT, None)], [init("zero", (), np.float32, 0)])
    p = onnx_hwutil.profile(save(m, tmp_path / "nz.onnx"), batch=3)
    assert p.graph.tensor("r").shape == (3, 16)
    assert {t for _, _, t in p.costs.unresolved} >= {"pad"}
    assert not any("onnxruntime" in n for n in p.bound.shape_notes)


def _reduce_max_block(i: int, src: str) -> list:
    """t{i+1} = Reshape(src, [max(shape(src)), -1]): a target ONNX's data propagation cannot read
    (ReduceMax), which our folding evaluates once src's shape is known: one round per block."""
    return [helper.make_node("Shape", [src], [f"s{i}"]),
            helper.make_node("ReduceMax", [f"s{i}"], [f"m{i}"], keepdims=1),
            helper.make_node("Concat", [f"m{i}", "minus1"], [f"target{i}"], axis=0),
            helper.make_node("Reshape", [src, f"target{i}"], [f"t{i + 1}"])]


def test_shape_math_folds_through_reductions_and_deep_chains(tmp_path, no_onnxruntime_layer):
    """Twelve Reshapes each computed from the last one's shape (a Swin-T block's padding math is like this),
    through ReduceMax: our folding follows them all, round after round, without onnxruntime."""
    nodes = [n for i in range(12) for n in _reduce_max_block(i, "x" if i == 0 else f"t{i}")]
    m = model(nodes, [vi("x", T.FLOAT, ["N", 6])], [vi("t12", T.FLOAT, None)],
              [init("minus1", (1,), np.int64, [-1])])
    p = onnx_hwutil.profile(save(m, tmp_path / "deep.onnx"), batch=4)
    assert p.graph.tensor("t1").shape == (6, 4)
    assert p.graph.tensor("t12").shape == (6, 4)
    assert p.unresolved == []
    assert any(n.startswith("constant folding of shape computations resolved") for n in p.bound.shape_notes)


def _two_layers():
    """x -> MatMul(w1) -> Relu -> MatMul(w2) -> Relu: two layers alike in everything but their names."""
    return model([helper.make_node("MatMul", ["x", "w1"], ["h1"], name="mm1"),
                  helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
                  helper.make_node("MatMul", ["r1", "w2"], ["h2"], name="mm2"),
                  helper.make_node("Relu", ["h2"], ["y"], name="relu2")],
                 [vi("x", T.FLOAT, ["N", 32])], [vi("y", T.FLOAT, ["N", 32])],
                 [init("w1", (32, 32)), init("w2", (32, 32))])


def test_repeated_layers_cost_alike_under_their_own_names(tmp_path):
    bound = bind(save(_two_layers(), tmp_path / "two.onnx"))
    costs = {nc.node.name: nc for nc in Profile(bound).costs.nodes}
    assert costs["mm1"].cost == costs["mm2"].cost and costs["mm1"].gemms == costs["mm2"].gemms
    assert costs["mm1"].cost.macs == 32 * 32
    assert costs["mm1"].traffic.reads == (("x", 4 * 32, False), ("w1", 4 * 32 * 32, True))
    assert costs["mm2"].traffic.reads == (("r1", 4 * 32, False), ("w2", 4 * 32 * 32, True))
    assert costs["relu2"].traffic.writes == (("y", 4 * 32),)
    # a storage what-if that re-prices one layer's weights tells the layers apart again
    costs = {nc.node.name: nc for nc in Profile(bound, stored={"w2": 4}).costs.nodes}
    assert costs["mm1"].cost.weight_bytes == 4 * 32 * 32
    assert costs["mm2"].cost.weight_bytes == 32 * 32 // 2


def test_a_topk_with_a_known_k_does_not_keep_onnxruntime_away(tmp_path):
    """TopK is data-dependent only where its k is: with k a constant its outputs are static, and an op after
    it that only onnxruntime's inference knows (GemmFastGelu) still gets its shape from there."""
    m = model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=1),
               helper.make_node("GemmFastGelu", ["v", "w", "b"], ["g"], domain="com.microsoft"),
               helper.make_node("Relu", ["g"], ["y"])],
              [vi("x", T.FLOAT, ["N", 16])], [vi("y", T.FLOAT, None)],
              [init("k", (1,), np.int64, [8]), init("w", (8, 4)), init("b", (4,))], opset=MS)
    p = onnx_hwutil.profile(save(m, tmp_path / "topk.onnx"), batch=2)
    assert p.graph.tensor("v").shape == (2, 8) and p.graph.tensor("y").shape == (2, 4)
    assert any("onnxruntime symbolic shape inference resolved" in n for n in p.bound.shape_notes)


@pytest.mark.parametrize("op", ["LayerNormalization", "SimplifiedLayerNormalization"])
def test_norms_onnxruntime_writes_below_opset_17_keep_their_shapes(tmp_path, op, no_onnxruntime_layer):
    """onnxruntime's optimizer writes LayerNormalization (and SimplifiedLayerNormalization) into the default
    domain at any opset; ONNX knows the first from 17 on only. An ORT-optimized opset-14 encoder lost every
    shape after its first norm (79 nodes unresolved, a tenth of its MACs): our rule gives Y the input's
    shape and the statistics the input's with the normalized dims kept as 1."""
    ins = ["x", "g"] + (["b"] if op == "LayerNormalization" else [])
    m = model([helper.make_node(op, ins, ["y", "mean"], axis=-1, epsilon=1e-5),
               helper.make_node("MatMul", ["y", "w"], ["out"])],
              [vi("x", T.FLOAT, [2, 16, 64])], [vi("out", T.FLOAT, None)],
              [init("g", (64,)), init("b", (64,)), init("w", (64, 32))], opset=[helper.make_opsetid("", 14)])
    p = onnx_hwutil.profile(save(m, tmp_path / "ln.onnx"))
    assert p.unresolved == []
    assert p.graph.tensor("y").shape == (2, 16, 64)
    assert p.graph.tensor("mean").shape == (2, 16, 1)
    assert p.totals.macs == 2 * 16 * 64 * 32

"""Fusion legality both ways (issue 21): for each rule, a pattern it must fuse and the patterns it must not
(a second reader, a graph output in the middle, non-constant statistics, an operand that does not broadcast
into the output). Each pass runs alone, after `shape`, so a case tests that rule and no other."""

import numpy as np
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.fusion import fuse

X = [vi("x", T.FLOAT, [1, 8, 16, 16])]
W = [init("w", (8, 8, 3, 3)), init("b", (8,))]


def _conv(out="c"):
    return helper.make_node("Conv", ["x", "w", "b"], [out], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            name="conv")


def _kernels(tmp_path, m, *rules):
    p = onnx_hwutil.profile(save(m, tmp_path / "m.onnx"))
    f = fuse(p, passes=["shape", *rules])
    return sorted(tuple(sorted(s.nodes)) for s in f.kernels), f


def _bn(inputs=("c", "s", "bb", "mu", "var"), out="y"):
    return helper.make_node("BatchNormalization", list(inputs), [out], name="bn")


BN = [init(n, (8,), value=np.ones(8)) for n in ("s", "bb", "mu", "var")]
Y = [vi("y", T.FLOAT, [1, 8, 16, 16])]


def test_conv_bn_folds_a_constant_bn_into_its_only_reader(tmp_path):
    ks, f = _kernels(tmp_path, model([_conv(), _bn()], X, Y, W + BN), "conv_bn")
    assert ks == [("bn", "conv")] and f.totals["folded_nodes"] == ["bn"]


def test_conv_bn_keeps_a_bn_whose_conv_has_a_second_reader(tmp_path):
    m = model([_conv(), _bn(), helper.make_node("Relu", ["c"], ["r"], name="relu")], X,
              [*Y, vi("r", T.FLOAT, [1, 8, 16, 16])], W + BN)
    ks, _ = _kernels(tmp_path, m, "conv_bn")
    assert ("bn",) in ks and ("conv",) in ks


def test_conv_bn_keeps_a_bn_when_the_conv_output_is_a_graph_output(tmp_path):
    m = model([_conv(), _bn()], X, [*Y, vi("c", T.FLOAT, [1, 8, 16, 16])], W + BN)
    ks, _ = _kernels(tmp_path, m, "conv_bn")
    assert ks == [("bn",), ("conv",)]


def test_conv_bn_keeps_a_bn_with_statistics_known_only_at_run_time(tmp_path):
    m = model([_conv(), _bn()], [*X, vi("mu", T.FLOAT, [8])], Y, W + [b for b in BN if b.name != "mu"])
    ks, _ = _kernels(tmp_path, m, "conv_bn")
    assert ks == [("bn",), ("conv",)]


def _act_chain(add_input, act="Relu", extra_out=()):
    nodes = [_conv(), helper.make_node("Add", ["c", add_input], ["a"], name="add"),
             helper.make_node(act, ["a"], ["y"], name="act")]
    return nodes, [*Y, *extra_out]


def test_activation_fuses_a_constant_bias_and_an_activation(tmp_path):
    # a Conv's per-channel bias is folded into it at load (conv_mul_add: ORT's ConvAddFusion), then the
    # activation joins; the activation pass alone takes no Add into a Conv, as ORT takes none
    nodes, outs = _act_chain("bias2")
    m = model(nodes, X, outs, [*W, init("bias2", (8, 1, 1))])
    ks, f = _kernels(tmp_path, m, "conv_mul_add", "activation")
    assert ks == [("act", "add", "conv")] and f.totals["folded_nodes"] == ["add"]
    ks, _ = _kernels(tmp_path, m, "activation")
    assert ks == [("act",), ("add",), ("conv",)]


def test_activation_keeps_a_residual_add_of_a_runtime_tensor(tmp_path):
    nodes, outs = _act_chain("skip")
    m = model(nodes, [*X, vi("skip", T.FLOAT, [1, 8, 16, 16])], outs, W)
    ks, _ = _kernels(tmp_path, m, "activation")
    assert ("conv",) in ks and ("act", "add") not in ks and ("add",) in ks


def test_activation_keeps_a_constant_that_does_not_broadcast_into_the_output(tmp_path):
    # A [2, 8, 16, 16] constant makes the Add's output twice the conv's: not a bias, not foldable.
    nodes = [_conv(), helper.make_node("Add", ["c", "big"], ["y"], name="add")]
    m = model(nodes, X, [vi("y", T.FLOAT, [2, 8, 16, 16])], [*W, init("big", (2, 8, 16, 16))])
    ks, _ = _kernels(tmp_path, m, "activation")
    assert ks == [("add",), ("conv",)]


def test_activation_keeps_an_activation_after_a_second_reader_or_a_graph_output(tmp_path):
    m = model([_conv(), helper.make_node("Relu", ["c"], ["y"], name="act"),
               helper.make_node("Sigmoid", ["c"], ["z"], name="sig")], X,
              [*Y, vi("z", T.FLOAT, [1, 8, 16, 16])], W)
    ks, _ = _kernels(tmp_path, m, "activation")
    assert ("conv",) in ks
    m = model([_conv(), helper.make_node("Relu", ["c"], ["y"], name="act")], X,
              [*Y, vi("c", T.FLOAT, [1, 8, 16, 16])], W)
    ks, _ = _kernels(tmp_path, m, "activation")
    assert ks == [("act",), ("conv",)]


def test_activation_keeps_a_clip_with_runtime_bounds(tmp_path):
    m = model([_conv(), helper.make_node("Clip", ["c", "lo"], ["y"], name="clip")],
              [*X, vi("lo", T.FLOAT, [])], Y, W)
    ks, _ = _kernels(tmp_path, m, "activation")
    assert ks == [("clip",), ("conv",)]


def _matmul_after(perm):
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=perm, name="t"),
             helper.make_node("MatMul", ["xt", "W"], ["y"], name="mm")]
    return model(nodes, [vi("x", T.FLOAT, [4, 16, 32])], [vi("y", T.FLOAT, None)], [init("W", (32, 8))])


def test_operand_folds_a_last_two_dims_transpose_into_the_matmul(tmp_path):
    m = model([helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1], name="t"),
               helper.make_node("MatMul", ["xt", "W"], ["y"], name="mm")],
              [vi("x", T.FLOAT, [4, 32, 16])], [vi("y", T.FLOAT, [4, 16, 8])], [init("W", (32, 8))])
    ks, _ = _kernels(tmp_path, m, "operand")
    assert ks == [("mm", "t")]


def test_operand_keeps_other_transposes_and_shared_ones(tmp_path):
    ks, _ = _kernels(tmp_path, _matmul_after([1, 0, 2]), "operand")  # moves the batch dim: a real copy
    assert ks == [("mm",), ("t",)]
    m = model([helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1], name="t"),
               helper.make_node("MatMul", ["xt", "W"], ["y"], name="mm"),
               helper.make_node("Relu", ["xt"], ["r"], name="relu")],
              [vi("x", T.FLOAT, [4, 32, 16])], [vi("y", T.FLOAT, [4, 16, 8]), vi("r", T.FLOAT, [4, 16, 32])],
              [init("W", (32, 8))])
    ks, _ = _kernels(tmp_path, m, "operand")
    assert ("t",) in ks and ("mm",) in ks


def _mm_then(*ops, extra_inputs=(), outs=None):
    nodes = [helper.make_node("MatMul", ["x2", "W"], ["h0"], name="mm")]
    for i, (op, *ins) in enumerate(ops):
        nodes.append(helper.make_node(op, [f"h{i}", *ins], [f"h{i + 1}"], name=f"op{i}"))
    return model(nodes, [vi("x2", T.FLOAT, [16, 32]), *extra_inputs],
                 outs or [vi(f"h{len(ops)}", T.FLOAT, None)], [init("W", (32, 32))])


def test_epilogue_takes_a_residual_add_and_stops_at_a_reduction(tmp_path):
    m = _mm_then(("Add", "skip"), ("Relu",), ("ReduceSum",), extra_inputs=[vi("skip", T.FLOAT, [16, 32])])
    ks, _ = _kernels(tmp_path, m, "epilogue")
    assert ks == [("mm", "op0", "op1"), ("op2",)]


def test_epilogue_stops_at_a_second_reader(tmp_path):
    m = _mm_then(("Relu",), outs=[vi("h1", T.FLOAT, None), vi("h0", T.FLOAT, None)])
    ks, _ = _kernels(tmp_path, m, "epilogue")
    assert ks == [("mm",), ("op0",)]


def test_elementwise_chains_and_stops_where_a_tensor_branches(tmp_path):
    chain = model([helper.make_node("Relu", ["x"], ["a"], name="a"),
                   helper.make_node("Neg", ["a"], ["b"], name="b"),
                   helper.make_node("ReduceSum", ["b"], ["y"], name="r", keepdims=1)],
                  X, [vi("y", T.FLOAT, None)])
    ks, _ = _kernels(tmp_path, chain, "elementwise")
    assert ks == [("a", "b", "r")]
    branch = model([helper.make_node("Relu", ["x"], ["a"], name="a"),
                    helper.make_node("Neg", ["a"], ["b"], name="b"),
                    helper.make_node("Exp", ["a"], ["c"], name="c")],
                   X, [vi("b", T.FLOAT, None), vi("c", T.FLOAT, None)])
    ks, _ = _kernels(tmp_path, branch, "elementwise")
    assert ("a",) in ks


@pytest.mark.parametrize("preset", ["runtime", "aggressive"])
def test_no_preset_fuses_across_a_graph_output(tmp_path, preset):
    # conv -> Relu -> Sigmoid with the Relu's output a graph output: that tensor must reach memory
    m = model([_conv(), helper.make_node("Relu", ["c"], ["r"], name="relu"),
               helper.make_node("Sigmoid", ["r"], ["y"], name="sig")], X, [*Y, vi("r", T.FLOAT, None)], W)
    f = fuse(onnx_hwutil.profile(save(m, tmp_path / "m.onnx")), preset)
    relu = next(s for s in f.kernels if "relu" in s.nodes)
    assert any(b for name, b in relu.writes if name == "r")

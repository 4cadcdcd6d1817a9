"""ONNX Runtime's basic-level rewrite rules that remove a node (PadFusion, ...), checked against a default
CPU session's optimized graph (ORT_ENABLE_ALL): our kernel count beside onnxruntime 1.32's, counted as
scripts/compare_fusion_ort.py counts them. onnxruntime/core/optimizer/pad_fusion.cc."""

from __future__ import annotations

import numpy as np
import pytest
from builders import init, model, rand, save, vi
from conftest import ort_kernels
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.fusion import fuse

pytest.importorskip("onnxruntime")

SPATIAL = [0, 0, 1, 1, 0, 0, 1, 1]  # one row and column each side, nothing on batch or channels


def _pad(tmp_path, op="Conv", pads=SPATIAL, opset=17, mode=None, value=None, attrs=None, cast=None,
         dtype=T.FLOAT, outputs=(), name="m.onnx"):
    """x[1, 8, 16, 16] -> Pad -> (Cast) -> op (a 3x3 Conv 8 -> 8, a pool). `value`: the Pad's constant;
    `outputs`: extra graph outputs (the padded tensor `p`)."""
    kw = {} if mode is None else {"mode": mode}
    if opset < 11:
        ins, inits = ["x"], []
        kw["pads"] = list(pads)
        if value is not None:
            kw["value"] = value
    else:
        ins = ["x", "pads"] + (["v"] if value is not None else [])
        inits = [init("pads", (len(pads),), np.int64, pads)]
        inits += [init("v", (), value=value)] if value is not None else []
    nodes = [helper.make_node("Pad", ins, ["p"], name="pad", **kw)]
    src = "p"
    if cast is not None:
        nodes.append(helper.make_node("Cast", ["p"], ["pc"], to=cast, name="cast"))
        src = "pc"
    attrs = {"kernel_shape": [3, 3], **(attrs or {})}
    if op == "Conv":
        inits.append(init("w", (8, 8, 3, 3), value=rand((8, 8, 3, 3), 0)))
    nodes.append(helper.make_node(op, [src, "w"] if op == "Conv" else [src], ["y"], name="op", **attrs))
    outs = [vi("y", T.FLOAT, None)] + [vi(t, dtype, None) for t in outputs]
    m = model(nodes, [vi("x", dtype, [1, 8, 16, 16])], outs, inits,
              opset=[helper.make_opsetid("", opset)])
    return save(m, tmp_path / name)


@pytest.mark.parametrize("kw", [
    {},
    {"value": 0.0},  # an explicit zero
    {"attrs": {"pads": [1, 0, 1, 0]}},  # added to the conv's own pads
    {"op": "AveragePool"},
    {"op": "AveragePool", "attrs": {"count_include_pad": 1}},
    {"opset": 10},  # pads and value as attributes
    {"opset": 10, "value": -0.0},  # an attribute compared as a float
    {"opset": 21},
    {"cast": T.FLOAT},  # through a Cast (a no-op one here)
])
def test_a_zero_constant_pad_joins_the_pads_of_the_conv_or_pool_reading_it_as_in_onnxruntime(tmp_path, kw):
    path = _pad(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 1
    fused = fuse(onnx_hwutil.profile(path), "runtime")
    assert "pad" in fused.partition.folded  # its work is gone, as a BatchNormalization's into its conv


@pytest.mark.parametrize("kw", [
    {"op": "MaxPool"},  # a pool pads with -inf, the Pad with zeros: ORT leaves it
    {"value": 1.0},
    {"value": -0.0},  # ORT compares the value's bytes with zeros
    {"opset": 10, "value": 1.0},
    {"mode": "reflect"},
    {"mode": "edge"},
    {"pads": [0, 1, 1, 1, 0, 0, 1, 1]},  # pads a channel
    {"pads": [1, 0, 1, 1, 0, 0, 1, 1]},  # pads the batch
    {"pads": [0, 0, 1, -1, 0, 0, 1, 1]},  # crops
    {"attrs": {"auto_pad": "SAME_UPPER"}},
    {"op": "AveragePool", "attrs": {"auto_pad": "VALID"}},
    {"outputs": ["p"]},  # the padded tensor is a graph output
    {"cast": T.FLOAT, "dtype": T.FLOAT16},  # the Pad goes, a real Cast (float16 -> float) stays: Cast, Conv
])
def test_a_pad_onnxruntime_keeps_stays_a_kernel(tmp_path, kw):
    path = _pad(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 2


def test_a_pad_with_run_time_pads_or_two_readers_stays_as_in_onnxruntime(tmp_path):
    w = init("w", (8, 8, 3, 3), value=rand((8, 8, 3, 3), 0))
    conv = helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[3, 3], name="conv")
    x, y = vi("x", T.FLOAT, [1, 8, 16, 16]), vi("y", T.FLOAT, None)
    runtime = model([helper.make_node("Pad", ["x", "pr"], ["p"], name="pad"), conv],
                    [x, vi("pr", T.INT64, [8])], [y], [w])
    two = model([helper.make_node("Pad", ["x", "pads"], ["p"], name="pad"), conv,
                 helper.make_node("Relu", ["p"], ["z"], name="relu")],
                [x], [y, vi("z", T.FLOAT, None)], [w, init("pads", (8,), np.int64, SPATIAL)])
    axes = model([helper.make_node("Pad", ["x", "pads", "", "axes"], ["p"], name="pad"), conv], [x], [y],
                 [w, init("pads", (4,), np.int64, [1, 1, 1, 1]), init("axes", (2,), np.int64, [2, 3])],
                 opset=[helper.make_opsetid("", 18)])
    for i, (m, n) in enumerate([(runtime, 2), (two, 3), (axes, 2)]):
        ours, theirs = ort_kernels(save(m, tmp_path / f"m{i}.onnx"), tmp_path)
        assert ours == theirs == n


X = vi("x", T.FLOAT, [1, 8, 16, 16])
Y, Z = vi("y", T.FLOAT, None), vi("z", T.FLOAT, None)
BOUNDS = [init("lo", (), value=-1.0), init("hi", (), value=6.0)]


def _relu_clip(tmp_path, clip_ins=("r", "lo", "hi"), inputs=(), inits=BOUNDS, extra=(), outputs=(), opset=17,
               order="relu_clip", name="m.onnx"):
    if order == "relu_clip":
        nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                 helper.make_node("Clip", list(clip_ins), ["y"], name="clip")]
    else:
        nodes = [helper.make_node("Clip", ["x", *clip_ins[1:]], ["r"], name="clip"),
                 helper.make_node("Relu", ["r"], ["y"], name="relu")]
    m = model(nodes + list(extra), [X, *inputs], [Y, *outputs], inits, opset=[helper.make_opsetid("", opset)])
    return save(m, tmp_path / name)


@pytest.mark.parametrize("kw", [
    {},  # min -1 raised to 0
    {"inits": [init("lo", (), value=0.5), init("hi", (), value=6.0)]},  # min above 0: the Clip unchanged
    {"clip_ins": ("r", "", "hi"), "inits": BOUNDS[1:]},  # no min: 0 added
    {"clip_ins": ("r",), "inits": []},
    {"clip_ins": ("r", "lo", "hi"), "inputs": [vi("hi", T.FLOAT, [])], "inits": BOUNDS[:1]},  # run-time max
    {"opset": 6, "clip_ins": ("r",), "inits": []},  # bounds as attributes (none: the defaults)
    {"opset": 12},
])
def test_a_relu_read_only_by_a_clip_is_dropped_as_in_onnxruntime(tmp_path, kw):
    path = _relu_clip(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 1
    assert "relu" in fuse(onnx_hwutil.profile(path), "runtime").partition.folded


@pytest.mark.parametrize("kw, n", [
    ({"order": "clip_relu"}, 2),  # a Clip then a Relu: ORT keeps both
    ({"inputs": [vi("lo", T.FLOAT, [])], "inits": BOUNDS[1:]}, 2),  # min known only at run time
    ({"outputs": [vi("r", T.FLOAT, None)]}, 2),  # the Relu's result a graph output
    ({"extra": [helper.make_node("Neg", ["r"], ["z"], name="neg")], "outputs": [Z]}, 3),  # two readers
])
def test_a_relu_onnxruntime_keeps_before_or_after_a_clip_stays(tmp_path, kw, n):
    ours, theirs = ort_kernels(_relu_clip(tmp_path, **kw), tmp_path)
    assert ours == theirs == n


def test_a_relu_clip_after_a_conv_is_one_fused_conv_as_in_onnxruntime(tmp_path):
    conv = helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv")
    w = init("w", (8, 8, 3, 3), value=rand((8, 8, 3, 3), 0))
    m = model([conv, helper.make_node("Relu", ["c"], ["r"], name="relu"),
               helper.make_node("Clip", ["r", "lo", "hi"], ["y"], name="clip")], [X], [Y], [*BOUNDS, w])
    ours, theirs = ort_kernels(save(m, tmp_path / "m.onnx"), tmp_path)
    assert ours == theirs == 1


X2 = vi("x2", T.FLOAT, [1, 8, 16, 16])


def _div_mul(tmp_path, div_ins=("one", "x"), mul_ins=("d", "x2"), one=(1.0, ()), inputs=(), extra=(),
             outputs=(), dtype=T.FLOAT, name="m.onnx"):
    inits = [] if one is None else [init("one", one[1], value=np.full(one[1], one[0]))]
    if dtype != T.FLOAT:
        inits = [init("one", (), np.int64, 1)]
    xs = [vi("x", dtype, [1, 8, 16, 16]), vi("x2", dtype, [1, 8, 16, 16])]
    nodes = [helper.make_node("Div", list(div_ins), ["d"], name="div"),
             helper.make_node("Mul", list(mul_ins), ["y"], name="mul"), *extra]
    m = model(nodes, [*xs, *inputs], [vi("y", dtype, None), *outputs], inits)
    return save(m, tmp_path / name)


@pytest.mark.parametrize("kw", [
    {},
    {"mul_ins": ("x2", "d")},  # 1 / x as the Mul's second operand
    {"one": (1.0, (1,))},  # a one-element tensor
    {"dtype": T.INT64},
])
def test_one_over_x_read_only_by_a_mul_becomes_one_div_as_in_onnxruntime(tmp_path, kw):
    path = _div_mul(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 1
    assert "div" in fuse(onnx_hwutil.profile(path), "runtime").partition.folded


@pytest.mark.parametrize("kw, n", [
    ({"one": (2.0, ())}, 2),  # 2 / x
    ({"div_ins": ("x", "one")}, 2),  # x / 1
    ({"one": None, "inputs": [vi("one", T.FLOAT, [])]}, 2),  # a dividend known only at run time
    ({"mul_ins": ("d", "d")}, 2),  # read twice by the Mul
    ({"outputs": [vi("d", T.FLOAT, None)]}, 2),  # a graph output
    ({"extra": [helper.make_node("Neg", ["d"], ["z"], name="neg")], "outputs": [Z]}, 3),
])
def test_a_div_onnxruntime_keeps_before_a_mul_stays(tmp_path, kw, n):
    ours, theirs = ort_kernels(_div_mul(tmp_path, **kw), tmp_path)
    assert ours == theirs == n


COND = [vi("c", T.BOOL, [1, 8, 16, 16]), vi("a", T.FLOAT, [1, 8, 16, 16]), vi("b", T.FLOAT, [1, 8, 16, 16])]


def _not_where(tmp_path, wheres=1, extra=(), outputs=(), opset=17, name="m.onnx"):
    nodes = [helper.make_node("Not", ["c"], ["nc"], name="not")]
    nodes += [helper.make_node("Where", ["nc", "a", "b"], [f"y{i}"], name=f"where{i}") for i in range(wheres)]
    outs = [vi(f"y{i}", T.FLOAT, None) for i in range(wheres)]
    m = model(nodes + list(extra), COND, outs + list(outputs), opset=[helper.make_opsetid("", opset)])
    return save(m, tmp_path / name)


@pytest.mark.parametrize("kw, n", [({}, 1), ({"wheres": 2}, 2), ({"opset": 9}, 1), ({"opset": 16}, 1)])
def test_a_not_read_only_as_wheres_condition_is_dropped_as_in_onnxruntime(tmp_path, kw, n):
    path = _not_where(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == n
    assert "not" in fuse(onnx_hwutil.profile(path), "runtime").partition.folded


@pytest.mark.parametrize("kw, n", [
    ({"extra": [helper.make_node("Cast", ["nc"], ["z"], to=T.FLOAT, name="cast")], "outputs": [Z]}, 3),
    ({"outputs": [vi("nc", T.BOOL, None)]}, 2),
])
def test_a_not_read_by_more_than_wheres_stays_as_in_onnxruntime(tmp_path, kw, n):
    ours, theirs = ort_kernels(_not_where(tmp_path, **kw), tmp_path)
    assert ours == theirs == n

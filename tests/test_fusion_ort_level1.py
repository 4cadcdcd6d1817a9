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

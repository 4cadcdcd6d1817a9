"""Kernels and peak memory at other batches from the line through batches 1, 2 and 4 (kernel_line.py): the
same schedule as costing and settling the fused graph at that batch; no line where a number is off it."""

import numpy as np
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

from onnx_hwutil.analysis import Analyzer, Point
from onnx_hwutil.fusion import for_chip
from onnx_hwutil.hardware.mapping import schedule


def _slow(a: Analyzer, path: str, hw: str, batch: int, precision: str):
    """The point costed, fused and settled at `batch` (the extrapolated binding), without the line."""
    spec = a.spec(hw)
    return schedule(a.fused(path, batch, precision, for_chip("auto", spec.kind)), spec, precision, batch)


@pytest.mark.parametrize("name", ["resnet18", "bert_base"])
@pytest.mark.parametrize("hw,precision", [("h100-sxm5", "bf16"), ("xeon-8490h", "fp32"), ("tpu-v4", "int8")])
def test_a_batch_on_the_line_maps_as_its_fused_graph_would(name, hw, precision):
    path = f"models/{name}.onnx"
    a = Analyzer()
    a.run(Point(path, hw, 4, precision, "auto"))
    spec = a.spec(hw)
    assert a._kernel_line(path, precision, for_chip("auto", spec.kind)) is not None
    assert a._peak_line(path, precision) is not None
    for batch in (3, 8, 37, 512):
        fast = a.run(Point(path, hw, batch, precision, "auto"))
        assert fast.to_dict(True) == _slow(a, path, hw, batch, precision).to_dict(True)
        assert a.peak_memory_bytes(path, batch, precision) == \
            a.profile(path, batch, precision).totals.peak_memory_bytes


def test_a_batch_1_that_broadcasts_nothing_does_not_bend_the_line(tmp_path):
    # x + p: at batch 1 the Add is elementwise, from batch 2 it broadcasts p; the kernels past batch 2 are
    # those of batches 2 and 4, their numbers on the line through 1, 2 and 4
    m = model([helper.make_node("Add", ["x", "p"], ["y"]),
               helper.make_node("MatMul", ["y", "w"], ["z"]),
               helper.make_node("Relu", ["z"], ["r"])],
              [vi("x", T.FLOAT, ["batch", 16, 32])], [vi("r", T.FLOAT, ["batch", 16, 8])],
              [init("p", (1, 16, 32), np.float32), init("w", (32, 8), np.float32)])
    path = save(m, tmp_path / "pos.onnx")
    a = Analyzer()
    kinds = {b: {s.kind for s in a.fused(path, b, "fp32", "runtime").subgraphs} for b in (1, 2)}
    assert kinds[1] != kinds[2]
    a.run(Point(path, "xeon-8490h", 4, "fp32", "auto"))
    assert a._kernel_line(path, "fp32", "runtime") is not None
    for batch in (3, 9, 100):
        fast = a.run(Point(path, "xeon-8490h", batch, "fp32", "auto"))
        assert fast.to_dict(True) == _slow(a, path, "xeon-8490h", batch, "fp32").to_dict(True)


def test_a_cost_quadratic_in_the_batch_has_no_line(tmp_path):
    # x @ x^T (CLIP's logits): every dim is the batch or a constant, so the shapes extrapolate, but the
    # MACs are 16 x batch^2: 16, 64 and 256 at batches 1, 2 and 4 are not on a line
    m = model([helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0]),
               helper.make_node("MatMul", ["x", "xt"], ["y"])],
              [vi("x", T.FLOAT, ["batch", 16])], [vi("y", T.FLOAT, ["batch", "batch"])])
    path = save(m, tmp_path / "logits.onnx")
    a = Analyzer()
    assert a.affine_in_batch(path)
    a.run(Point(path, "h100-sxm5", 4, "bf16", "auto"))
    assert a._kernel_line(path, "bf16", "tensorrt") is None
    s = a.run(Point(path, "h100-sxm5", 8, "bf16", "auto"))
    assert s.flops == 2 * 16 * 8 * 8
    assert a.peak_memory_bytes(path, 8, "bf16") == a.profile(path, 8, "bf16").totals.peak_memory_bytes

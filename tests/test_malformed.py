"""A node its op's spec does not allow is reported as invalid with the reason; a bug in a formula surfaces."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.ops import registry

MS = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]


def _only(tmp_path, m) -> tuple[str, str]:
    """(status, reason) of a one-node model's node."""
    p = onnx_hwutil.profile(save(m, tmp_path / "m.onnx"))
    [n] = p.to_dict()["nodes"]
    return n["status"], " ".join(u["tensor"] for u in p.unresolved)


def _gqa(**attrs):
    return model([helper.make_node("GroupQueryAttention", ["q", "", "", "", "", "sl", "tl"], ["y"],
                                   domain="com.microsoft", **attrs)],
                 [vi("q", T.FLOAT, [1, 4, 64]), vi("sl", T.INT32, [1]), vi("tl", T.INT32, [])],
                 [vi("y", T.FLOAT, [1, 4, 64])], opset=MS)


@pytest.mark.parametrize(("attrs", "reason"), [
    ({"kv_num_heads": 1}, "required attribute 'num_heads' is absent"),
    ({"num_heads": 0, "kv_num_heads": 1}, "attribute 'num_heads' is 0, under 1"),
    ({"num_heads": 2.0, "kv_num_heads": 1}, "attribute 'num_heads' is 2.0, not an integer"),
])
def test_an_attribute_the_spec_requires_is_named(tmp_path, attrs, reason):
    assert _only(tmp_path, _gqa(**attrs)) == ("invalid", f"malformed GroupQueryAttention node ({reason})")


def test_a_rank_the_spec_does_not_allow_is_named(tmp_path):
    m = model([helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=4)],
              [vi("x", T.FLOAT, [5, 3])], [vi("y", T.FLOAT, [5, 1, 1, 4])],
              [init("w", (1, 16, 3)), init("r", (1, 16, 4))])
    assert _only(tmp_path, m) == ("invalid", "malformed LSTM node (input 0 has rank 2, not 3)")


def test_a_bug_in_a_formula_surfaces(tmp_path, monkeypatch):
    def broken(ctx):
        return 1 // 0

    monkeypatch.setitem(registry._REGISTRY, ("", "Relu"), broken)
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, [4])], [vi("y", T.FLOAT, [4])])
    with pytest.raises(ZeroDivisionError):
        _only(tmp_path, m)


def test_a_reshape_target_longer_than_any_rank_does_not_hang_inference(tmp_path):
    # Fuzz case: a shape vector whose dims say 2^40 entries. onnxruntime's symbolic inference makes one
    # symbolic dim per entry of a target it cannot read, and never returned.
    tail = onnx.TensorProto(name="tail", data_type=T.INT64, dims=[1 << 40],
                            raw_data=np.array([4, 4, 4], np.int64).tobytes())
    m = model([helper.make_node("Shape", ["x"], ["xs"], end=1),
               helper.make_node("Concat", ["xs", "tail"], ["shape"], axis=0),
               helper.make_node("Reshape", ["x", "shape"], ["y"])],
              [vi("x", T.FLOAT, ["batch", 64])], [vi("y", T.FLOAT, None)], [tail])
    path = save(m, tmp_path / "m.onnx")
    r = subprocess.run([sys.executable, "-m", "onnx_hwutil.cli", "profile", path, "--batch", "1"],
                       capture_output=True, text=True, timeout=60)  # a regression hangs, not fails
    assert r.returncode == 0, r.stderr

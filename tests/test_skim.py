"""The wire-level skim (skim.py): weight payloads over the small-tensor limit are cut before parsing, small
constants and everything else pass through, and what is not a ModelProto is left for protobuf to judge."""

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from onnx_hwutil.loader import SMALL_TENSOR_ELEMENTS, load_model
from onnx_hwutil.profile import profile
from onnx_hwutil.skim import skim


def _model():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.random((300, 400), dtype=np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "shape")
    cw = numpy_helper.from_array(rng.random((400, 50), dtype=np.float32), "cv")
    nodes = [helper.make_node("Constant", [], ["cw"], value=cw),
             helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["y", "cw"], ["z"]),
             helper.make_node("Reshape", ["z", "shape"], ["o"])]
    return helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", T.FLOAT, [2, 300])],
        [helper.make_tensor_value_info("o", T.FLOAT, None)], [w, shape]))


def test_payloads_are_cut_and_everything_else_kept():
    m = _model()
    blob = m.SerializeToString()
    out = onnx.ModelProto.FromString(skim(blob, SMALL_TENSOR_ELEMENTS))
    assert len(blob) > 500_000 and out.ByteSize() < 1_000
    inits = {t.name: t for t in out.graph.initializer}
    assert list(inits["w"].dims) == [300, 400] and inits["w"].data_type == T.FLOAT and not inits["w"].raw_data
    assert numpy_helper.to_array(inits["shape"]).tolist() == [1, -1]  # a shape constant keeps its values
    t = out.graph.node[0].attribute[0].t  # weights written as a Constant node
    assert list(t.dims) == [400, 50] and not t.raw_data
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in m.graph.node]
    assert out.graph.input == m.graph.input and out.opset_import == m.opset_import


def test_what_is_not_a_model_is_left_to_protobuf():
    blob = _model().SerializeToString()
    assert skim(blob[:-7], SMALL_TENSOR_ELEMENTS) is None  # a truncated file
    assert skim(b"\xff\xff\xff\xff", SMALL_TENSOR_ELEMENTS) is None
    assert skim(b"", SMALL_TENSOR_ELEMENTS) == b""


def test_a_skimmed_file_loads_as_the_whole_one_would(tmp_path, monkeypatch):
    full = tmp_path / "full.onnx"
    onnx.save(_model(), full)
    skimmed = load_model(full)
    assert skimmed.graph.initializer[0].raw_data == b""
    fast = profile(full).to_dict()
    monkeypatch.setattr("onnx_hwutil.loader.skim", lambda buf, small: None)  # parse whole, then strip
    assert load_model(full) == skimmed
    assert profile(full).to_dict() == fast
    assert fast["totals"]["params"] == 300 * 400 + 400 * 50  # the int64 shape constant is no parameter

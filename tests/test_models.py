"""Small models built here, one per feature: control flow, quantized ops, RNNs, weights as Constants,
absent external weights, uncovered ops. Each states its expected numbers."""

import os

import numpy as np
import onnx
import pytest
from builders import conv_relu, init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.errors import HwUtilError


def _profile(tmp_path, m, **kw):
    return onnx_hwutil.profile(save(m, tmp_path / "m.onnx"), **kw)


def test_conv_relu_counts(tmp_path):
    p = _profile(tmp_path, conv_relu(), batch=2)
    macs = 2 * 8 * 32 * 32 * 3 * 9
    out = 2 * 8 * 32 * 32
    assert p.totals.macs == macs
    assert p.totals.flops == 2 * macs + out + out  # bias add, then Relu
    assert p.totals.params == 8 * 3 * 9 + 8
    conv = p.to_dict()["nodes"][0]
    assert conv["bytes_read"] == 4 * 2 * 3 * 32 * 32
    assert conv["weight_bytes"] == 4 * (8 * 27 + 8)
    assert conv["bytes_written"] == 4 * out
    assert conv["kind"] == "matrix"


def _branch(name, nodes, out):
    return helper.make_graph(nodes, name, [], [vi(out, T.FLOAT, [1, 64])])


def _if_model(cond_const: bool | None):
    then_g = _branch("then", [helper.make_node("MatMul", ["x", "w"], ["t"])], "t")
    else_g = _branch("else", [helper.make_node("Relu", ["x"], ["e"])], "e")
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g, name="if")]
    inputs = [vi("x", T.FLOAT, [1, 64])]
    inits = [init("w", (64, 64))]
    if cond_const is None:
        inputs.append(vi("c", T.BOOL, []))
    else:
        inits.append(init("c", (), np.bool_, cond_const))
    return model(nodes, inputs, [vi("y", T.FLOAT, [1, 64])], inits)


def test_if_with_dynamic_condition_counts_the_larger_branch(tmp_path):
    p = _profile(tmp_path, _if_model(None))
    assert p.totals.macs == 64 * 64
    notes = p.to_dict()["notes"]
    assert any("both branches costed" in n and "then 8,192 FLOPs" in n and "else 64 FLOPs" in n
               for n in notes)


@pytest.mark.parametrize("cond, macs, flops", [(True, 4096, 8192), (False, 0, 64)])
def test_if_with_constant_condition_counts_the_taken_branch(tmp_path, cond, macs, flops):
    p = _profile(tmp_path, _if_model(cond))
    assert (p.totals.macs, p.totals.flops) == (macs, flops)


def _loop_model(trips):
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["x_in", "w"], ["x_out"])],
        "body",
        [vi("i", T.INT64, []), vi("cond_in", T.BOOL, []), vi("x_in", T.FLOAT, [1, 16])],
        [vi("cond_out", T.BOOL, []), vi("x_out", T.FLOAT, [1, 16])])
    inputs = [vi("x", T.FLOAT, [1, 16])]
    inits = [init("w", (16, 16)), init("cond", (), np.bool_, True)]
    if trips is None:
        inputs.append(vi("M", T.INT64, []))
    else:
        inits.append(init("M", (), np.int64, trips))
    nodes = [helper.make_node("Loop", ["M", "cond", "x"], ["y"], body=body, name="loop")]
    return model(nodes, inputs, [vi("y", T.FLOAT, [1, 16])], inits)


def test_loop_with_static_trip_count(tmp_path):
    p = _profile(tmp_path, _loop_model(5))
    assert p.totals.macs == 5 * 16 * 16
    assert p.totals.params == 16 * 16  # W, read inside the body; M (int64) and cond (bool) are not parameters
    assert any("body costed 5 times" in n for n in p.to_dict()["notes"])


def test_loop_with_dynamic_trip_count_is_reported(tmp_path):
    p = _profile(tmp_path, _loop_model(None))
    assert p.totals.macs == 16 * 16
    assert any("trip count not static" in n for n in p.to_dict()["notes"])


def test_scan_runs_once_per_slice(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Add", ["s_in", "x_t"], ["s_out"])], "body",
        [vi("s_in", T.FLOAT, [4]), vi("x_t", T.FLOAT, [4])], [vi("s_out", T.FLOAT, [4])])
    m = model([helper.make_node("Scan", ["s0", "xs"], ["s"], body=body, num_scan_inputs=1)],
              [vi("s0", T.FLOAT, [4]), vi("xs", T.FLOAT, [7, 4])], [vi("s", T.FLOAT, [4])])
    assert _profile(tmp_path, m).totals.flops == 7 * 4


def test_quantized_qlinearconv_and_convinteger(tmp_path):
    q = [init("xs", (), np.float32, 0.1), init("xz", (), np.uint8, 0), init("w", (4, 3, 3, 3), np.int8),
         init("ws", (), np.float32, 0.1), init("wz", (), np.int8, 0), init("ys", (), np.float32, 0.1),
         init("yz", (), np.uint8, 0)]
    nodes = [helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                              kernel_shape=[3, 3]),
             helper.make_node("ConvInteger", ["x", "w"], ["z"], kernel_shape=[3, 3])]
    m = model(nodes, [vi("x", T.UINT8, [1, 3, 8, 8])],
              [vi("y", T.UINT8, [1, 4, 6, 6]), vi("z", T.INT32, [1, 4, 6, 6])], q)
    p = _profile(tmp_path, m)
    macs = 4 * 36 * 27
    assert p.totals.macs == 2 * macs
    qconv = p.to_dict()["nodes"][0]
    assert qconv["bytes_read"] == 3 * 64  # the uint8 input
    # int8 weights, plus the constant scales (fp32) and zero points (8-bit) that travel with them
    assert qconv["weight_bytes"] == 4 * 27 + 3 * 4 + 3 * 1
    assert qconv["bytes_written"] == 4 * 36  # uint8 output: priced as quantized under --precision model


def test_lstm(tmp_path):
    h, inp, seq, batch = 8, 8, 5, 2
    m = model([helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=h)],
              [vi("X", T.FLOAT, [seq, batch, inp])], [vi("Y", T.FLOAT, [seq, 1, batch, h])],
              [init("W", (1, 4 * h, inp)), init("R", (1, 4 * h, h)), init("B", (1, 8 * h))])
    p = _profile(tmp_path, m)
    macs = seq * batch * 4 * h * (inp + h)
    assert p.totals.macs == macs
    assert p.totals.flops == 2 * macs + seq * batch * h * (22 + 8)


def test_weights_as_constant_nodes_are_parameters(tmp_path):
    w = helper.make_node("Constant", [], ["w"], value=onnx.numpy_helper.from_array(np.ones((8, 3, 3, 3),
                                                                                            np.float32)))
    m = model([w, helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
              [vi("x", T.FLOAT, [1, 3, 10, 10])], [vi("y", T.FLOAT, [1, 8, 8, 8])])
    p = _profile(tmp_path, m)
    assert p.totals.params == 8 * 27
    assert p.to_dict()["nodes"][1]["weight_bytes"] == 4 * 8 * 27


def test_absent_external_weights_still_analyze(tmp_path):
    m = conv_relu()
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.onnx.data", size_threshold=0)
    os.remove(tmp_path / "ext.onnx.data")
    p = onnx_hwutil.profile(path, batch=1)
    assert p.totals.macs == 8 * 32 * 32 * 27


def test_uncovered_op_is_reported_not_zeroed(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["r"]),
               helper.make_node("Mystery", ["r"], ["y"], domain="com.example")],
              [vi("x", T.FLOAT, [1, 100])], [vi("y", T.FLOAT, [1, 100])],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    p = _profile(tmp_path, m)
    assert p.uncovered == [{"domain": "com.example", "op_type": "Mystery", "count": 1}]
    node = p.to_dict()["nodes"][1]
    assert node["status"] == "uncovered"
    assert node["bytes_read"] == 400  # its bytes are still known from the shapes


def test_unbound_dims_are_listed(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["batch", None, 8])],
              [vi("y", T.FLOAT, ["batch", None, 8])])
    with pytest.raises(HwUtilError) as e:
        _profile(tmp_path, m)
    msg = str(e.value)
    # the batch defaults to 1; the unnamed dim 1 has no default, and the hint fills in what is known
    assert msg == "unbound dims: input 'x' dim 1 unnamed (--shape x=1xNx8)"
    p = _profile(tmp_path, m, shapes={"x": "2x3x8"})
    assert p.bound.inputs == {"x": (2, 3, 8)}


def test_vit_shapes_need_our_constant_folding(bundled):
    """torchvision's ViT computes its attention reshapes through Shape/Gather/Div/Concat chains that
    neither ONNX nor onnxruntime inference resolves; without our folding layer 715M MACs would be missing."""
    from onnx_hwutil.profile import Profile

    p = Profile(bundled("vit_b_16"))
    assert any("constant folding of shape computations resolved" in n for n in p.bound.shape_notes)
    assert p.unresolved == []


def test_contrib_ops_get_shapes_from_our_rules(tmp_path):
    """ONNX's inference does not know com.microsoft ops; our shape rules do, without loading onnxruntime's
    symbolic inference (sympy)."""
    m = model([helper.make_node("MatMul", ["x", "w1"], ["h"]),
               helper.make_node("Gelu", ["h"], ["g"], domain="com.microsoft"),
               helper.make_node("MatMul", ["g", "w2"], ["y"])],
              [vi("x", T.FLOAT, ["batch", 16])], [vi("y", T.FLOAT, ["batch", 8])],
              [init("w1", (16, 32)), init("w2", (32, 8))],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    p = _profile(tmp_path, m, batch=4)
    assert any("shape rules for runtime and quantized ops resolved 2" in n for n in p.bound.shape_notes)
    assert not any("onnxruntime" in n for n in p.bound.shape_notes)
    assert p.totals.macs == 4 * 16 * 32 + 4 * 32 * 8
    assert p.totals.flops == 2 * p.totals.macs + 5 * 4 * 32  # Gelu: 5 FLOPs per element


def test_onnxruntime_inference_takes_what_our_rules_leave(tmp_path):
    """A com.microsoft op our rules do not know (GemmFastGelu) is left to onnxruntime's symbolic inference,
    and our layers carry on from what it found."""
    m = model([helper.make_node("GemmFastGelu", ["x", "w1", "b1"], ["g"], domain="com.microsoft"),
               helper.make_node("MatMul", ["g", "w2"], ["y"])],
              [vi("x", T.FLOAT, ["batch", 16])], [vi("y", T.FLOAT, ["batch", 8])],
              [init("w1", (16, 32)), init("b1", (32,)), init("w2", (32, 8))],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    p = _profile(tmp_path, m, batch=4)
    note = "onnxruntime symbolic shape inference resolved 2 tensors our layers left open"
    assert note in p.bound.shape_notes
    assert p.graph.tensor("g").shape == (4, 32) and p.graph.tensor("y").shape == (4, 8)
    assert p.unresolved == []


def test_an_input_without_a_declared_shape_takes_the_shape_flag(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [helper.make_tensor_value_info("x", T.FLOAT, None)],
              [vi("y", T.FLOAT, None)])
    p = _profile(tmp_path, m, shapes={"x": (2, 5, 64)})
    assert p.bound.inputs == {"x": (2, 5, 64)} and p.totals.flops == 2 * 5 * 64

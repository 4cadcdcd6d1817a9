"""The runtime preset's QDQ rules against onnxruntime's own optimized graph: small QDQ graphs built with
onnx.helper, our kernel count beside the one a default CPU session (ORT_ENABLE_ALL) runs, counted as
scripts/compare_fusion_ort.py counts them (views and layout Transposes left out on both sides)."""

from __future__ import annotations

import numpy as np
import pytest
from builders import init, model, save, vi
from conftest import ort_kernels
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.fusion import explain, fuse

pytest.importorskip("onnxruntime")

SHAPE = [1, 8, 16]


def _q(x, y, name=None):
    return helper.make_node("QuantizeLinear", [x, "s", "z"], [y], name=name or f"q_{y}")


def _dq(x, y, name=None):
    return helper.make_node("DequantizeLinear", [x, "s", "z"], [y], name=name or f"dq_{y}")


QPARAMS = [init("s", (), value=0.05), init("z", (), np.uint8, 128)]


def _save(tmp_path, nodes, inputs, outputs, inits=(), name="m.onnx", opset=17):
    m = model(nodes, inputs, outputs, [*QPARAMS, *inits], opset=[helper.make_opsetid("", opset)])
    return save(m, tmp_path / name)


def _unit(x, op, y, **attrs):
    """DQ -> op -> Q: a node unit reading the quantized `x`, writing the quantized `y`."""
    return [_dq(x, f"{y}_f_in"), helper.make_node(op, [f"{y}_f_in"], [f"{y}_f"], name=op + "_" + y, **attrs),
            _q(f"{y}_f", y)]


def test_a_reshape_between_dq_and_q_runs_on_the_quantized_tensor(tmp_path):
    # DropQDQNodesRules: DQ -> Reshape -> Q loses its DQ and Q; the view has nothing left to run
    nodes = [_q("a", "aq"), *_unit("aq", "Sigmoid", "sq"),
             _dq("sq", "sf"), helper.make_node("Reshape", ["sf", "flat"], ["r"], name="view"), _q("r", "rq"),
             *_unit("rq", "Sigmoid", "tq"), _dq("tq", "y")]
    path = _save(tmp_path, nodes, [vi("a", T.FLOAT, SHAPE)], [vi("y", T.FLOAT, [1, 128])],
                 [init("flat", (2,), np.int64, [1, 128])])
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 4  # Q, QLinearSigmoid, QLinearSigmoid, DQ
    sub = next(k for k in fuse(onnx_hwutil.profile(path), "runtime").kernels if "view" in k.nodes)
    assert sub.label == "QLinearSigmoid" and {"dq_sf", "q_rq"} <= set(sub.nodes)


@pytest.mark.parametrize("shape, fused", [((), True), ((1,), False)])
def test_a_where_with_a_scalar_branch_gets_a_dummy_dq_as_in_onnxruntime(tmp_path, shape, fused):
    # WhereDummyDq: a rank-0 float constant on the other branch gets a made-up DQ: QLinearWhere
    where = helper.make_node("Where", ["c", "af", "fill"], ["w"], name="where")
    nodes = [_q("a", "aq"), _dq("aq", "af"), where, _q("w", "wq"), _dq("wq", "y")]
    path = _save(tmp_path, nodes, [vi("a", T.FLOAT, SHAPE), vi("c", T.BOOL, SHAPE)],
                 [vi("y", T.FLOAT, SHAPE)], [init("fill", shape, value=np.full(shape, -1e4))])
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == (3 if fused else 5)
    labels = [k.label for k in fuse(onnx_hwutil.profile(path), "runtime").kernels]
    assert ("QLinearWhere" in labels) == fused


def test_a_dq_a_float_op_reads_too_stays_a_kernel(tmp_path):
    # EnsureUniqueDQForNodeUnit: the unit gets its own copy of the DQ, the Erf's copy runs
    nodes = [_q("a", "aq"), _dq("aq", "af", name="shared"),
             helper.make_node("Sigmoid", ["af"], ["sg"], name="sigmoid"), _q("sg", "sq"), _dq("sq", "y1"),
             helper.make_node("Erf", ["af"], ["y2"], name="erf")]
    path = _save(tmp_path, nodes, [vi("a", T.FLOAT, SHAPE)],
                 [vi("y1", T.FLOAT, SHAPE), vi("y2", T.FLOAT, SHAPE)])
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 5  # Q, DQ, Erf, QLinearSigmoid, DQ
    assert explain(onnx_hwutil.profile(path), "shared", "runtime").members == ("shared",)


def test_a_weight_dq_no_unit_takes_runs_at_every_inference(tmp_path):
    # ORT's constant folding leaves DequantizeLinear alone in a QDQ model: a LayerNorm's gamma and beta
    # are dequantized at run time
    nodes = [_dq("gq", "gamma"), _dq("bq", "beta"),
             helper.make_node("LayerNormalization", ["a", "gamma", "beta"], ["y"], axis=-1, name="ln")]
    inits = [init("gq", (16,), np.uint8, np.full(16, 150)), init("bq", (16,), np.uint8, np.full(16, 128))]
    path = _save(tmp_path, nodes, [vi("a", T.FLOAT, SHAPE)], [vi("y", T.FLOAT, SHAPE)], inits)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 3
    assert len(fuse(onnx_hwutil.profile(path), "tensorrt").kernels) == 1  # a build-time compiler folds them


def test_a_gather_of_a_dequantized_table_at_constant_indices_runs(tmp_path):
    # the table's DQ is not folded at load, so neither is the Gather: it runs on the quantized table
    nodes = [_dq("table_q", "table"), helper.make_node("Gather", ["table", "idx"], ["e"], name="embed"),
             _q("e", "eq"), *_unit("eq", "Sigmoid", "sq"), _dq("sq", "y")]
    inits = [init("table_q", (32, 16), np.uint8, np.full((32, 16), 140)),
             init("idx", (1, 8), np.int64, np.arange(8).reshape(1, 8))]
    path = _save(tmp_path, nodes, [], [vi("y", T.FLOAT, SHAPE)], inits)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 3  # Gather, QLinearSigmoid, DQ


@pytest.mark.parametrize("bias, kernels", [(False, 2), (True, 1)])
def test_an_activation_joins_a_matmul_only_with_its_bias(tmp_path, bias, kernels):
    # MatMulAddFusion makes a Gemm of MatMul + bias, GemmActivationFusion takes the Relu; a bare MatMul
    # has no activation fusion on the CPU
    nodes = [helper.make_node("MatMul", ["a", "w"], ["m"], name="mm")]
    if bias:
        nodes.append(helper.make_node("Add", ["m", "b"], ["mb"], name="bias"))
    nodes.append(helper.make_node("Relu", ["mb" if bias else "m"], ["y"], name="relu"))
    inits = [init("w", (16, 16), value=np.eye(16)), init("b", (16,), value=np.ones(16))]
    path = _save(tmp_path, nodes, [vi("a", T.FLOAT, [8, 16])], [vi("y", T.FLOAT, [8, 16])], inits)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == kernels
    if not bias:
        assert "no bias Add before it" in str(explain(onnx_hwutil.profile(path), "relu", "runtime"))


def test_a_data_movement_unit_moves_quantized_bytes_and_does_no_dq_or_q_work(tmp_path):
    """DropQDQNodesRules: DQ(int8 table) -> Gather -> Q (same scale and zero point) is a Gather of the
    quantized table in onnxruntime's graph, with no DequantizeLinear over the table: our kernel holds the
    DQ and Q but does none of their work (they are folded, as a BatchNormalization into its Conv)."""
    from onnx_hwutil.fusion.ort_graph import optimized_graph

    nodes = [_dq("table", "tf"), helper.make_node("Gather", ["tf", "ids"], ["g"], name="gather"),
             _q("g", "gq"), _dq("gq", "y")]
    path = _save(tmp_path, nodes, [vi("ids", T.INT64, [1, 16])], [vi("y", T.FLOAT, [1, 16, 64])],
                 [init("table", (1000, 64), np.uint8)])
    ort_ops = [n.op_type for n in optimized_graph(path, str(tmp_path)).node]
    assert ort_ops.count("Gather") == 1 and ort_ops.count("QuantizeLinear") == 0
    assert ort_ops.count("DequantizeLinear") == 1  # the last one only: none over the table
    f = fuse(onnx_hwutil.profile(path), "runtime")
    [gather] = [k for k in f.kernels if k.label == "Gather"]
    assert set(gather.nodes) == {"dq_tf", "gather", "q_gq"} and set(gather.folded) == {"dq_tf", "q_gq"}
    assert gather.flops == 0  # a DQ of 64,000 elements and a Q of 1,024 would be 2 and 3 FLOPs each
    # a Q with another scale cannot be dropped: ORT runs DQ, Gather and Q apart, and so do we
    nodes[2] = helper.make_node("QuantizeLinear", ["g", "s2", "z"], ["gq"], name="q_gq")
    path = _save(tmp_path, nodes, [vi("ids", T.INT64, [1, 16])], [vi("y", T.FLOAT, [1, 16, 64])],
                 [init("table", (1000, 64), np.uint8), init("s2", (), value=0.1)], name="m2.onnx")
    assert ort_kernels(path, tmp_path) == (4, 4)
    f = fuse(onnx_hwutil.profile(path), "runtime")
    assert not f.partition.folded and sum(k.flops for k in f.kernels) > 2 * 64_000

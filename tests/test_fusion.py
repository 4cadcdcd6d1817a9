"""Fusion: properties that must hold for every preset on every graph, and agreement with a real runtime."""

import networkx as nx
import numpy as np
import onnx
import pytest
from builders import init, model, save, vi
from conftest import BUNDLED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.fusion import PASSES, PRESETS, fuse
from onnx_hwutil.profile import Profile


def check_invariants(p: Profile, preset: str | None = None, passes=None):
    f = fuse(p, preset, passes)
    names = [n for s in f.subgraphs for n in s.nodes]
    assert sorted(names) == sorted(n.name for n in p.graph.nodes)  # each node in exactly one subgraph
    folded = {nc.node.name: nc.cost for nc in p.costs.nodes if nc.node.name in f.totals["folded_nodes"]}
    assert f.totals["macs"] == p.totals.macs - sum(c.macs for c in folded.values())
    assert f.totals["flops"] == p.totals.flops - sum(c.flops for c in folded.values())
    assert f.totals["folded_flops"] == sum(c.flops for c in folded.values())
    assert nx.is_directed_acyclic_graph(f.dag())
    assert f.totals["dram_bytes"] <= p.totals.dram_bytes
    return f


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("name", BUNDLED)
def test_invariants_on_bundled_models(bundled, name, preset):
    check_invariants(Profile(bundled(name)), preset)


# -- random DAGs -----------------------------------------------------------------------------------------
# Every tensor is [1, 16, 16], so any op can read any earlier tensor: the structure is what varies.
OPS = ["Add", "Mul", "Relu", "Sigmoid", "MatMulW", "MatMul", "Softmax", "Transpose", "Reshape", "Center",
       "Erf", "Div"]


def random_model(steps):
    nodes, inits = [], [init("W", (16, 16)), init("c", (), np.float32, 0.5),
                        init("shape", (3,), np.int64, [1, 16, 16])]
    tensors = ["x"]
    for i, (op, a, b) in enumerate(steps):
        x, y = tensors[a % len(tensors)], tensors[b % len(tensors)]
        out = f"t{i}"
        if op == "Add":
            nodes.append(helper.make_node("Add", [x, y], [out]))
        elif op in ("Mul", "Div"):
            nodes.append(helper.make_node(op, [x, "c"], [out]))
        elif op == "MatMulW":
            nodes.append(helper.make_node("MatMul", [x, "W"], [out]))
        elif op == "MatMul":
            nodes.append(helper.make_node("MatMul", [x, y], [out]))
        elif op == "Softmax":
            nodes.append(helper.make_node("Softmax", [x], [out], axis=-1))
        elif op == "Transpose":
            nodes.append(helper.make_node("Transpose", [x], [out], perm=[0, 2, 1]))
        elif op == "Reshape":
            nodes.append(helper.make_node("Reshape", [x, "shape"], [out]))
        elif op == "Center":  # x - mean(x): a fan-out that a norm pattern starts with
            nodes.append(helper.make_node("ReduceMean", [x], [f"m{i}"], axes=[-1]))
            nodes.append(helper.make_node("Sub", [x, f"m{i}"], [out]))
        else:
            nodes.append(helper.make_node(op, [x], [out]))
        tensors.append(out)
    used = {t for n in nodes for t in n.input}
    outs = [t for t in tensors[1:] if t not in used] or [tensors[-1]]
    return model(nodes, [vi("x", T.FLOAT, [1, 16, 16])], [vi(t, T.FLOAT, [1, 16, 16]) for t in outs], inits,
                 opset=[helper.make_opsetid("", 13)])


steps = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 50), st.integers(0, 50)), min_size=1,
                 max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, preset=st.sampled_from([*PRESETS, "passes"]),
       chosen=st.lists(st.sampled_from(list(PASSES)), min_size=1, max_size=4))
def test_invariants_on_random_dags(tmp_path, steps, preset, chosen):
    p = onnx_hwutil.profile(save(random_model(steps), tmp_path / "r.onnx"))
    if preset == "passes":
        check_invariants(p, passes=chosen)
    else:
        check_invariants(p, preset)


# -- the passes, one model each ----------------------------------------------------------------------------

def test_conv_bn_is_folded_and_reported(tmp_path):
    bn = [init(n, (8,)) for n in ("s", "b", "mean", "var")]
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], name="conv"),
               helper.make_node("BatchNormalization", ["c", "s", "b", "mean", "var"], ["n"], name="bn"),
               helper.make_node("Relu", ["n"], ["y"], name="relu")],
              [vi("x", T.FLOAT, [1, 3, 10, 10])], [vi("y", T.FLOAT, [1, 8, 8, 8])],
              [init("w", (8, 3, 3, 3)), *bn])
    p = onnx_hwutil.profile(save(m, tmp_path / "bn.onnx"))
    f = check_invariants(p, "runtime")
    assert [s.label for s in f.kernels] == ["Conv+Relu"]  # what runs: BN is gone
    assert f.totals["folded_nodes"] == ["bn"]
    out = 8 * 8 * 8
    assert f.totals["flops"] == p.totals.flops - 2 * out  # BN's scale and shift are gone
    s = f.kernels[0]
    assert s.bytes_read == 4 * 3 * 100 and s.bytes_written == 4 * out  # intermediates stay on chip
    assert s.weight_bytes == 4 * (8 * 27)  # BN's parameters are folded into the conv weights at load


def test_attention_what_if_keeps_scores_on_chip(bundled):
    p = Profile(bundled("bert_base"))
    on = fuse(p, "aggressive")
    off = fuse(p, "aggressive", disable=["attention"])
    assert on.preset == "aggressive" and off.preset == "aggressive-attention"
    att = [s for s in on.kernels if s.label == "Attention"]
    assert len(att) == 12 and all(s.tiled for s in att)
    # Per layer the 12x128x128 fp32 score and probability tensors never reach DRAM any more.
    scores = 12 * 128 * 128 * 4
    assert off.totals["dram_bytes"] - on.totals["dram_bytes"] >= 12 * 2 * scores


def test_unknown_preset_and_pass_are_input_errors(bundled):
    p = Profile(bundled("resnet18"))
    with pytest.raises(HwUtilError, match="unknown fusion preset 'fast'"):
        fuse(p, "fast")
    with pytest.raises(HwUtilError, match="unknown fusion pass 'magic'"):
        fuse(p, passes=["magic"])


# -- against ONNX Runtime ----------------------------------------------------------------------------------
# Kernel counts of ORT's optimized graph (ORT_ENABLE_ALL, a default CPU session, batch 1), as written by
# scripts/compare_fusion_ort.py: shape-only ops and layout reorders (Transpose, NCHWc ReorderInput/Output)
# are not kernels. The NCHWc transformer folds each residual Add and its Relu into a Conv (39 -> 23, 88 -> 56
# since the `runtime` preset mirrors it; ORT_ENABLE_EXTENDED gives 39 and 88).
ORT_KERNELS = {"resnet18": 23, "resnet50": 56}


def _kernels(f):
    return sum(1 for s in f.kernels if s.label != "Transpose")


@pytest.mark.parametrize("name", list(ORT_KERNELS))
def test_runtime_preset_matches_onnxruntime(bundled, name):
    assert _kernels(fuse(Profile(bundled(name)), "runtime")) == ORT_KERNELS[name]


def test_runtime_preset_matches_live_onnxruntime(tmp_path):
    """A residual block with real weights, optimized by the installed onnxruntime in this test."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    w = [onnx.numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), f"w{i}")
         for i in range(2)]
    m = model([helper.make_node("Conv", ["x", "w0"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["a"], ["b"]),
               helper.make_node("Conv", ["b", "w1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node("Add", ["c", "x"], ["d"]),
               helper.make_node("Relu", ["d"], ["y"])],
              [vi("x", T.FLOAT, [1, 8, 16, 16])], [vi("y", T.FLOAT, [1, 8, 16, 16])], w)
    path = save(m, tmp_path / "block.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ort_nodes = onnx.load(str(tmp_path / "opt.onnx")).graph.node
    ours = fuse(onnx_hwutil.profile(path), "runtime")
    assert len(ours.kernels) == len(ort_nodes) == 4  # FusedConv(+Relu), Conv, Add, Relu


@pytest.mark.parametrize(("channels", "expected"), [(8, 4), (16, 2)])
def test_runtime_preset_matches_a_default_onnxruntime_session(tmp_path, channels, expected):
    """ORT_ENABLE_ALL: with 16 channels (a multiple of the NCHWc block) and both operands of the residual Add
    from NCHWc convolutions, the Add and its Relu join the second Conv; with 8 channels and the Add reading
    the graph's input, nothing beyond Conv+Relu fuses."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    c = channels
    w = [onnx.numpy_helper.from_array(rng.standard_normal((c, c, 3, 3)).astype(np.float32), f"w{i}")
         for i in range(2)]
    residual = "x" if c == 8 else "b"
    m = model([helper.make_node("Conv", ["x", "w0"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["a"], ["b"]),
               helper.make_node("Conv", ["b", "w1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node("Add", ["c", residual], ["d"]),
               helper.make_node("Relu", ["d"], ["y"])],
              [vi("x", T.FLOAT, [1, c, 16, 16])], [vi("y", T.FLOAT, [1, c, 16, 16])], w)
    path = save(m, tmp_path / "block.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ort_nodes = [n for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node
                 if n.op_type not in ("ReorderInput", "ReorderOutput", "Transpose")]
    ours = fuse(onnx_hwutil.profile(path), "runtime")
    assert len(ours.kernels) == len(ort_nodes) == expected

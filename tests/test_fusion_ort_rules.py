"""ORT_ENABLE_ALL rules of the `runtime` preset (issue 14), each named after the ORT transformer it mirrors:
QuickGeluFusion, GeluFusion's exact patterns (the torch dynamo exporter's Erf GELU is not one), and the
NCHWc transformer's residual Add + Relu folded into a Conv. Each case is checked against the installed
onnxruntime's own optimized graph."""

import math
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.fusion import explain, fuse

SHAPE = [1, 4, 16]


def _ort_kernels(path, tmp_path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node
            if n.op_type not in ("ReorderInput", "ReorderOutput", "Transpose")]


def _swish(tmp_path, alpha=None, other="x"):
    """y = other * sigmoid(alpha * x), after x = a + 1."""
    nodes = [helper.make_node("Add", ["a", "one"], ["x"], name="root")]
    s_in = "x"
    if alpha is not None:
        nodes.append(helper.make_node("Mul", ["x", "alpha"], ["ax"], name="alpha"))
        s_in = "ax"
    nodes += [helper.make_node("Sigmoid", [s_in], ["s"], name="sigmoid"),
              helper.make_node("Mul", [other, "s"], ["y"], name="product")]
    inits = [init("one", (), value=1.0)] + ([init("alpha", (), value=alpha)] if alpha is not None else [])
    m = model(nodes, [vi("a", T.FLOAT, SHAPE)], [vi("y", T.FLOAT, SHAPE)], inits)
    return save(m, tmp_path / "swish.onnx")


@pytest.mark.parametrize("alpha", [None, 1.702])
def test_x_times_sigmoid_is_one_quick_gelu_as_in_onnxruntime(tmp_path, alpha):
    path = _swish(tmp_path, alpha)
    f = fuse(onnx_hwutil.profile(path), "runtime")
    labels = [s.label for s in f.kernels]
    assert labels == ["Add", "QuickGelu"]
    assert sorted(_ort_kernels(path, tmp_path)) == ["Add", "QuickGelu"]
    e = explain(onnx_hwutil.profile(path), "sigmoid", "runtime")
    assert [m.rule for _, m in e.merges] == ["QuickGeluFusion"]


def test_a_sigmoid_times_something_else_is_refused_with_its_reason(tmp_path):
    path = _swish(tmp_path, other="a")
    p = onnx_hwutil.profile(path)
    assert len(fuse(p, "runtime").kernels) == 3
    e = explain(p, "sigmoid", "runtime")
    qg = next(c for c in e.candidates if c.rule == "QuickGeluFusion")
    assert qg.reasons == ("at product: it multiplies the sigmoid by 'a', not by its input 'x'",)


def _gelu(tmp_path, dynamo):
    """Erf GELU on x = a + 1: the legacy exporter's (x * (1 + erf)) * 0.5, or the dynamo exporter's
    x * (0.5 * (1 + erf))."""
    nodes = [helper.make_node("Add", ["a", "one"], ["x"], name="root"),
             helper.make_node("Div", ["x", "sqrt2"], ["d"], name="div"),
             helper.make_node("Erf", ["d"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["p"], name="plus1")]
    if dynamo:
        nodes += [helper.make_node("Mul", ["half", "p"], ["h"], name="half"),
                  helper.make_node("Mul", ["x", "h"], ["y"], name="product")]
    else:
        nodes += [helper.make_node("Mul", ["x", "p"], ["h"], name="product"),
                  helper.make_node("Mul", ["h", "half"], ["y"], name="half")]
    inits = [init("one", (), value=1.0), init("sqrt2", (), value=math.sqrt(2)), init("half", (), value=0.5)]
    m = model(nodes, [vi("a", T.FLOAT, SHAPE)], [vi("y", T.FLOAT, SHAPE)], inits)
    return save(m, tmp_path / f"gelu_{dynamo}.onnx")


@pytest.mark.parametrize(("dynamo", "ours"), [(False, ["Add", "Gelu"]), (True, ["Add"] * 2 + ["Div", "Erf"]
                                                                          + ["Mul"] * 2)])
def test_gelu_fusion_matches_only_the_patterns_onnxruntime_matches(tmp_path, dynamo, ours):
    path = _gelu(tmp_path, dynamo)
    p = onnx_hwutil.profile(path)
    assert sorted(s.label for s in fuse(p, "runtime").kernels) == ours
    assert len(_ort_kernels(path, tmp_path)) == len(ours)
    # a fusing compiler (the aggressive what-if) still takes the dynamo form as one GELU
    assert any(s.label == "Gelu" for s in fuse(p, "aggressive").kernels)
    if dynamo:
        gelu = next(c for c in explain(p, "erf", "runtime").candidates if c.rule == "GeluFusion")
        assert "neither x nor x * (1 + erf)" in gelu.reasons[0] and "dynamo" in gelu.reasons[0]


def _block(tmp_path, c, cin0=3, group=1):
    """Conv(cin0 -> c) + Relu, Conv(c -> c, group) -> Add(its input) -> Relu."""
    rng = np.random.default_rng(0)
    w0 = onnx.numpy_helper.from_array(rng.standard_normal((c, cin0, 3, 3)).astype(np.float32), "w0")
    w1 = onnx.numpy_helper.from_array(rng.standard_normal((c, c // group, 3, 3)).astype(np.float32), "w1")
    m = model([helper.make_node("Conv", ["x", "w0"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["a"], ["b"]),
               helper.make_node("Conv", ["b", "w1"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                group=group),
               helper.make_node("Add", ["c", "b"], ["d"]),
               helper.make_node("Relu", ["d"], ["y"])],
              [vi("x", T.FLOAT, [1, cin0, 16, 16])], [vi("y", T.FLOAT, [1, c, 16, 16])], [w0, w1])
    return save(m, tmp_path / f"block{c}_{cin0}_{group}.onnx")


AVX512 = os.path.exists("/proc/cpuinfo") and "avx512f" in Path("/proc/cpuinfo").read_text()


@pytest.mark.parametrize(("c", "cin0", "group", "kernels"), [
    (12, 3, 1, 2),  # under 16 input channels: the second conv reads NCHW, the Add still folds in
    (20, 3, 1, 2),  # 20 = 5 x 4 input channels: NCHWc
    (18, 3, 1, 4),  # 18 input channels: plain convs, the Add and the Relu stay apart
    (18, 18, 18, 4),  # depthwise, 18 channels
    (20, 20, 20, 2),  # depthwise, 20 channels
])
def test_nchwc_conditions_match_onnxruntime(tmp_path, c, cin0, group, kernels):
    path = _block(tmp_path, c, cin0, group)
    ours = fuse(onnx_hwutil.profile(path), "runtime")
    assert len(ours.kernels) == kernels
    if AVX512:  # MLAS picks its NCHWc block by the host's vector width: the rule mirrors the AVX-512 one
        assert len(_ort_kernels(path, tmp_path)) == kernels


def _slices(tmp_path, cuts, computed=False, name="slices.onnx", opset=17, axes=True):
    """x = Relu(a) of [1, 8, 64], cut along the last axis at `cuts`, each piece negated. `computed`: the
    bounds as an exporter writes `x.shape[-1] // 2` (Shape, Gather, Div, Unsqueeze), folded at load time.
    `axes`: the Slices name their axis (else they cut the first one, which has size 1: cuts must say so)."""
    nodes = [helper.make_node("Relu", ["a"], ["x"], name="root")]
    inits = [init("axis", (1,), np.int64, [-1])]
    outs = []
    for i, (s, e) in enumerate(cuts):
        inits += [init(f"s{i}", (1,), np.int64, [s]), init(f"e{i}", (1,), np.int64, [e])]
        ins = ["x", f"s{i}", f"e{i}"] + ["axis"] * axes
        nodes += [helper.make_node("Slice", ins, [f"y{i}"], name=f"piece{i}"),
                  helper.make_node("Neg", [f"y{i}"], [f"z{i}"], name=f"neg{i}")]
        outs.append(vi(f"z{i}", T.FLOAT, None))
    if computed:  # piece0 = x[..., :d/2], piece1 = x[..., d/2:]
        inits += [init("last", (), np.int64, -1), init("two", (), np.int64, 2),
                  init("zero", (1,), np.int64, [0])]
        nodes[1:1] = [helper.make_node("Shape", ["x"], ["sh"]),
                      helper.make_node("Gather", ["sh", "last"], ["d"]),
                      helper.make_node("Div", ["d", "two"], ["h"]),
                      helper.make_node("Unsqueeze", ["h", "zero"], ["half"]) if opset >= 13 else
                      helper.make_node("Unsqueeze", ["h"], ["half"], axes=[0])]
        for n in nodes:
            if n.name == "piece0":
                n.input[2] = "half"
            elif n.name == "piece1":
                n.input[1] = "half"
    m = model(nodes, [vi("a", T.FLOAT, [1, 8, 64])], outs, inits, opset=[helper.make_opsetid("", opset)])
    return save(m, tmp_path / name)


@pytest.mark.parametrize("cuts, kw, split, why", [
    ([(0, 32), (32, 64)], {}, True, None), ([(0, 16), (16, 32), (32, 2**62)], {}, True, None),
    ([(0, 16), (32, 64)], {}, False, "do not cut it into adjacent pieces"),
    ([(0, 0), (0, 2**62)], {"computed": True}, True, None),  # x.shape[-1] // 2, folded at load
    ([(0, 32), (32, 64)], {"opset": 12}, False, "from opset 13 on"),
    ([(0, 32), (32, 64)], {"computed": True, "opset": 12}, False, "from opset 13 on"),
    ([(0, 1), (1, 2)], {"axes": False}, False, "no axes input")])
def test_slices_cutting_one_tensor_into_adjacent_pieces_are_one_split(tmp_path, cuts, kw, split, why):
    path = _slices(tmp_path, cuts, **kw)
    kernels = [k.label for k in fuse(onnx_hwutil.profile(path), "runtime").kernels]
    assert ("Split" in kernels) == split and kernels.count("Slice") == (0 if split else len(cuts))
    assert ("Split" in _ort_kernels(path, tmp_path)) == split  # what onnxruntime itself does
    if why:
        assert why in str(explain(onnx_hwutil.profile(path), "piece0"))


def _conv_hard_swish(tmp_path, follow=True, alpha=1 / 6, name="hswish.onnx"):
    """Conv(32 -> 32) -> x * HardSigmoid(x), then a 1x1 Conv (`follow`) or straight to the graph output."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("HardSigmoid", ["c"], ["hs"], alpha=alpha, beta=0.5, name="hsig"),
             helper.make_node("Mul", ["c", "hs"], ["y"], name="mul")]
    out = "y"
    if follow:
        nodes.append(helper.make_node("Conv", ["y", "w2", "b"], ["z"], name="conv2"))
        out = "z"
    inits = [init("w", (32, 32, 3, 3), value=np.full((32, 32, 3, 3), 0.01)), init("b", (32,)),
             init("w2", (32, 32, 1, 1), value=np.full((32, 32, 1, 1), 0.01))]
    m = model(nodes, [vi("x", T.FLOAT, [1, 32, 16, 16])], [vi(out, T.FLOAT, [1, 32, 16, 16])], inits)
    return save(m, tmp_path / name)


@pytest.mark.parametrize("follow, alpha, fused", [(True, 1 / 6, True), (False, 1 / 6, False),
                                                  (True, 0.2, False)])
def test_a_conv_hard_swish_feeding_the_blocked_layout_is_one_kernel(tmp_path, follow, alpha, fused):
    path = _conv_hard_swish(tmp_path, follow, alpha)
    f = fuse(onnx_hwutil.profile(path), "runtime")
    conv = next(k for k in f.kernels if "conv" in k.nodes)
    assert ({"hsig", "mul"} <= set(conv.nodes)) == fused
    if AVX512:  # where MLAS has the NCHWc block the rule mirrors: onnxruntime's Conv took it as HardSwish
        ort_ops = _ort_kernels(path, tmp_path)
        assert ("HardSigmoid" not in ort_ops) == fused, ort_ops

"""What onnxruntime folds at load and what its shape inference lets its rules see (fusion/ort_fold.py), and
the rules that depend on it, each case checked against an onnxruntime 1.32 session: our `runtime` kernel
count must equal ORT's at ORT_ENABLE_ALL, and the kernels we leave apart must be the ones it leaves."""

from __future__ import annotations

import numpy as np
import pytest
from builders import init, model, rand, save, vi
from conftest import ort_kernels
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.fusion import explain, fuse


def _labels(path) -> list[str]:
    return sorted(k.label for k in fuse(onnx_hwutil.profile(path), "runtime").kernels)


def _blind(opset: int, compare: str = "LessOrEqual", declared: bool = False):
    """x[2,8,16,4] -> compare with a constant -> Where -> y, then y reshaped by a target computed from
    y.shape (Shape -> Gather(0), Gather(1) -> Concat with [-1]) at slots that ReshapeFusion cannot take
    (dims 0 and 1 swapped), and Relu. Below opset 16 ORT infers no shape past the comparison: the shape
    math runs at every inference. `declared`: the file gives y's shape in value_info."""
    idx = [init("i0", (), np.int64, 1), init("i1", (), np.int64, 0), init("ax", (1,), np.int64, [0]),
           init("m1", (1,), np.int64, [-1]), init("k", (2, 8, 16, 4), value=rand((2, 8, 16, 4), 1)),
           init("z", (2, 8, 16, 4), value=rand((2, 8, 16, 4), 2))]
    nodes = [helper.make_node(compare, ["x", "k"], ["c"]),
             helper.make_node("Where", ["c", "x", "z"], ["y"]),
             helper.make_node("Shape", ["y"], ["s"])]
    for i in (0, 1):
        nodes += [helper.make_node("Gather", ["s", f"i{i}"], [f"g{i}"], axis=0),
                  helper.make_node("Unsqueeze", [f"g{i}", "ax"], [f"u{i}"])]
    nodes += [helper.make_node("Concat", ["u0", "u1", "m1"], ["t"], axis=0, name="target"),
              helper.make_node("Reshape", ["y", "t"], ["r"]),
              helper.make_node("Relu", ["r"], ["out"])]
    info = [vi("y", T.FLOAT, [2, 8, 16, 4])] if declared else []
    return model(nodes, [vi("x", T.FLOAT, [2, 8, 16, 4])], [vi("out", T.FLOAT, None)], idx,
                 opset=[helper.make_opsetid("", opset)], value_info=info)


@pytest.mark.parametrize("opset, compare, declared, shape_kernels", [
    (14, "LessOrEqual", False, 4),  # Gather x2, Concat... run (the Unsqueezes are views)
    (14, "GreaterOrEqual", False, 4),
    (16, "LessOrEqual", False, 0),  # from opset 16 ORT infers the comparison's shape: all folded
    (14, "LessOrEqual", True, 0),  # the file declares y's shape: ORT starts from it
])
def test_shape_math_onnxruntime_cannot_see_runs_at_every_inference(tmp_path, opset, compare, declared,
                                                                   shape_kernels):
    path = save(_blind(opset, compare, declared), tmp_path / "m.onnx")
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs
    labels = _labels(path)
    assert sum(lab in ("Gather", "Concat") for lab in labels) == (3 if shape_kernels else 0)
    assert compare in labels  # below 16 ORT cannot fold the comparison either; above, x is no constant
    why = explain(onnx_hwutil.profile(path), "target", "runtime").runs
    if shape_kernels:  # `explain` says why the shape math runs, naming the tensor ORT cannot see
        assert why.startswith("it computes from the shape of 'y', whose rank onnxruntime's shape inference "
                              "does not know"), why
    else:
        assert why is None


def _unseen_y() -> list:
    """y = Where(x <= k, x, k): at opset 13 and 14 onnxruntime infers no shape for it."""
    return [helper.make_node("LessOrEqual", ["x", "k"], ["c"]),
            helper.make_node("Where", ["c", "x", "k"], ["y"])]


def _reshape_fusion(tmp_path, parts, shared=False, twice=False):
    """y (shape unknown to ORT, as above) reshaped by Concat(parts): an int is the Gather index of
    y.shape at that slot, a list a constant piece; `twice`: a second Reshape (of -y) reads the target."""
    inits = [init("k", (2, 8, 16, 4), value=rand((2, 8, 16, 4), 1)), init("ax", (1,), np.int64, [0])]
    nodes = _unseen_y()
    if shared:
        nodes.append(helper.make_node("Shape", ["y"], ["s"]))
    pieces = []
    for j, p in enumerate(parts):
        if isinstance(p, list):
            inits.append(init(f"c{j}", (len(p),), np.int64, p))
            pieces.append(f"c{j}")
            continue
        s = "s" if shared else f"s{j}"
        if not shared:
            nodes.append(helper.make_node("Shape", ["y"], [s]))
        inits.append(init(f"i{j}", (), np.int64, p))
        nodes += [helper.make_node("Gather", [s, f"i{j}"], [f"g{j}"], axis=0),
                  helper.make_node("Unsqueeze", [f"g{j}", "ax"], [f"u{j}"])]
        pieces.append(f"u{j}")
    nodes += [helper.make_node("Concat", pieces, ["t"], axis=0),
              helper.make_node("Reshape", ["y", "t"], ["r"]), helper.make_node("Relu", ["r"], ["out"])]
    outs = [vi("out", T.FLOAT, None)]
    if twice:
        nodes += [helper.make_node("Neg", ["y"], ["ny"]), helper.make_node("Reshape", ["ny", "t"], ["out2"])]
        outs.append(vi("out2", T.FLOAT, None))
    m = model(nodes, [vi("x", T.FLOAT, [2, 8, 16, 4])], outs, inits, opset=[helper.make_opsetid("", 13)])
    return save(m, tmp_path / "rf.onnx")


@pytest.mark.parametrize("parts, shared, twice, fused", [
    ([0, 1, [-1]], False, False, True),  # dims copied in place: target [0, 0, -1]
    ([0, 1, [8], [-1]], False, False, True),
    ([0, 1, [-1]], True, False, True),  # one Shape read by both Gathers
    ([[2], [8], 3], False, False, True),  # the one dim out of place becomes the -1
    ([0, 1, 2, 3], False, False, True),
    ([1, 0, [-1]], False, False, False),  # two dims out of place
    ([[-1], 3], False, False, False),  # a dim out of place beside a -1
    ([0, 1, [-1]], False, True, False),  # a target two Reshapes read (after CSE)
])
def test_reshape_fusion_takes_the_shape_math_as_onnxruntime_does(tmp_path, parts, shared, twice, fused):
    path = _reshape_fusion(tmp_path, parts, shared, twice)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs
    assert ("Concat" in _labels(path)) is not fused


def _skip_layer_norm(tmp_path, blind: bool):
    """x + y -> LayerNormalization; y from a comparison ORT infers no shape for (opset 14) or from Relu."""
    inits = [init("g", (64,), value=rand(64, 1)), init("b", (64,), value=rand(64, 2)),
             init("k", (1, 16, 64), value=rand((1, 16, 64), 3))]
    first = _unseen_y() if blind else [helper.make_node("Relu", ["x"], ["y"])]
    nodes = [*first, helper.make_node("Add", ["x", "y"], ["s"], name="residual"),
             helper.make_node("LayerNormalization", ["s", "g", "b"], ["out"], axis=-1, epsilon=1e-5)]
    m = model(nodes, [vi("x", T.FLOAT, [1, 16, 64])], [vi("out", T.FLOAT, None)], inits,
              opset=[helper.make_opsetid("", 14 if blind else 17)])
    return save(m, tmp_path / "sln.onnx")


@pytest.mark.parametrize("blind", [False, True])
def test_skip_layer_norm_needs_operands_onnxruntime_sees_alike(tmp_path, blind):
    path = _skip_layer_norm(tmp_path, blind)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == (4 if blind else 2)
    if blind:
        reasons = [r for c in explain(onnx_hwutil.profile(path), "residual", "runtime").candidates
                   for r in c.reasons]
        assert any("does not know an operand's rank" in r for r in reasons), reasons


def test_a_pre_norm_layer_norm_whose_input_the_residual_reads_again_is_one_kernel(tmp_path):
    """GPT-2's blocks: h = x + attn(LN(x)); LN(x) decomposed, x read by the mean, the centring and the
    residual Add. ORT's LayerNormFusion takes the whole norm."""
    inits = [init("two", (), value=2.0), init("eps", (), value=1e-5), init("g", (64,), value=rand(64, 1)),
             init("b", (64,), value=rand(64, 2)), init("w", (64, 64), value=rand((64, 64), 3))]
    inits.append(init("pos", (1, 16, 64), value=rand((1, 16, 64), 4)))
    nodes = [helper.make_node("Add", ["e", "pos"], ["x"]),  # embeddings + positions
             helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1]),
             helper.make_node("Sub", ["x", "mu"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["d2"]),
             helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["n"]),
             helper.make_node("Mul", ["n", "g"], ["ng"]),
             helper.make_node("Add", ["ng", "b"], ["ln"]),
             helper.make_node("MatMul", ["ln", "w"], ["a"]),
             helper.make_node("Add", ["x", "a"], ["out"])]
    m = model(nodes, [vi("e", T.FLOAT, [1, 16, 64])], [vi("out", T.FLOAT, None)], inits,
              opset=[helper.make_opsetid("", 13)])
    path = save(m, tmp_path / "preln.onnx")
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 4
    assert _labels(path) == ["Add", "Add", "LayerNorm", "MatMul"]


def _matmul_chain(tmp_path, steps, rank):
    """x (2-D or 3-D) @ W, then `steps` in order: a bias Add, a scalar Mul, a Relu."""
    inits = [init("w", (64, 32), value=rand((64, 32), 1)), init("b", (32,), value=rand(32, 2)),
             init("s", (), value=0.125)]
    nodes, cur = [helper.make_node("MatMul", ["x", "w"], ["m"])], "m"
    for i, op in enumerate(steps):
        ins = [cur, {"Add": "b", "Mul": "s"}[op]] if op in ("Add", "Mul") else [cur]
        nodes.append(helper.make_node(op, ins, [f"t{i}"], name=f"{op.lower()}{i}"))
        cur = f"t{i}"
    shape = [16, 64] if rank == 2 else [1, 16, 64]
    m = model(nodes, [vi("x", T.FLOAT, shape)], [vi(cur, T.FLOAT, None)], inits,
              opset=[helper.make_opsetid("", 14)])
    return save(m, tmp_path / "mm.onnx")


@pytest.mark.parametrize("steps, rank, labels", [
    (["Add", "Mul"], 3, ["MatMul+Add", "Mul"]),  # a scale after the bias: the Gemm takes none
    (["Mul", "Add"], 3, ["Add", "MatMul+Mul"]),  # a scale at the MatMul: FusedMatMul, the bias apart
    (["Add", "Relu"], 3, ["MatMul+Add", "Relu"]),  # 3-D: the Gemm sits between Reshapes
    (["Add", "Relu"], 2, ["MatMul+Add+Relu"]),  # 2-D: FusedGemm
    (["Add", "Mul", "Relu"], 2, ["MatMul+Add", "Mul", "Relu"]),
])
def test_what_follows_a_matmul_into_its_kernel_as_in_onnxruntime(tmp_path, steps, rank, labels):
    path = _matmul_chain(tmp_path, steps, rank)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == len(labels)
    assert _labels(path) == sorted(labels)


def _bn_after_blocked(tmp_path, activation, pre="conv_relu"):
    """Conv -> Relu (NCHWc, with its activation) -> BatchNormalization -> `activation` -> Conv: the BN reads
    the blocked layout; `pre` "input": it reads the graph input, in the plain one."""
    rng_inits = [init("wa", (64, 64, 1, 1), value=rand((64, 64, 1, 1), 1)),
                 init("wb", (64, 64, 1, 1), value=rand((64, 64, 1, 1), 2))]
    rng_inits += [init(f"q{k}", (64,), value=np.abs(rand(64, 3 + i)) + 0.5) for i, k in enumerate("sbmv")]
    nodes = [helper.make_node("Conv", ["x", "wa"], ["a"]), helper.make_node("Relu", ["a"], ["ar"])] \
        if pre == "conv_relu" else []
    src = "ar" if pre == "conv_relu" else "x"
    nodes += [helper.make_node("BatchNormalization", [src, "qs", "qb", "qm", "qv"], ["bn"], name="bn"),
              helper.make_node(activation, ["bn"], ["act"]),
              helper.make_node("Conv", ["act", "wb"], ["out"])]
    m = model(nodes, [vi("x", T.FLOAT, [1, 64, 16, 16])], [vi("out", T.FLOAT, None)], rng_inits,
              opset=[helper.make_opsetid("", 13)])
    return save(m, tmp_path / "bn.onnx")


@pytest.mark.parametrize("activation, pre, joined", [
    ("Relu", "conv_relu", True), ("Sigmoid", "conv_relu", True), ("Tanh", "conv_relu", True),
    ("LeakyRelu", "conv_relu", False),  # not an activation the NCHWc conv takes
    ("Relu", "input", False),  # the plain layout: BN and Relu run as they are
])
def test_a_batchnorm_in_the_blocked_layout_runs_as_an_nchwc_conv_with_its_activation(tmp_path, activation,
                                                                                     pre, joined):
    path = _bn_after_blocked(tmp_path, activation, pre)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs
    assert (f"BatchNormalization+{activation}" in _labels(path)) is joined

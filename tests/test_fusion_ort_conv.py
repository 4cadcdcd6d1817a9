"""ONNX Runtime's ConvMulFusion and ConvAddFusion (a BatchNorm written as Conv -> Mul -> Add, as older
exporters and Keras converters write it), and which Adds ORT fuses into no matrix op, checked against a
default CPU session's optimized graph (ORT_ENABLE_ALL): our kernel count beside onnxruntime's, counted as
scripts/compare_fusion_ort.py counts them. onnxruntime/core/optimizer/conv_mul_fusion.cc, conv_add_fusion.cc.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from builders import init, model, rand, save, vi
from conftest import ort_kernels
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.fusion import explain, fuse

pytest.importorskip("onnxruntime")

C = 8  # the conv's output channels
AVX512 = os.path.exists("/proc/cpuinfo") and "avx512f" in Path("/proc/cpuinfo").read_text()


def _chain(tmp_path, steps, bias=True, spatial=2, outputs=(), name="m.onnx"):
    """Conv(3 -> C, k3) -> each step -> Relu. A step: (op, shape of its constant, constant first?), or
    ("BN",), or (op, shape, "input") for an operand known only at run time. `outputs`: extra graph outputs
    (a tensor name, read by a Neg, or the conv's result `c` itself)."""
    k = [3] * spatial
    conv_in = ["x", "w"] + (["b"] if bias else [])
    nodes = [helper.make_node("Conv", conv_in, ["c"], kernel_shape=k, pads=[1] * 2 * spatial, name="conv")]
    inits = [init("w", (C, 3, *k), value=rand((C, 3, *k), 0))] + ([init("b", (C,), value=rand(C, 1))]
                                                                      if bias else [])
    inputs = [vi("x", T.FLOAT, [1, 3] + [16] * spatial)]
    cur = "c"
    for i, (op, *rest) in enumerate(steps):
        if op == "BN":
            stats = [f"bn{i}_{s}" for s in ("s", "b", "m", "v")]
            inits += [init(s, (C,), value=np.abs(rand(C, j)) + 0.5) for j, s in enumerate(stats)]
            nodes.append(helper.make_node("BatchNormalization", [cur, *stats], [f"t{i}"], name=f"bn{i}"))
        else:
            shape, where = rest
            if where == "input":
                inputs.append(vi(f"k{i}", T.FLOAT, shape))
            else:
                inits.append(init(f"k{i}", shape, value=rand(shape, i + 2)))
            ins = [f"k{i}", cur] if where == "first" else [cur, f"k{i}"]
            nodes.append(helper.make_node(op, ins, [f"t{i}"], name=f"{op.lower()}{i}"))
        cur = f"t{i}"
    nodes.append(helper.make_node("Relu", [cur], ["y"], name="relu"))
    outs = [vi("y", T.FLOAT, None)]
    for t in outputs:
        if t == "c":
            outs.append(vi("c", T.FLOAT, None))
        else:
            nodes.append(helper.make_node("Neg", [t], [f"neg_{t}"], name=f"neg_{t}"))
            outs.append(vi(f"neg_{t}", T.FLOAT, None))
    return save(model(nodes, inputs, outs, inits), tmp_path / name)


PER_CHANNEL = [C, 1, 1]


@pytest.mark.parametrize("steps, kw", [
    ([("Mul", PER_CHANNEL, "second"), ("Add", PER_CHANNEL, "second")], {}),
    ([("Mul", [1, C, 1, 1], "second"), ("Add", [1, C, 1, 1], "second")], {}),
    ([("Add", PER_CHANNEL, "second"), ("Mul", PER_CHANNEL, "second")], {}),  # any order
    ([("Mul", PER_CHANNEL, "second"), ("Add", PER_CHANNEL, "second")], {"bias": False}),  # Add becomes it
    ([("Mul", [], "second"), ("Add", [1, C, 1, 1], "second")], {}),  # a scalar Mul folds too
    ([("BN",), ("Mul", PER_CHANNEL, "second"), ("Add", PER_CHANNEL, "second")], {}),
    ([("Mul", PER_CHANNEL, "second"), ("BN",)], {}),  # with ConvBNFusion, in any order
    ([("Mul", [C, 1], "second"), ("Add", [C, 1], "second")], {"spatial": 1}),  # a 1-D conv: FusedConv
])
def test_a_constant_per_channel_mul_and_add_fold_into_the_conv_as_in_onnxruntime(tmp_path, steps, kw):
    path = _chain(tmp_path, steps, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 1  # Conv (+ Relu, ConvActivationFusion or the NCHWc Conv's activation)
    f = fuse(onnx_hwutil.profile(path), "runtime")
    assert [k.label for k in f.kernels] == ["Conv+Relu"]
    # folded into the weights at load: their work is gone, not moved into the kernel
    folded = {n for n in f.totals["folded_nodes"]}
    assert folded == {f"{op.lower()}{i}" for i, (op, *_) in enumerate(steps)}
    costs = {nc.node.name: nc.cost.flops for nc in f.profile.costs.nodes}
    assert f.kernels[0].flops == costs["conv"] + costs["relu"]


@pytest.mark.parametrize("steps, kw, kernels, why", [
    # ConvAddFusion takes no scalar (the Mul, ConvMulFusion, does): Conv, Add, Relu
    ([("Mul", [], "second"), ("Add", [], "second")], {}, 3, "add1: its constant of shape [] is not per"),
    # the constant as the first operand: ORT looks for it second only
    ([("Mul", PER_CHANNEL, "first"), ("Add", PER_CHANNEL, "first")], {}, 4, "mul0: its constant is its"),
    # a rank-1 constant broadcasts the same, but is neither [C, 1, 1] nor [1, C, 1, 1]
    ([("Mul", [1], "second")], {}, 3, "mul0: its constant of shape [1] is not per output channel"),
    ([("Mul", PER_CHANNEL, "input")], {}, 3, None),  # known only at run time: no candidate
    ([("Mul", PER_CHANNEL, "second"), ("Add", PER_CHANNEL, "second")], {"outputs": ["c"]}, 4,
     "mul0: the conv's result 'c' is a graph output"),
    ([("Mul", PER_CHANNEL, "second"), ("Add", PER_CHANNEL, "second")], {"outputs": ["c", "t0"]}, 5,
     "mul0: the conv's result 'c' is a graph output"),
    # the Mul folds; then the conv's result (the Mul's) has two readers: the Add stays
    ([("Mul", PER_CHANNEL, "second"), ("Add", PER_CHANNEL, "second")], {"outputs": ["t0"]}, 4,
     "add1: the conv's result 't0' has 2 readers, not one"),
])
def test_a_mul_or_add_onnxruntime_does_not_fold_stays_a_kernel(tmp_path, steps, kw, kernels, why):
    path = _chain(tmp_path, steps, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == kernels
    if why:
        node, reason = why.split(": ", 1)
        e = explain(onnx_hwutil.profile(path), node, "runtime")
        reasons = [r for c in e.candidates if c.rule in ("ConvMulFusion", "ConvAddFusion") for r in c.reasons]
        assert any(reason in r for r in reasons), reasons


def _matrix_add_relu(tmp_path, op):
    """Gemm (transB) or ConvTranspose, each with its bias, then a constant Add and a Relu."""
    if op == "Gemm":
        mat = helper.make_node("Gemm", ["x", "w", "b"], ["m"], transB=1, name="mat")
        x, w, b, k = [4, 16], (32, 16), (32,), (32,)
    else:
        mat = helper.make_node("ConvTranspose", ["x", "w", "b"], ["m"], kernel_shape=[3, 3], name="mat")
        x, w, b, k = [1, 16, 8, 8], (16, C, 3, 3), (C,), (C, 1, 1)
    nodes = [mat, helper.make_node("Add", ["m", "k"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["y"], name="relu")]
    inits = [init(n, s, value=rand(s, i)) for i, (n, s) in enumerate((("w", w), ("b", b), ("k", k)))]
    return save(model(nodes, [vi("x", T.FLOAT, x)], [vi("y", T.FLOAT, None)], inits), tmp_path / f"{op}.onnx")


@pytest.mark.parametrize("op", ["Gemm", "ConvTranspose"])
def test_no_add_joins_a_gemm_or_a_conv_transpose_as_in_onnxruntime(tmp_path, op):
    # no ORT transformer takes an Add into either: the Add and then the Relu stay kernels of their own
    path = _matrix_add_relu(tmp_path, op)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 3
    e = explain(onnx_hwutil.profile(path), "add", "runtime")
    bsa = next(c for c in e.candidates if c.rule == "BiasScaleActivation")
    assert bsa.reasons == (f"bias: ORT fuses no constant Add into a {op}",)


def _keras_block(tmp_path, c):
    """Keras-style residual block, BatchNorm as Mul and Add: a = Relu(Conv(x) * s1 + b1);
    y = Relu(Conv(a) * s2 + b2 + a)."""
    nodes, inits = [], []

    def conv_bn(name, x, cin):
        nodes.append(helper.make_node("Conv", [x, f"{name}_w"], [f"{name}_c"], kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1], name=name))
        inits.append(init(f"{name}_w", (c, cin, 3, 3), value=rand((c, cin, 3, 3), 0)))
        nodes.append(helper.make_node("Mul", [f"{name}_c", f"{name}_s"], [f"{name}_m"], name=f"{name}_mul"))
        nodes.append(helper.make_node("Add", [f"{name}_m", f"{name}_b"], [f"{name}_y"], name=f"{name}_add"))
        inits.extend(init(f"{name}_{p}", (c, 1, 1), value=rand((c, 1, 1), i)) for i, p in enumerate("sb"))
        return f"{name}_y"

    nodes.append(helper.make_node("Relu", [conv_bn("conv1", "x", 3)], ["a"], name="relu1"))
    nodes += [helper.make_node("Add", [conv_bn("conv2", "a", c), "a"], ["s"], name="residual"),
              helper.make_node("Relu", ["s"], ["y"], name="relu2")]
    m = model(nodes, [vi("x", T.FLOAT, [1, 3, 16, 16])], [vi("y", T.FLOAT, None)], inits)
    return save(m, tmp_path / f"keras{c}.onnx")


@pytest.mark.skipif(not AVX512, reason="MLAS picks its NCHWc block by the host's vector width")
def test_a_keras_residual_block_folds_its_batchnorm_then_takes_the_residual_add(tmp_path):
    # with Mul and Add folded, the second conv is a Conv alone: the NCHWc transformer gives it the residual
    # Add and the Relu after it
    path = _keras_block(tmp_path, 32)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == 2


def _residual(tmp_path, cin=18, cout=16, bias=True, act="Relu", res=None, before=(), conv_out=False,
              add_out=False, second_conv=None):
    """Conv(cin -> cout, k3, pad 1) -> `before` (("BN",) or (op, per-channel constant)) -> Add(., r) -> act.
    18 input channels: at least the NCHWc block (16) and no multiple of 4, so the NCHWc transformer leaves
    the conv alone. `res`: the residual's shape (default the conv's); `second_conv`: the residual is another
    Conv's result instead (its bias: True or False), read first by the Add."""
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], kernel_shape=[3, 3],
                              pads=[1] * 4, name="conv")]
    inits = [init("w", (cout, cin, 3, 3), value=rand((cout, cin, 3, 3), 0))]
    inits += [init("b", (cout,), value=rand(cout, 1))] if bias else []
    cur = "c"
    for i, (op, *_) in enumerate(before):
        if op == "BN":
            stats = [f"bn_{s}" for s in ("s", "b", "m", "v")]
            inits += [init(s, (cout,), value=np.abs(rand(cout, j)) + 0.5) for j, s in enumerate(stats)]
            nodes.append(helper.make_node("BatchNormalization", [cur, *stats], [f"t{i}"], name="bn"))
        else:
            inits.append(init(f"k{i}", (cout, 1, 1), value=rand((cout, 1, 1), i + 2)))
            nodes.append(helper.make_node(op, [cur, f"k{i}"], [f"t{i}"], name=f"{op.lower()}{i}"))
        cur = f"t{i}"
    inputs = [vi("x", T.FLOAT, [1, cin, 16, 16])]
    if second_conv is None:
        inputs.append(vi("r", T.FLOAT, res or [1, cout, 16, 16]))
        add_in = [cur, "r"]
    else:
        nodes.append(helper.make_node("Conv", ["x", "w2"] + (["b2"] if second_conv else []), ["r"],
                                      kernel_shape=[1, 1], name="conv2"))
        inits += [init("w2", (cout, cin, 1, 1), value=rand((cout, cin, 1, 1), 5))]
        inits += [init("b2", (cout,), value=rand(cout, 6))] if second_conv else []
        add_in = ["r", cur]
    nodes.append(helper.make_node("Add", add_in, ["a"], name="add"))
    outs = [vi("c", T.FLOAT, None)] if conv_out else []
    if act:
        nodes.append(helper.make_node(act, ["a"], ["y"], name="act"))
        outs.append(vi("y", T.FLOAT, None))
    if add_out or not act:
        outs.append(vi("a", T.FLOAT, None))
    return save(model(nodes, inputs, outs, inits), tmp_path / "residual.onnx")


@pytest.mark.skipif(not AVX512, reason="MLAS picks its NCHWc block by the host's vector width")
@pytest.mark.parametrize("kw, kernels", [
    ({}, 1),  # Conv + residual Add + Relu: one FusedConv
    ({"cout": 18}, 1),
    ({"act": None}, 1),  # Conv + Add alone
    ({"act": "Sigmoid"}, 1), ({"act": "Tanh"}, 1), ({"act": "LeakyRelu"}, 1), ({"act": "HardSigmoid"}, 1),
    ({"act": "Clip"}, 1),
    ({"act": "Elu"}, 2),  # not one of its activations: FusedConv(Conv + Add), Elu
    ({"act": "Neg"}, 2),
    ({"add_out": True}, 2),  # the Add's result has a second reader: no activation, FusedConv, Relu
    ({"bias": False, "before": [("BN",)]}, 1),  # ConvBNFusion gave it a bias
    ({"bias": False, "before": [("Add",)]}, 1),  # ConvAddFusion gave it one
    ({"second_conv": False}, 2),  # the first Conv has no bias: the Add goes into the second
    ({"second_conv": True}, 2),
])
def test_a_residual_add_and_its_activation_join_a_conv_nchwc_leaves_as_in_onnxruntime(tmp_path, kw, kernels):
    path = _residual(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == kernels
    f = fuse(onnx_hwutil.profile(path), "runtime")
    assert any(k.label.startswith("Conv+Add") for k in f.kernels), [k.label for k in f.kernels]


@pytest.mark.skipif(not AVX512, reason="MLAS picks its NCHWc block by the host's vector width")
@pytest.mark.parametrize("kw, kernels, why", [
    ({"bias": False}, 3, "it has no bias"),
    ({"bias": False, "act": None}, 2, "it has no bias"),
    ({"bias": False, "before": [("Mul",)]}, 3, "it has no bias"),  # ConvMulFusion gives it none
    ({"res": [1, 16, 1, 1]}, 3, "it broadcasts"),  # a broadcast Add: no residual
    ({"res": [16, 16, 16]}, 3, "an operand is not of rank 4"),
    ({"conv_out": True}, 3, "is a graph output"),
    ({"cin": 3}, 3, "the NCHWc transformer rewrites it first"),  # NCHWc takes the conv, not the Add
    ({"cin": 20}, 3, "the NCHWc transformer rewrites it first"),
])
def test_a_conv_add_onnxruntime_does_not_fuse_stays_apart(tmp_path, kw, kernels, why):
    path = _residual(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == kernels
    e = explain(onnx_hwutil.profile(path), "add", "runtime")
    reasons = [r for c in e.candidates if c.rule == "ConvAddActivationFusion" for r in c.reasons]
    assert any(why in r for r in reasons), reasons

"""ONNX Runtime's MatMulIntegerToFloatFusion and DynamicQuantizeMatMulFusion against a default CPU session's
optimized graph (ORT_ENABLE_ALL): models dynamically quantized by onnxruntime.quantization.quantize_dynamic,
and the same pattern built by hand where a case needs what quantize_dynamic never writes. Our kernel count
beside onnxruntime's, counted as scripts/compare_fusion_ort.py counts them."""

from __future__ import annotations

import numpy as np
import pytest
from builders import init, model, rand, save, vi
from conftest import ort_kernels
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.fusion import explain, fuse

pytest.importorskip("onnxruntime")

D = 64


def _mlp(tmp_path):
    """Two MatMul + bias Add + Relu layers, then a Gemm (transB), in float: quantize_dynamic's input."""
    nodes, inits, cur = [], [], "x"
    for i in range(2):
        nodes += [helper.make_node("MatMul", [cur, f"w{i}"], [f"m{i}"], name=f"mm{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"add{i}"),
                  helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}")]
        inits += [init(f"w{i}", (D, D), value=rand((D, D), i)),
                  init(f"b{i}", (D,), value=rand(D, i + 5))]
        cur = f"r{i}"
    nodes.append(helper.make_node("Gemm", [cur, "gw", "gb"], ["y"], transB=1, name="gemm"))
    inits += [init("gw", (16, D), value=rand((16, D), 9)), init("gb", (16,), value=rand(16, 8))]
    return save(model(nodes, [vi("x", T.FLOAT, [8, D])], [vi("y", T.FLOAT, None)], inits),
                tmp_path / "mlp.onnx")


def test_a_dynamically_quantized_mlp_runs_one_kernel_per_layer_as_in_onnxruntime(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = str(tmp_path / "mlp_q.onnx")
    quantize_dynamic(_mlp(tmp_path), q, weight_type=QuantType.QInt8)
    ours, theirs = ort_kernels(q, tmp_path)
    assert ours == theirs == 5  # three DynamicQuantizeMatMuls, two Relus apart (no activation fusion)
    f = fuse(onnx_hwutil.profile(q), "runtime")
    assert [k.label for k in f.kernels] == ["DynamicQuantizeMatMul", "Relu"] * 2 + ["DynamicQuantizeMatMul"]
    assert not f.totals["folded_nodes"]  # the kernel still quantizes, multiplies, rescales and adds


def _pattern(tmp_path, n=1, bias_shape=(32,), dql=True, runtime=(), out_scale=False, bias_first=False):
    """x -> DynamicQuantizeLinear -> n MatMulIntegers sharing the quantized x, each -> Cast -> Mul by
    x_scale * w_scale -> Add bias. `runtime`: of "w", "ws", "b", the inputs given at run time;
    `dql`: False for the quantized x, its scale and zero point as graph inputs; `bias_first`: Add(b, x), as
    quantize_dynamic writes a legacy export's `bias + x @ W`."""
    nodes, inits = [], []
    ins = [vi("x", T.FLOAT, [4, 16])]
    if dql:
        nodes.append(helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"], name="dql"))
    else:
        ins = [vi("xq", T.UINT8, [4, 16]), vi("xs", T.FLOAT, []), vi("xz", T.UINT8, [])]

    def tensor(name, dtype, shape, value):
        if name[:-1] in runtime:
            ins.append(vi(name, dtype, list(shape)))
        else:
            inits.append(init(name, shape, value.dtype, value))

    outs = []
    for i in range(n):
        rng = np.random.default_rng(i)
        tensor(f"w{i}", T.UINT8, (16, 32), rng.integers(0, 255, (16, 32)).astype(np.uint8))
        tensor(f"ws{i}", T.FLOAT, (), np.array(0.02 + 0.01 * i, np.float32))  # distinct: no constant sharing
        inits.append(init(f"wz{i}", (), np.uint8, 128 + i))
        mmi = helper.make_node("MatMulInteger", ["xq", f"w{i}", "xz", f"wz{i}"], [f"mi{i}"], name=f"mmi{i}")
        nodes += [mmi,
                  helper.make_node("Cast", [f"mi{i}"], [f"c{i}"], to=T.FLOAT, name=f"cast{i}"),
                  helper.make_node("Mul", ["xs", f"ws{i}"], [f"s{i}"], name=f"scale{i}"),
                  helper.make_node("Mul", [f"c{i}", f"s{i}"], [f"r{i}"], name=f"rescale{i}")]
        tensor(f"b{i}", T.FLOAT, bias_shape, rand(bias_shape, 9))
        operands = [f"b{i}", f"r{i}"] if bias_first else [f"r{i}", f"b{i}"]
        nodes.append(helper.make_node("Add", operands, [f"y{i}"], name=f"bias{i}"))
        outs.append(vi(f"y{i}", T.FLOAT, None))
    if out_scale:
        outs.append(vi("xs", T.FLOAT, None))
    return save(model(nodes, ins, outs, inits), tmp_path / "dq.onnx")


@pytest.mark.parametrize("kw, labels", [
    ({}, ["DynamicQuantizeMatMul"]),
    ({"bias_shape": (1, 32)}, ["DynamicQuantizeMatMul"]),
    ({"bias_first": True}, ["DynamicQuantizeMatMul"]),  # the bias on either side
    # onnxruntime 1.32 takes weights, their scale and the bias known only at run time as well
    ({"runtime": ("w", "ws")}, ["DynamicQuantizeMatMul"]),
    # the input quantized elsewhere: the MatMulInteger, Cast and Muls alone
    ({"dql": False}, ["MatMulIntegerToFloat"]),
])
def test_the_dynamic_quantization_pattern_fuses_as_in_onnxruntime(tmp_path, kw, labels):
    path = _pattern(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    assert ours == theirs == len(labels)
    assert [k.label for k in fuse(onnx_hwutil.profile(path), "runtime").kernels] == labels


@pytest.mark.parametrize("kw, labels, node, why", [
    # two MatMulIntegers share the quantized input: the DynamicQuantizeLinear runs apart
    ({"n": 2}, ["DynamicQuantizeLinear", "MatMulIntegerToFloat", "MatMulIntegerToFloat"], "dql",
     "its outputs go elsewhere too"),
    ({"out_scale": True}, ["DynamicQuantizeLinear", "MatMulIntegerToFloat"], "dql", "or a graph output"),
    # a bias that is not [..., 1, N] (a full [M, N] tensor), or one known only at run time, stays an Add
    ({"bias_shape": (4, 32)}, ["DynamicQuantizeMatMul", "Add"], "bias0", "not a bias [..., 1, N]"),
    ({"runtime": ("b",)}, ["DynamicQuantizeMatMul", "Add"], "bias0", "its other operand is not a constant"),
])
def test_what_onnxruntime_leaves_out_of_the_dynamic_quantization_kernel(tmp_path, kw, labels, node, why):
    path = _pattern(tmp_path, **kw)
    ours, theirs = ort_kernels(path, tmp_path)
    p = onnx_hwutil.profile(path)
    assert ours == theirs == len(labels)
    assert sorted(k.label for k in fuse(p, "runtime").kernels) == sorted(labels)
    reasons = [r for c in explain(p, node, "runtime").candidates for r in c.reasons]
    assert any(why in r for r in reasons), reasons

"""The GELU and LayerNorm families as rules (issue 13): `explain` names the rule that fused a decomposed
GELU or norm, and says why a near-miss (a GELU whose constant is not sqrt(2) or 0.5, a LayerNorm whose
epsilon is computed at run time) was refused."""

import math

import numpy as np
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

from onnx_hwutil.fusion import explain, fuse
from onnx_hwutil.profile import profile

D = 16
SHAPE = [1, 4, D]
SQRT2 = math.sqrt(2)


def _gelu(tmp_path, sqrt2=SQRT2, half=0.5, name="gelu.onnx"):
    """y = (x * 0.5) * (1 + erf(x / sqrt2)) on x = a + 1 (the fan-out root)."""
    nodes = [
        helper.make_node("Add", ["a", "one"], ["x"], name="root"),
        helper.make_node("Div", ["x", "sqrt2"], ["d"], name="div"),
        helper.make_node("Erf", ["d"], ["e"], name="erf"),
        helper.make_node("Add", ["e", "one"], ["p"], name="plus1"),
        helper.make_node("Mul", ["x", "half"], ["h"], name="half"),
        helper.make_node("Mul", ["h", "p"], ["g"], name="product"),
        helper.make_node("Relu", ["g"], ["y"], name="after"),
    ]
    inits = [init("one", (), value=1.0), init("sqrt2", (), value=sqrt2), init("half", (), value=half)]
    m = model(nodes, [vi("a", T.FLOAT, SHAPE)], [vi("y", T.FLOAT, SHAPE)], inits)
    return profile(save(m, tmp_path / name))


def _layer_norm(tmp_path, epsilon_const=True, name="ln.onnx"):
    """Decomposed LayerNorm of x = a + 1, then gamma and beta; its epsilon an initializer or an input."""
    eps = "eps" if epsilon_const else "eps_in"
    nodes = [
        helper.make_node("Add", ["a", "one"], ["x"], name="root"),
        helper.make_node("ReduceMean", ["x"], ["mu"], axes=[-1], name="mean"),
        helper.make_node("Sub", ["x", "mu"], ["c"], name="center"),
        helper.make_node("Pow", ["c", "two"], ["sq"], name="square"),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[-1], name="variance"),
        helper.make_node("Add", ["var", eps], ["ve"], name="epsilon"),
        helper.make_node("Sqrt", ["ve"], ["sd"], name="root_var"),
        helper.make_node("Div", ["c", "sd"], ["n"], name="normalize"),
        helper.make_node("Mul", ["n", "gamma"], ["s"], name="gamma"),
        helper.make_node("Add", ["s", "beta"], ["y"], name="beta"),
    ]
    inits = [init("one", (), value=1.0), init("two", (), value=2.0), init("gamma", (D,), value=np.ones(D)),
             init("beta", (D,))]
    inputs = [vi("a", T.FLOAT, SHAPE)]
    if epsilon_const:
        inits.append(init("eps", (), value=1e-5))
    else:
        inputs.append(vi("eps_in", T.FLOAT, []))
    m = model(nodes, inputs, [vi("y", T.FLOAT, SHAPE)], inits, opset=[helper.make_opsetid("", 13)])
    return profile(save(m, tmp_path / name))


def _group(p, node, preset="runtime"):
    f = fuse(p, preset)
    return next(s for s in f.subgraphs if node in s.nodes)


def test_a_fused_gelu_names_gelu_fusion(tmp_path):
    p = _gelu(tmp_path)
    g = _group(p, "erf")
    assert g.label == "Gelu" and set(g.nodes) == {"div", "erf", "plus1", "half", "product"}
    e = explain(p, "erf", "runtime")
    assert {m.rule for _, m in e.merges} == {"GeluFusion"}
    assert "merged by rule GeluFusion (pass ort_norm" in "\n".join(e.lines())


@pytest.mark.parametrize(("kw", "bad", "words"), [
    ({"sqrt2": 2.0}, "div", "its constant 'sqrt2' is 2, not sqrt(2) (1.41421)"),
    ({"half": 0.25}, "half", "its constant 'half' is 0.25, not the 0.5 of 0.5x (0.5)"),
])
def test_a_gelu_with_the_wrong_constant_is_refused_with_its_reason(tmp_path, kw, bad, words):
    p = _gelu(tmp_path, **kw)
    assert _group(p, "erf").nodes == ("erf",)  # the runtime preset leaves every op of it alone
    e = explain(p, "erf", "runtime")
    gelu = next(c for c in e.candidates if c.rule == "GeluFusion")
    assert not gelu.took and len(gelu.reasons) == 1
    assert gelu.reasons[0].startswith(f"at {bad}: ") and words in gelu.reasons[0]
    assert any(words in line and "rule GeluFusion (pass ort_norm; step erf)" in line for line in e.lines())
    # the node at fault hears it without the "at": the reason is about itself
    mine = next(c for c in explain(p, bad, "runtime").candidates if c.rule == "GeluFusion")
    assert words in mine.reasons[0] and not mine.reasons[0].startswith("at ")


def test_a_fused_layer_norm_names_layer_norm_fusion_and_takes_gamma_and_beta(tmp_path):
    p = _layer_norm(tmp_path)
    g = _group(p, "variance")
    assert g.label == "LayerNorm"
    assert set(g.nodes) >= {"mean", "center", "square", "variance", "epsilon", "root_var", "normalize",
                            "gamma", "beta"}
    e = explain(p, "beta", "runtime")
    assert [(m.rule, m.step) for _, m in e.merges][-1] == ("LayerNormFusion", "beta")
    assert {m.rule for _, m in e.merges} == {"LayerNormFusion"}


def test_a_layer_norm_whose_epsilon_is_not_constant_is_refused_whole(tmp_path):
    p = _layer_norm(tmp_path, epsilon_const=False)
    f = fuse(p, "runtime")
    assert not any(s.label == "LayerNorm" for s in f.subgraphs)  # not even its mean half
    e = explain(p, "variance", "runtime")
    ln = next(c for c in e.candidates if c.rule == "LayerNormFusion")
    assert ln.reasons == ("at epsilon: epsilon: every operand ('var', 'eps_in') is computed at run time: "
                          "its epsilon must be a constant",)
    mine = next(c for c in explain(p, "epsilon", "runtime").candidates if c.rule == "LayerNormFusion")
    assert mine.reasons[0].startswith("epsilon: every operand")


def test_the_rules_are_data_named_after_ort_transformers():
    from onnx_hwutil.fusion import PASSES

    names = {r.name: r for r in PASSES["ort_norm"].rules}
    assert {"GeluFusion", "FastGeluFusion", "LayerNormFusion", "SimplifiedLayerNormFusion"} <= set(names)
    for r in (names["GeluFusion"], names["LayerNormFusion"]):
        assert r.mirrors.startswith("ORT ") and all(s.ops for s in r.steps)


def _rms_norm(tmp_path, reciprocal=False, name="rms.onnx"):
    """A legacy torch export's RMSNorm: x = Cast(h) to the type it has, x * 1/sqrt(mean(x^2) + eps) * w,
    and x read again by the residual Add after the next MatMul (the readers meet only after a matrix op)."""
    inverse = (helper.make_node("Reciprocal", ["sd"], ["inv"], name="inverse") if reciprocal else
               helper.make_node("Div", ["one", "sd"], ["inv"], name="inverse"))
    nodes = [
        helper.make_node("Add", ["a", "one"], ["h"], name="root"),
        helper.make_node("Cast", ["h"], ["x"], to=T.FLOAT, name="cast"),
        helper.make_node("Pow", ["x", "two"], ["sq"], name="square"),
        helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], name="mean"),
        helper.make_node("Add", ["ms", "eps"], ["me"], name="epsilon"),
        helper.make_node("Sqrt", ["me"], ["sd"], name="root_ms"),
        inverse,
        helper.make_node("Mul", ["x", "inv"], ["n"], name="normalize"),
        helper.make_node("Mul", ["gamma", "n"], ["s"], name="gamma"),
        helper.make_node("MatMul", ["s", "w"], ["f"], name="ffn"),
        helper.make_node("Add", ["x", "f"], ["y"], name="residual"),
    ]
    inits = [init("one", (), value=1.0), init("two", (), value=2.0), init("eps", (), value=1e-6),
             init("gamma", (D,), value=np.ones(D)), init("w", (D, D))]
    m = model(nodes, [vi("a", T.FLOAT, SHAPE)], [vi("y", T.FLOAT, SHAPE)], inits,
              opset=[helper.make_opsetid("", 13)])
    return profile(save(m, tmp_path / name))


def test_a_cast_to_its_own_type_is_a_view(tmp_path):
    p = _rms_norm(tmp_path)
    cast = next(nc for nc in p.costs.nodes if nc.node.name == "cast")
    assert cast.cost.kind.name == "SHAPE" and cast.cost.dram_bytes == 0


def test_rms_norm_whose_input_the_residual_reads_again_is_one_kernel(tmp_path):
    # ORT's SimplifiedLayerNormFusion matches from the input, not where its readers meet (after the MatMul)
    f = fuse(_rms_norm(tmp_path), "runtime")
    norm = next(k for k in f.kernels if "normalize" in k.nodes)
    assert norm.label == "RMSNorm"
    assert {"square", "mean", "epsilon", "root_ms", "inverse", "normalize"} <= set(norm.nodes)
    # and takes gamma, though the residual reads the norm's input through the Cast its group holds: a view
    # of a tensor made outside, whose other readers read no result of the norm (root, RMSNorm, ffn, residual)
    assert "gamma" in norm.nodes and "residual" not in norm.nodes and len(f.kernels) == 4


def test_ort_leaves_a_reciprocal_rms_norm_unfused(tmp_path):
    # onnxruntime 1.32 at ORT_ENABLE_ALL: Sqrt -> Reciprocal -> Mul stays 7 kernels, Div(1, x) fuses
    p = _rms_norm(tmp_path, reciprocal=True)
    assert not any(k.label == "RMSNorm" for k in fuse(p, "runtime").kernels)
    assert "SimplifiedLayerNormFusion" in str(explain(p, "inverse", "runtime"))
    assert any(k.label == "RMSNorm" for k in fuse(p, "aggressive").kernels)


def test_ort_agrees_on_both_rms_norm_forms(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import onnx

    for reciprocal, fused in ((False, True), (True, False)):
        path = _rms_norm(tmp_path, reciprocal, f"rms_{reciprocal}.onnx").bound.path
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"opt_{reciprocal}.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
        assert ("SimplifiedLayerNormalization" in ops) == fused, ops
        if fused:  # its gamma Mul inside, as ours: the same four kernels
            assert len(ops) == len(fuse(_rms_norm(tmp_path, reciprocal, "again.onnx"), "runtime").kernels)

"""Fusion passes with a contract (issue 13): each pass says what it merged and what its rules refused and
why; `explain` answers for one node; a pass that breaks the partition's invariants is caught by `fuse`
itself, naming the pass and the invariant."""

import json

import numpy as np
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.fusion import PASSES, InvariantViolation, explain, fuse
from onnx_hwutil.fusion.contract import check_costs
from onnx_hwutil.ops.elementwise import FLOPS_PER_ELEMENT, FUSED_ACTIVATIONS
from onnx_hwutil.profile import Profile, profile


@pytest.fixture(scope="module")
def resnet18(bundled):
    return Profile(bundled("resnet18"))


def test_a_fused_node_names_its_rule_and_its_subgraph(resnet18):
    e = explain(resnet18, "/relu/Relu", "runtime")
    assert (e.subgraph, e.label, e.members, e.preset) == (0, "Conv+Relu", ("/conv1/Conv", "/relu/Relu"),
                                                          "runtime")
    (pass_name, m), = e.merges
    assert (pass_name, m.rule, m.step, m.anchor) == ("activation", "BiasScaleActivation", "activation",
                                                      "/conv1/Conv")
    assert e.lines() == [
        "/relu/Relu (Relu) is in subgraph 0 'Conv+Relu' under preset runtime, with 1 other node(s): "
        "/conv1/Conv, /relu/Relu",
        "  merged by rule BiasScaleActivation (pass activation, step activation, matched from /conv1/Conv): "
        "2 nodes"]
    d = json.loads(json.dumps(e.to_dict()))
    assert d["members"] == ["/conv1/Conv", "/relu/Relu"] and d["merges"][0]["pass"] == "activation"
    assert d["fused"] is True


def test_a_node_left_alone_gives_each_rules_reason(resnet18):
    # at ORT_ENABLE_EXTENDED (the runtime preset less the NCHWc transformer and ConvAddActivationFusion, both
    # ALL only) the residual Add stays apart
    e = explain(resnet18, "/layer1/layer1.0/conv2/Conv", "runtime", disable=["nchwc", "conv_add_act"])
    assert e.members == ("/layer1/layer1.0/conv2/Conv",) and e.merges == ()
    why = {c.rule: c.reasons for c in e.candidates}
    assert why == {
        "ConvBNFusion": (),  # anchored at BatchNormalizations: none reads this conv
        "ConvMulFusion": (), "ConvAddFusion": (),  # the Add it feeds is a residual: no candidate
        "PadFusion": (),  # anchored at Pads: none feeds this conv
        "QDQSelectorActionTransformer": ("no input comes from a DequantizeLinear: a float op",),
        "BiasScaleActivation": ("at /layer1/layer1.0/Add: bias: no constant operand: a sum of two run-time "
                                "tensors (a residual), not a bias",)}
    assert e.lines()[6] == ("  rule BiasScaleActivation (pass activation; step matrix): at "
                            "/layer1/layer1.0/Add: bias: no constant operand: a sum of two run-time tensors "
                            "(a residual), not a bias")
    assert "never reached it" in e.lines()[1]


def test_the_nchwc_transformer_takes_the_residual_add_and_its_relu(resnet18):
    e = explain(resnet18, "/layer1/layer1.0/Add", "runtime")
    assert e.members == ("/layer1/layer1.0/conv2/Conv", "/layer1/layer1.0/Add",
                         "/layer1/layer1.0/relu_1/Relu")
    assert [(p, m.rule, m.step) for p, m in e.merges] == [("nchwc", "NchwcTransformer", "sum"),
                                                          ("nchwc", "NchwcTransformer", "relu")]
    assert "CPU only" in PASSES["nchwc"].help and "ORT_ENABLE_ALL" in PASSES["nchwc"].rules[0].mirrors


X = [vi("x", T.FLOAT, [1, 8, 16, 16])]
Y = [vi("y", T.FLOAT, [1, 8, 16, 16])]
W = [init("w", (8, 8, 3, 3)), init("b", (8,))]
BN = [init(n, (8,), value=np.ones(8)) for n in ("s", "bb", "mu", "var")]
CONV = helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv")
BN_NODE = helper.make_node("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["y"], name="bn")


def _profile(tmp_path, m):
    return profile(save(m, tmp_path / "m.onnx"))


def test_a_bn_after_a_conv_whose_output_is_a_graph_output(tmp_path):
    p = _profile(tmp_path, model([CONV, BN_NODE], X, [*Y, vi("c", T.FLOAT, [1, 8, 16, 16])], W + BN))
    bn = explain(p, "bn", "runtime")
    assert not bn.fused and bn.merges == ()
    assert [(c.rule, c.steps, c.reasons) for c in bn.candidates if c.rule == "ConvBNFusion"] == [
        ("ConvBNFusion", ("batchnorm",), ("the Conv's output 'c' is a graph output",))]
    conv = explain(p, "conv", "runtime")
    assert {c.rule: c.reasons for c in conv.candidates}["BiasScaleActivation"] == (
        "its result 'c' is a graph output: it must reach memory",)


def test_a_bn_whose_statistics_are_known_only_at_run_time(tmp_path):
    m = model([CONV, BN_NODE], [*X, vi("mu", T.FLOAT, [8])], Y, W + [b for b in BN if b.name != "mu"])
    e = explain(_profile(tmp_path, m), "bn", passes=["shape", "conv_bn"])
    assert [(c.rule, c.reasons) for c in e.candidates] == [
        ("ConvBNFusion", ("'mu' is known only at run time: folding rewrites the weights at load",))]
    assert e.lines() == [
        "bn (BatchNormalization) is a kernel of its own: subgraph 1 'BatchNormalization' under preset custom",
        "  rule ConvBNFusion (pass conv_bn; step batchnorm): 'mu' is known only at run time: folding "
        "rewrites the weights at load"]


def test_a_folded_bn_and_a_clip_with_run_time_bounds(tmp_path):
    clip = helper.make_node("Clip", ["y", "lo"], ["z"], name="clip")
    m = model([CONV, BN_NODE, clip], [*X, vi("lo", T.FLOAT, [])], [vi("z", T.FLOAT, [1, 8, 16, 16])], W + BN)
    p = _profile(tmp_path, m)
    bn = explain(p, "bn", "runtime")
    assert bn.folded and bn.members == ("conv", "bn") and bn.merges[0][1].rule == "ConvBNFusion"
    assert "  folded into the weights of the node it reads, at load: its work disappears" in bn.lines()
    c = explain(p, "clip", "runtime")
    assert {x.rule: x.reasons for x in c.candidates}["BiasScaleActivation"] == (
        "activation: its bounds are known only at run time",)


def test_an_unknown_node_is_a_one_line_input_error_with_close_names(resnet18):
    with pytest.raises(HwUtilError, match=r"^no node named '/conv1/Con' in .*resnet18.onnx; did you mean "
                                          r"/conv1/Conv\?$"):
        explain(resnet18, "/conv1/Con")
    with pytest.raises(HwUtilError, match="node names look like /conv1/Conv, /relu/Relu, /maxpool/MaxPool"):
        explain(resnet18, "zzz")


def test_every_pass_reports_its_merges(resnet18):
    f = fuse(resnet18, "runtime")
    assert f.pass_merges == {"ort_shape": 1, "pad_fusion": 0, "ort_level1": 0, "conv_bn": 0,
                             "conv_mul_add": 0, "qdq": 0, "dynamic_quant": 0, "ort_norm": 0, "quick_gelu": 0,
                             "operand": 0, "activation": 9, "nchwc": 16, "conv_add_act": 0,
                             "slice_split": 0}


# -- broken passes trip the postconditions ----------------------------------------------------------------

def _broken(monkeypatch, name, sabotage):
    """Make pass `name` do its work and then `sabotage(ctx, part)`."""
    cls = PASSES[name]
    apply = cls.apply

    def broken(self, ctx, part):
        apply(self, ctx, part)
        sabotage(ctx, part)

    monkeypatch.setattr(cls, "apply", broken)


def test_a_pass_that_drops_a_node_is_caught(resnet18, monkeypatch):
    def drop(ctx, part):
        part.members[part.group_of["/maxpool/MaxPool"]].clear()

    _broken(monkeypatch, "activation", drop)
    with pytest.raises(InvariantViolation, match=r"fusion pass 'activation' broke the 'partition' invariant: "
                                                 r"every node in exactly one subgraph: missing "
                                                 r"\['/maxpool/MaxPool'\]"):
        fuse(resnet18, "runtime")


def test_a_pass_that_merges_around_a_node_is_caught(resnet18, monkeypatch):
    def around(ctx, part):  # conv and the conv after the next one, skipping the one between: a cycle
        a, c = part.group_of["/layer1/layer1.0/conv1/Conv"], part.group_of["/layer1/layer1.1/conv1/Conv"]
        for m in part.members.pop(c):
            part.group_of[m] = a
            part.members[a].append(m)

    _broken(monkeypatch, "conv_bn", around)
    with pytest.raises(InvariantViolation) as e:
        fuse(resnet18, "runtime")
    assert (e.value.pass_name, e.value.invariant) == ("conv_bn", "acyclic")
    assert isinstance(e.value, AssertionError) and not isinstance(e.value, HwUtilError)


def test_a_pass_that_folds_what_it_did_not_merge_is_caught(resnet18, monkeypatch):
    _broken(monkeypatch, "ort_norm", lambda ctx, part: part.folded.add("/layer1/layer1.0/Add"))
    with pytest.raises(InvariantViolation) as e:
        fuse(resnet18, "runtime")
    assert (e.value.pass_name, e.value.invariant) == ("ort_norm", "folded")
    assert e.value.detail == ("/layer1/layer1.0/Add is folded away but not into the subgraph of a node it "
                              "reads or feeds")


def test_a_view_left_alone_breaks_the_shape_contract(resnet18, monkeypatch):
    monkeypatch.setattr(PASSES["shape"], "apply", lambda self, ctx, part: None)
    with pytest.raises(InvariantViolation, match=r"'shape' broke the 'views join their consumer' invariant: "
                                                 r"/Flatten \(Flatten\) stays alone though the subgraph of "
                                                 "/fc/Gemm could take it"):
        fuse(resnet18, "runtime")
    fuse(resnet18, passes=["activation"])  # without the shape pass, a view standing alone is no bug


def test_costs_that_do_not_add_up_are_caught(resnet18):
    f = fuse(resnet18, "runtime")
    f.subgraphs = f.subgraphs[1:]
    with pytest.raises(InvariantViolation, match="settling the fused subgraphs broke the 'costs' invariant"):
        check_costs(f)


def test_fused_activations_are_priced_by_the_elementwise_table():
    assert FLOPS_PER_ELEMENT.keys() >= FUSED_ACTIVATIONS


def test_fuse_explain_on_the_command_line():
    from typer.testing import CliRunner

    from onnx_hwutil.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["fuse", "models/resnet18.onnx", "--explain", "/layer1/layer1.0/conv2/Conv",
                            "--disable", "nchwc", "--disable", "conv_add_act"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == ("/layer1/layer1.0/conv2/Conv (Conv) is a kernel of its own: "
                                        "subgraph 3 'Conv' under preset runtime-nchwc-conv_add_act")
    assert "at /layer1/layer1.0/Add: bias: no constant operand" in r.output
    r = runner.invoke(app, ["fuse", "models/resnet18.onnx", "--explain", "/relu/Relu", "-f", "json"])
    d = json.loads(r.output)
    assert (d["label"], d["members"]) == ("Conv+Relu", ["/conv1/Conv", "/relu/Relu"])
    r = runner.invoke(app, ["fuse", "models/resnet18.onnx", "--explain", "/relu/Rel"])
    assert r.exit_code == 2 and "did you mean /relu/Relu?" in r.output

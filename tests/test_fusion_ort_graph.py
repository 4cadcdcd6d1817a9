"""The `ort` fusion preset (issue 14): onnxruntime's own optimized graph (ORT_ENABLE_ALL) mapped back onto
ours. Its kernel count is the one scripts/compare_fusion_ort.py counts for onnxruntime on the same file, its
partition is the `runtime` preset's where those rules are exact, and what onnxruntime cannot run or the
mapping cannot hold is one line, never a traceback."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import networkx as nx
import onnx
import pytest
from builders import conv_relu, init, model, save, vi
from conftest import model_path
from hypothesis import HealthCheck, given, settings
from onnx import TensorProto as T
from onnx import helper
from test_fusion import random_model, steps
from typer.testing import CliRunner

import onnx_hwutil
from onnx_hwutil.cli import app
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.fusion import CHOICES, explain, fuse, resolve_passes, what_ifs
from onnx_hwutil.fusion.ort_graph import count_kernels, optimized_graph, ort_optimized
from onnx_hwutil.fusion.ort_map import OrtMappingError

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
# onnxruntime registers its NCHWc transformer only where MLAS has an NCHWc block (x86 with AVX2 or AVX-512):
# the values below that name nchwc kernels, and the runtime preset's NCHWc rule, hold on such a host. The
# equality with the comparison script holds on any.
CPUINFO = Path("/proc/cpuinfo").read_text() if os.path.exists("/proc/cpuinfo") else ""
NCHWC = "avx2" in CPUINFO.split()
needs_nchwc = pytest.mark.skipif(not NCHWC, reason="no NCHWc block on this CPU (x86 AVX2 or AVX-512)")


def _script():
    # the script imports corpus.py as a sibling module, as it does when run as `python scripts/NAME.py`
    sys.path.insert(0, str(SCRIPTS))
    try:
        path = SCRIPTS / "compare_fusion_ort.py"
        spec = importlib.util.spec_from_file_location("_compare_fusion_ort", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(SCRIPTS))


compare = _script()


def _ort_count(path: str, tmp_path) -> int:
    """What scripts/compare_fusion_ort.py counts for onnxruntime: its own binding, copy and session."""
    bound = compare._bound_copy(path, compare._bindings(path, 1, {}), str(tmp_path))
    ops, _reorders = compare.ort_kernels(bound, str(tmp_path))
    return sum(ops.values())


def _kernels(f) -> int:
    return sum(1 for s in f.kernels if s.label != "Transpose")  # as the script counts ours


@pytest.fixture(scope="module")
def ort_fused():
    cache = {}

    def get(name: str):
        if name not in cache:
            p = onnx_hwutil.profile(model_path(name), batch=1)
            cache[name] = (p, fuse(p, "ort"))
        return cache[name]

    return get


# resnet18 and mobilenet_v2: NCHWc convolutions with renamed outputs and residual Adds folded in (23 and 54
# kernels on a host with NCHWc); bert_base: Gemms behind onnxruntime's own Reshapes, SkipLayerNorm,
# FusedMatMul, Gelu: 162 kernels, where the `runtime` preset counts 163.
@pytest.mark.parametrize(("name", "kernels"), [("resnet18", 23 if NCHWC else None),
                                               ("mobilenet_v2", 54 if NCHWC else None), ("bert_base", 162)])
def test_kernel_count_is_what_the_comparison_script_counts_for_onnxruntime(ort_fused, tmp_path, name,
                                                                            kernels):
    _, f = ort_fused(name)
    assert _kernels(f) == _ort_count(model_path(name), tmp_path)
    if kernels is not None:
        assert _kernels(f) == kernels


@needs_nchwc
def test_labels_are_onnxruntime_ops(ort_fused):
    _, f = ort_fused("resnet18")
    labels = [s.label for s in f.kernels]
    assert labels.count("nchwc.Conv") == 20
    assert labels[-1] == "Gemm" and "nchwc.MaxPool" in labels and "nchwc.GlobalAveragePool" in labels
    _, b = ort_fused("bert_base")
    assert {"SkipLayerNormalization", "FusedMatMul", "Gelu", "Gemm"} <= {s.label for s in b.kernels}
    assert f.preset == "ort" and f.passes == [] and f.pass_merges == {}


@needs_nchwc
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_partition_is_the_runtime_presets_where_its_rules_are_exact(ort_fused, name):
    p, f = ort_fused(name)
    r = fuse(p, "runtime")
    groups = lambda part: sorted(sorted(ms) for ms in part.members.values())  # noqa: E731
    assert groups(f.partition) == groups(r.partition)
    assert f.partition.static == r.partition.static
    assert f.totals["macs"] == r.totals["macs"] and f.totals["dram_bytes"] == r.totals["dram_bytes"]


@needs_nchwc
def test_the_residual_add_and_relu_are_in_the_nchwc_conv_that_absorbed_them(ort_fused):
    p, f = ort_fused("resnet18")
    sub = next(s for s in f.subgraphs if "/layer1/layer1.0/conv2/Conv" in s.nodes)
    assert sub.label == "nchwc.Conv"
    assert [p.graph.by_name[n].op_type for n in sub.nodes] == ["Conv", "Add", "Relu"]


def test_the_session_binds_the_profiles_shapes():
    p = onnx_hwutil.profile(model_path("resnet18"), batch=2)
    g = ort_optimized(p)
    assert [d.dim_value for d in g.input[0].type.tensor_type.shape.dim] == [2, 3, 224, 224]


def test_a_graph_only_file_gets_random_weights(tmp_path):
    m = conv_relu()
    path = str(tmp_path / "m.onnx")
    onnx.save_model(m, path, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    os.remove(tmp_path / "m.onnx.data")  # the weights are gone: only the graph is left
    f = fuse(onnx_hwutil.profile(path, batch=1), "ort")
    # ConvActivationFusion's kernel, in the blocked layout where the CPU has one (8 channels padded to it)
    assert [(s.label, s.nodes) for s in f.kernels] == [("nchwc.Conv" if NCHWC else "FusedConv",
                                                        ("conv", "relu"))]


def test_a_model_onnxruntime_refuses_is_one_line(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
               helper.make_node("Frobnicate", ["r"], ["y"], name="custom", domain="com.example")],
              [vi("x", T.FLOAT, [1, 8])], [vi("y", T.FLOAT, [1, 8])], value_info=[vi("r", T.FLOAT, [1, 8])],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = save(m, tmp_path / "custom.onnx")
    p = onnx_hwutil.profile(path)
    assert len(fuse(p, "runtime").kernels) == 2  # our own presets analyze it
    with pytest.raises(HwUtilError, match=r"custom\.onnx: onnxruntime cannot load it \(.*Frobnicate") as e:
        fuse(p, "ort")
    assert "\n" not in str(e.value) and "use the runtime preset" in str(e.value)


def test_a_node_onnxruntime_runs_as_two_kernels_is_refused_with_its_place(tmp_path):
    # onnxruntime 1.32's CPU provider has no HardSwish kernel: it runs the op's ONNX function body, a
    # HardSigmoid and a Mul, two kernels for one node of ours, which no partition of our nodes can hold
    m = model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
               helper.make_node("HardSwish", ["r"], ["y"], name="hswish")],
              [vi("x", T.FLOAT, [1, 16])], [vi("y", T.FLOAT, [1, 16])])
    p = onnx_hwutil.profile(save(m, tmp_path / "hswish.onnx"))
    refused = (r"onnxruntime runs 1 kernel\(s\) with no node of the model behind them "
               r"\(HardSigmoid '' beside hswish\): the ort fusion preset cannot map them")
    with pytest.raises(OrtMappingError, match=refused) as e:
        fuse(p, "ort")
    assert isinstance(e.value, HwUtilError)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_random_dags_map_to_onnxruntimes_count(tmp_path, steps):
    """Random DAGs of elementwise ops, matmuls, transposes, reshapes and norm-like fan-outs: onnxruntime moves
    transposes, fuses scales and bias adds, folds constants; the mapping keeps its count (and the fused
    graph's invariants, which `fuse` checks)."""
    path = save(random_model(steps), tmp_path / "r.onnx")
    p = onnx_hwutil.profile(path)
    try:
        ops, _reorders = count_kernels(optimized_graph(path, str(tmp_path)))
    except Exception:  # onnxruntime 1.32's own optimizer breaks a few of these graphs: no count to compare
        with pytest.raises(HwUtilError, match="onnxruntime cannot load it"):
            fuse(p, "ort")
        return
    try:
        f = fuse(p, "ort")
    except OrtMappingError as e:
        # the preset's contract: onnxruntime's count exactly, or a refusal naming the kernel no group of the
        # model's nodes can be (its transpose optimizer re-creates a centring ReduceMean, nameless, ahead of a
        # Reshape: test_a_kernel_onnxruntime_makes_up_is_refused_by_name pins one)
        assert "with no node of the model behind them" in str(e)
        return
    assert _kernels(f) == sum(ops.values())
    assert nx.is_directed_acyclic_graph(f.dag())


def test_a_kernel_onnxruntime_makes_up_is_refused_by_name(tmp_path):
    """Found by the random DAGs: a Transpose, adds, a Reshape, then x - mean(x): onnxruntime's transpose
    optimizer moves the Transpose past the centring and runs a ReduceMean of its own making."""
    steps = [("Transpose", 0, 0), ("Add", 0, 0), ("Add", 0, 0), ("Add", 0, 0), ("Reshape", 1, 0),
             ("Center", 5, 0)]
    path = save(random_model(steps), tmp_path / "r.onnx")
    ops, _ = count_kernels(optimized_graph(path, str(tmp_path)))
    assert ops["ReduceMean"] == 1
    with pytest.raises(OrtMappingError, match=r"onnxruntime runs 1 kernel\(s\) with no node of the model "
                                              r"behind them \(ReduceMean '' beside Reshape_4\)"):
        fuse(onnx_hwutil.profile(path), "ort")


def test_passes_and_disable_do_not_apply_to_ort(ort_fused):
    assert "ort" in CHOICES and resolve_passes("ort") == ("ort", [])
    # a what-if only for a point that asked for it: no onnxruntime session behind every report
    assert what_ifs("ort") == ["none", "ort", "aggressive"] and "ort" not in what_ifs("runtime")
    with pytest.raises(HwUtilError, match="--disable does not apply to the ort preset: it is onnxruntime's"):
        resolve_passes("ort", disable=["nchwc"])
    with pytest.raises(HwUtilError, match="--passes does not apply to the ort preset"):
        resolve_passes("ort", passes=["shape"])
    with pytest.raises(HwUtilError, match="presets: auto, none, runtime, tensorrt, xla, aggressive, ort"):
        resolve_passes("fast")


def test_explain_names_the_onnxruntime_kernel(tmp_path):
    bn = [init(n, (16,)) for n in ("s", "b", "mean", "var")]
    m = model([helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                name="conv"),
               helper.make_node("BatchNormalization", ["c", "s", "b", "mean", "var"], ["n"], name="bn"),
               helper.make_node("Relu", ["n"], ["y"], name="relu")],
              [vi("x", T.FLOAT, [1, 16, 8, 8])], [vi("y", T.FLOAT, [1, 16, 8, 8])],
              [init("w", (16, 16, 3, 3)), *bn])
    p = onnx_hwutil.profile(save(m, tmp_path / "bn.onnx"))
    e = explain(p, "bn", "ort")
    assert (e.preset, e.label, e.members, e.folded) == ("ort", "nchwc.Conv" if NCHWC else "FusedConv",
                                                        ("conv", "bn", "relu"), True)
    assert e.merges == () and e.candidates == ()  # no passes: onnxruntime's graph says where it went
    assert "folded into the weights" in "\n".join(e.lines())


def test_cli_fuse_and_analyze_with_ort():
    runner = CliRunner()
    r = runner.invoke(app, ["fuse", model_path("resnet18"), "--preset", "ort", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["preset"] == "ort" and d["passes"] == [] and d["merges"] == {}
    assert d["totals"]["kernels"] == len(fuse(onnx_hwutil.profile(model_path("resnet18")), "ort").kernels)
    r = runner.invoke(app, ["fuse", model_path("resnet18"), "--preset", "ort", "--disable", "nchwc"])
    assert r.exit_code == 2 and "--disable does not apply to the ort preset" in r.output
    r = runner.invoke(app, ["analyze", model_path("resnet18"), "--hw", "xeon-8490h", "--fusion", "ort"])
    assert r.exit_code == 0, r.output


def test_validate_reads_onnxruntimes_own_node_names_through_the_mapping(ort_fused, tmp_path):
    # the profile names the kernels onnxruntime made; `ort_owners` gives each the nodes of ours it covers
    from onnx_hwutil.fusion.ort_map import ort_owners

    p, _ = ort_fused("resnet18")
    graph = ort_optimized(p)
    owners = ort_owners(p, graph)
    kernels = [n for n in graph.node if n.op_type not in ("ReorderInput", "ReorderOutput", "Transpose")
               and n.op_type in ("Conv", "FusedConv", "Gemm", "MaxPool", "GlobalAveragePool", "Add", "Relu")]
    assert kernels and all(owners.get(n.name) for n in kernels)
    covered = {m for ms in owners.values() for m in ms}
    assert {n.name for n in p.graph.nodes if n.op_type == "Conv"} <= covered

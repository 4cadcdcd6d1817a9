"""Bugs found in review, each kept as the model that showed it."""

import networkx as nx
import numpy as np
import onnx
import pytest
from builders import conv_relu, init, model, save, vi
from onnx import TensorProto as T
from onnx import helper

import onnx_hwutil
from onnx_hwutil.analysis import analyze
from onnx_hwutil.fusion import FusedGraph, Partition, fuse
from onnx_hwutil.profile import Bindings, Profile, bind


def _p(tmp_path, m, **kw):
    return onnx_hwutil.profile(save(m, tmp_path / "m.onnx"), **kw)


def _branch(name, op, src, n):
    return helper.make_graph([helper.make_node(op, [src], [name])], name, [], [vi(name, T.FLOAT, [n])])


def test_weights_behind_load_time_ops_still_cost_dram(tmp_path):
    # MatMul(x, Transpose(W)): a runtime transposes W once at load, then reads it every inference.
    m = model([helper.make_node("Transpose", ["W"], ["Wt"], perm=[1, 0]),
               helper.make_node("MatMul", ["x", "Wt"], ["y"])],
              [vi("x", T.FLOAT, [1, 256])], [vi("y", T.FLOAT, [1, 512])], [init("W", (512, 256))])
    p = _p(tmp_path, m)
    [sub] = fuse(p, "runtime").kernels
    assert sub.weight_bytes == 512 * 256 * 4 and sub.bytes_read == 256 * 4


def test_control_flow_reading_activations_is_not_shape_math(tmp_path):
    then, other = _branch("t", "Sigmoid", "x", 1000), _branch("e", "Tanh", "x", 1000)
    m = model([helper.make_node("If", ["cond"], ["a"], then_branch=then, else_branch=other),
               helper.make_node("Relu", ["a"], ["y"])],
              [vi("x", T.FLOAT, [1000])], [vi("y", T.FLOAT, [1000])], [init("cond", (), np.bool_, True)])
    f = fuse(_p(tmp_path, m), "aggressive")
    assert len(f.kernels) == 2 and f.totals["dram_bytes"] == 16000


def test_outer_scope_reads_keep_a_tensor_alive_and_escaping(tmp_path):
    n = 1000
    then, other = _branch("t", "Sigmoid", "a", n), _branch("e", "Tanh", "d", n)
    m = model([helper.make_node("Relu", ["x"], ["a"], name="relu"),
               helper.make_node("Neg", ["a"], ["b"]), helper.make_node("Neg", ["b"], ["c"]),
               helper.make_node("Neg", ["c"], ["d"]),
               helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)],
              [vi("x", T.FLOAT, [n]), vi("cond", T.BOOL, [])], [vi("y", T.FLOAT, [n])])
    p = _p(tmp_path, m)
    # a (read by the then branch) is alive until the If: with c and d that is three 4 kB buffers, + cond
    assert p.totals.peak_memory_bytes == 3 * 4 * n + 1
    relu = next(s for s in fuse(p, "aggressive").subgraphs if "relu" in s.nodes)
    assert relu.bytes_written >= 4 * n  # the If reads a: it must reach memory


def test_a_view_of_a_weight_is_a_weight(tmp_path):
    m = model([helper.make_node("Reshape", ["W", "s"], ["W2"]),
               helper.make_node("MatMul", ["x", "W2"], ["y"])],
              [vi("x", T.FLOAT, [1, 1000])], [vi("y", T.FLOAT, [1, 1000])],
              [init("W", (1000 * 1000,)), init("s", (2,), np.int64, [1000, 1000])])
    p = _p(tmp_path, m)
    assert p.totals.params == 1000 * 1000  # not twice
    mm = p.to_dict()["nodes"][1]
    assert mm["weight_bytes"] == 4_000_000 and mm["bytes_read"] == 4000
    assert p.totals.peak_memory_bytes == 4_000_000 + 8000  # weights once, then x and y


def test_merge_refuses_a_cycle_through_a_spanning_group(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="w"),
             helper.make_node("Neg", ["x"], ["b"], name="s1"),
             helper.make_node("Add", ["a", "b"], ["c"], name="s2"),
             helper.make_node("Exp", ["b"], ["d"], name="g"),
             helper.make_node("Add", ["a", "d"], ["e"], name="z")]
    p = _p(tmp_path, model(nodes, [vi("x", T.FLOAT, [4])], [vi("c", T.FLOAT, [4]), vi("e", T.FLOAT, [4])]))
    part = Partition.singletons(p.graph).copy()
    g = part.group_of
    assert part.merge({g["w"], g["z"]}) is not None
    # s1 -> g -> {w, z} -> s2: merging s1 and s2 would close a cycle
    assert part.merge({g["s1"], g["s2"]}) is None
    assert nx.is_directed_acyclic_graph(FusedGraph(p, part, "x", [], {}).dag())


def test_malformed_nodes_are_reported_not_fatal(tmp_path):
    m = model([helper.make_node("Einsum", ["x", "x"], ["y"])], [vi("x", T.FLOAT, [4, 4])],
              [vi("y", T.FLOAT, [4, 4])], opset=[helper.make_opsetid("", 17)])
    p = _p(tmp_path, m)
    assert p.to_dict()["nodes"][0]["status"] == "invalid"
    assert "malformed Einsum" in p.unresolved[0]["tensor"]


def test_an_int32_max_trip_count_is_a_sentinel_not_a_count(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c2"]), helper.make_node("Add", ["v", "v"], ["v2"])], "body",
        [vi("i", T.INT64, []), vi("c", T.BOOL, []), vi("v", T.FLOAT, [100])],
        [vi("c2", T.BOOL, []), vi("v2", T.FLOAT, [100])])
    m = model([helper.make_node("Loop", ["M", "", "v0"], ["v"], body=body)], [vi("v0", T.FLOAT, [100])],
              [vi("v", T.FLOAT, [100])], [init("M", (), np.int64, 2**31 - 1)])
    p = _p(tmp_path, m)
    assert p.totals.flops == 100
    assert any("trip count not static" in n for n in p.to_dict()["notes"])
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))


def test_nothing_is_written_to_the_working_directory(tmp_path, monkeypatch):
    """onnxruntime's symbolic shape inference saves a temp model into the cwd when shapes stay open, as
    they do after an op nobody knows."""
    m = model([helper.make_node("Mystery", ["x"], ["y"], domain="com.example"),
               helper.make_node("Relu", ["y"], ["z"])],
              [vi("x", T.FLOAT, [2])], [vi("z", T.FLOAT, None)],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    path = save(m, tmp_path / "mystery.onnx")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    p = onnx_hwutil.profile(path)
    assert p.uncovered and p.unresolved  # Relu's input shape stays unknown
    assert list(work.iterdir()) == []
    assert sorted(f.name for f in tmp_path.iterdir()) == ["cwd", "mystery.onnx"]


def test_onnxruntime_fused_and_quantized_ops_keep_the_graph_shaped(tmp_path):
    """What ORT's optimizer (FusedConv) and quantizer (QGemm) write: our rules shape what inference can't."""
    q = [init("s", (), np.float32, 0.1), init("z", (), np.uint8, 0), init("wq", (10, 8), np.uint8)]
    m = model([helper.make_node("FusedConv", ["x", "w"], ["c"], domain="com.microsoft", kernel_shape=[3, 3],
                                pads=[1, 1, 1, 1], activation="Relu"),
               helper.make_node("FusedConv", ["c", "w"], ["c2"], domain="com.microsoft", kernel_shape=[3, 3],
                                strides=[2, 2], pads=[1, 1, 1, 1]),
               helper.make_node("GlobalAveragePool", ["c2"], ["p"]),
               helper.make_node("Flatten", ["p"], ["f"]),
               helper.make_node("QuantizeLinear", ["f", "s", "z"], ["fq"]),
               helper.make_node("QGemm", ["fq", "s", "z", "wq", "s", "z", "", "s", "z"], ["y"],
                                domain="com.microsoft", transB=1)],
              [vi("x", T.FLOAT, [1, 8, 16, 16])], [vi("y", T.UINT8, None)],
              [init("w", (8, 8, 3, 3)), *q],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    p = _p(tmp_path, m)
    assert p.unresolved == []
    assert p.totals.macs == 8 * 16 * 16 * 8 * 9 + 8 * 8 * 8 * 8 * 9 + 8 * 10


def test_fuzz_found_invalid_utf8_names_are_a_clean_error(tmp_path):
    from typer.testing import CliRunner

    from onnx_hwutil.cli import app

    m = model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x", T.FLOAT, [4])],
              [vi("y", T.FLOAT, [4])])
    blob = m.SerializeToString().replace(b"Relu", b"R\xffl\xfe")
    path = tmp_path / "bad.onnx"
    path.write_bytes(blob)
    r = CliRunner().invoke(app, ["profile", str(path)])
    assert r.exit_code == 2 and "not valid UTF-8" in r.stderr


def test_fuzz_found_degenerate_gemms_and_odd_perms_do_not_crash(tmp_path):
    from onnx_hwutil.hardware import load_spec
    from onnx_hwutil.hardware.backends import GpuBackend
    from onnx_hwutil.hardware.rates import rates
    from onnx_hwutil.ops import Gemm

    spec = load_spec("h100-sxm5")
    t, units = GpuBackend(spec, rates(spec, "fp16")).matrix(Gemm(0, 0, 5, 5))
    assert t > 0 and units == 1
    tr = helper.make_node("Transpose", ["W"], ["Wt"])
    tr.attribute.append(helper.make_attribute("perm", [1.5, 0.5]))
    m = model([tr, helper.make_node("MatMul", ["x", "Wt"], ["y"])], [vi("x", T.FLOAT, [2, 4])],
              [vi("y", T.FLOAT, None)], [init("W", (4, 4))])
    p = _p(tmp_path, m)
    for preset in ("runtime", "aggressive"):
        fuse(p, preset)


def test_weights_inside_an_if_branch_reach_the_mapped_dram_traffic(tmp_path):
    # the then-branch multiplies by its own 64x64 initializer: 16 KiB at fp32 that the profile counts, and
    # that the mapping must move too (it used to see only the If node's own inputs and outputs)
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["t"])], "then", [],
                             [vi("t", T.FLOAT, [1, 64])], [init("w", (64, 64))])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [],
                              [vi("e", T.FLOAT, [1, 64])])
    m = model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
              [vi("x", T.FLOAT, [1, 64]), vi("c", T.BOOL, [])], [vi("y", T.FLOAT, [1, 64])])
    path = save(m, tmp_path / "if.onnx")
    [s] = analyze(path, "h100-sxm5", precision="fp32")
    [k] = s.kernels
    assert k.dram_bytes >= 64 * 64 * 4
    assert k.dram_bytes == fuse(Profile(bind(path, Bindings()), "fp32"), "runtime").subgraphs[0].dram_bytes


# -- issue 11: wrong numbers and refusals found on real models ------------------------------------------

MS_OPSET = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]


def _conv_act(act_nodes, fused_act=None):
    """x[1,8,16,16] -> Conv 8->8 k1 (+bias) -> activation, as separate nodes or one FusedConv."""
    if fused_act:
        nodes = [helper.make_node("FusedConv", ["x", "w", "b"], ["y"], domain="com.microsoft",
                                  kernel_shape=[1, 1], activation=fused_act)]
    else:
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[1, 1]), *act_nodes]
    return model(nodes, [vi("x", T.FLOAT, [1, 8, 16, 16])], [vi("y", T.FLOAT, [1, 8, 16, 16])],
                 [init("w", (8, 8, 1, 1)), init("b", (8,))], opset=MS_OPSET)


def test_hardswish_costs_the_same_fused_or_standalone(tmp_path):
    out = 8 * 16 * 16
    macs = out * 8
    alone = _p(tmp_path, _conv_act([helper.make_node("HardSwish", ["c"], ["y"])])).totals
    fused = _p(tmp_path, _conv_act([], fused_act="HardSwish")).totals
    # 2 x MACs + bias add per output + HardSwish's 4 FLOPs per output, whichever op carries it
    assert alone.flops == fused.flops == 2 * macs + out + 4 * out


def _calibrated_xeon(tmp_path):
    import yaml

    from onnx_hwutil.hardware.catalog import HWSPEC_DIR

    with open(f"{HWSPEC_DIR}/xeon-8490h.yaml") as f:
        data = yaml.safe_load(f)
    data["calibration"] = {"source": "a synthetic table for a test", "threads": {60: {
        "gemm": [[64, 64, 64, 1e11], [1024, 1024, 1024, 2e12]], "depthwise": [[1e3, 1e9], [1e8, 1e11]],
        "elementwise": [[1e3, 1e10], [1e9, 1e11]], "dispatch_s": 3e-6}}}
    path = tmp_path / "cal.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_calibrated_spec_predicts_its_measured_precision(tmp_path):
    path = _calibrated_xeon(tmp_path)
    m = save(conv_relu(), tmp_path / "m.onnx")
    [auto] = analyze(m, path, 1, "auto")
    assert auto.precision == "fp32" and auto.calibrated and not auto.uncalibrated  # not bf16 at the AMX peak
    [bf16] = analyze(m, path, 1, "bf16")
    assert not bf16.calibrated and bf16.uncalibrated and bf16.to_dict()["calibrated"] is False
    assert any("uncalibrated at bf16" in n for n in bf16.notes)
    from onnx_hwutil.report.analysis_view import analyze_table

    assert "bf16 (uncalibrated)" in analyze_table([bf16]) and "uncalibrated" not in analyze_table([auto])


def test_host_values_the_os_does_not_give_are_assumed(monkeypatch):
    from onnx_hwutil.hardware import host

    monkeypatch.setattr(host, "_read", lambda path: None)
    monkeypatch.setattr(host, "_cpuinfo", lambda: {"flags": "avx2 fma"})
    spec = host.host_spec()
    for field in ("clock_hz", "memory.onchip_bytes", "backend.cpu.l1d_bytes_per_core",
                  "backend.cpu.l2_bytes_per_core", "backend.cpu.l3_bytes"):
        assert spec.sources[field].assumed, field
    assert spec.clock_hz == 2e9 and spec.backend.l3_bytes == 8 * 1024**2


def test_energy_per_batch_and_per_inference_are_named_apart(tmp_path):
    m = save(conv_relu(), tmp_path / "m.onnx")
    [s] = analyze(m, "h100-sxm5", 8)
    d = s.to_dict()
    assert d["energy_per_batch_j"] == s.energy["total_j"]
    assert d["energy_per_inference_j"] == pytest.approx(s.energy["total_j"] / 8, rel=1e-12)
    assert "energy_j" not in d


def test_a_narrower_type_with_the_same_peak_is_not_said_to_raise_it():
    from conftest import model_path

    from onnx_hwutil.analysis import Analyzer, Point
    from onnx_hwutil.findings import findings

    a = Analyzer()
    # unfused: with the runtime preset's NCHWc folds, int8 is no longer faster than bf16 here at all
    p = Point(model_path("resnet18"), "tpu-v4", 1, "auto", "none")
    [f] = [f for f in findings(a, p, a.run(p)) if f.rule == "below_ridge"]
    int8 = f.evidence["by_precision"]["int8"]
    assert int8["peak_ops_per_s"] == f.evidence["by_precision"]["bf16"]["peak_ops_per_s"] == 275e12
    assert "int8" in f.mitigation and "raise this chip's peak" not in f.mitigation
    assert "no higher than bf16's" in f.mitigation


def test_idle_units_offer_only_a_partition_the_chip_defines(tmp_path):
    from onnx_hwutil.analysis import Analyzer, Point
    from onnx_hwutil.findings import findings
    from onnx_hwutil.hardware import load_spec

    spec = load_spec("h100-sxm5")
    assert spec.partitions["3g.40gb"] == (60, 40e9) and next(iter(spec.partitions)) == "1g.10gb"
    a = Analyzer()
    p = Point(save(conv_relu(), tmp_path / "m.onnx"), "h100-sxm5", 1, "auto", "runtime")
    s = a.run(p)
    [f] = [f for f in findings(a, p, s) if f.rule == "idle_units"]
    need = s.units_allocated["mean"]
    # the smallest MIG profile holding the busy SMs: a tiny model keeps under 16 busy, so 1g.10gb
    assert need <= 16 and f.evidence["partition"] == {"name": "1g.10gb", "units": 16}
    assert "a 1g.10gb partition (16 SMs)" in f.mitigation and "about" not in f.mitigation
    [f] = [f for f in findings(a, p.__class__(p.model, "h100-pcie", 1, "auto", "runtime"),
                               a.run(Point(p.model, "h100-pcie", 1, "auto", "runtime")))
           if f.rule == "idle_units"]
    assert "partition" not in f.mitigation and "partition" not in f.evidence  # no profiles in that spec


def test_compute_bound_on_vector_work_says_so(tmp_path):
    import yaml
    from conftest import model_path

    from onnx_hwutil.analysis import Analyzer, Point
    from onnx_hwutil.findings import findings
    from onnx_hwutil.hardware.catalog import HWSPEC_DIR

    a = Analyzer()
    # The K210 holds weights in its 6 MiB general SRAM (issue 19): MobileNetV2 at batch 2 needs 7.92 MiB,
    # so the batch search stops at 1 on the real chip, and says why
    p = Point(model_path("mobilenet_v2"), "kendryte-k210", 1, "auto", "runtime")
    [f] = [f for f in findings(a, p, a.run(p)) if f.rule == "low_utilization"]
    assert "more than the chip's 6.00 MiB" in f.mitigation
    # the same chip with all 8 MiB for weights reaches larger batches, where vector work is what bounds it
    with open(f"{HWSPEC_DIR}/kendryte-k210.yaml") as fh:
        data = yaml.safe_load(fh)
    data["memory"]["dram_capacity_bytes"]["value"] = 8 * 2**20
    path = tmp_path / "k210-8mib.yaml"
    path.write_text(yaml.safe_dump(data))
    p = Point(model_path("mobilenet_v2"), str(path), 1, "auto", "runtime")
    s = a.run(p)
    [f] = [f for f in findings(a, p, s) if f.rule == "low_utilization"]
    assert f.evidence["vector_share_of_compute_bound_at_best"] > 0.5
    assert "non-matrix work, which runs at the vector rate of 1.6 GOP/s, not the matrix peak of 460 GOP/s" \
        in f.mitigation


def test_question_mark_dims_are_independent_unknowns(tmp_path):
    # paddle2onnx writes "?" for every dynamic dim: x = [?, 3, ?, ?]
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["?", 3, "?", "?"])],
              [vi("y", T.FLOAT, ["?", 3, "?", "?"])])
    p = _p(tmp_path, m, shapes={"x": "1x3x48x192"})
    assert p.bound.inputs == {"x": (1, 3, 48, 192)} and p.totals.flops == 3 * 48 * 192
    # a real shared name still binds every dim that carries it
    m = model([helper.make_node("Add", ["a", "b"], ["y"])],
              [vi("a", T.FLOAT, ["batch", "seq"]), vi("b", T.FLOAT, ["batch", "seq"])],
              [vi("y", T.FLOAT, ["batch", "seq"])])
    p = _p(tmp_path, m, shapes={"a": "2x7"})
    assert p.bound.inputs == {"a": (2, 7), "b": (2, 7)}


def test_every_command_defaults_an_unbound_batch_to_one_and_says_so(tmp_path):
    from typer.testing import CliRunner

    from onnx_hwutil.cli import app

    path = save(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["batch_size", 16])],
                      [vi("y", T.FLOAT, ["batch_size", 16])]), tmp_path / "m.onnx")
    for cmd in ("profile", "fuse", "analyze"):
        r = CliRunner().invoke(app, [cmd, path])
        assert r.exit_code == 0, (cmd, r.output)
        assert "batch dim 'batch_size' not bound, taken as a batch of 1" in r.stdout, cmd
    assert _p(tmp_path, model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["N", 16])],
                              [vi("y", T.FLOAT, ["N", 16])])).bound.inputs == {"x": (1, 16)}


@pytest.mark.parametrize("args", [["--dim", "batch=0"], ["--shape", "x=0x16"], ["--dim", "batch=-3"],
                                  ["--batch", "0"]])
def test_a_zero_or_negative_batch_is_refused(tmp_path, args):
    from typer.testing import CliRunner

    from onnx_hwutil.cli import app

    path = save(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, ["batch", 16])],
                      [vi("y", T.FLOAT, ["batch", 16])]), tmp_path / "m.onnx")
    for cmd in ("profile", "analyze"):
        r = CliRunner().invoke(app, [cmd, path, *args])
        assert r.exit_code == 2, (cmd, args, r.output)
        assert "Traceback" not in r.output
        if args[0] != "--batch":  # typer's own range check; the console script makes it one line (test_cli)
            assert len(r.stderr.strip().splitlines()) == 1


def _partly_costed():
    """A custom op (no formula) whose output feeds a MatMul (so unshaped): 2 of 3 nodes not costed, and the
    MatMul does at least its 64 x 32 weight's 2,048 MACs."""
    return model([helper.make_node("Mystery", ["x"], ["h"], domain="com.example"),
                  helper.make_node("MatMul", ["h", "W"], ["y"], name="mm"),
                  helper.make_node("Relu", ["x"], ["z"])],
                 [vi("x", T.FLOAT, [4, 64])], [vi("y", T.FLOAT, None), vi("z", T.FLOAT, [4, 64])],
                 [init("W", (64, 32))],
                 opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])


def test_a_partly_costed_model_says_so_in_every_row(tmp_path):
    from typer.testing import CliRunner

    from onnx_hwutil.cli import app

    path = save(_partly_costed(), tmp_path / "m.onnx")
    [s] = analyze(path, "h100-sxm5")
    assert s.to_dict()["coverage"] == {"nodes": 3, "uncosted_nodes": 2, "uncosted_node_share": 2 / 3,
                                       "uncosted_macs_at_least": 2048, "uncosted_mac_share_at_least": 1.0}
    r = CliRunner().invoke(app, ["analyze", path, "--no-findings"])
    assert r.exit_code == 0 and "2/3 nodes (66.7%), >= 2.05 k MACs (100.0%)" in r.stdout
    r = CliRunner().invoke(app, ["analyze", path, "--no-findings", "--strict"])
    assert r.exit_code == 1 and "not fully costed: com.example::Mystery, 1 unshaped nodes" in r.stderr
    r = CliRunner().invoke(app, ["analyze", path, "--no-findings", "--fail-if", "uncosted_nodes>=2"])
    assert r.exit_code == 1 and "uncosted_nodes = 2" in r.stderr
    r = CliRunner().invoke(app, ["analyze", path, "--no-findings", "--fail-if", "uncosted_nodes>2"])
    assert r.exit_code == 0
    # a fully costed model: nothing left out, and the table says "-"
    [s] = analyze(save(conv_relu(), tmp_path / "c.onnx"), "h100-sxm5")
    assert s.coverage["uncosted_nodes"] == 0 and s.coverage["uncosted_node_share"] == 0.0


def test_a_loop_body_without_shapes_is_counted_as_not_costed(tmp_path):
    # The body's MatMul reads a loop-carried value whose shape inference cannot follow.
    body = helper.make_graph(
        [helper.make_node("Mystery", ["h"], ["h2"], domain="com.example"),
         helper.make_node("MatMul", ["h2", "W"], ["hout"]), helper.make_node("Identity", ["c"], ["cout"])],
        "body", [vi("i", T.INT64, []), vi("c", T.BOOL, []), vi("h", T.FLOAT, None)],
        [vi("cout", T.BOOL, []), vi("hout", T.FLOAT, None)])
    m = model([helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)], [vi("x", T.FLOAT, [4, 32])],
              [vi("y", T.FLOAT, None)], [init("trips", (), np.int64, 5), init("W", (32, 32))],
              opset=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    p = _p(tmp_path, m)
    c = p.costs.coverage
    assert c["nodes"] == 4 and c["uncosted_nodes"] == 2  # Mystery and the MatMul inside the body
    assert c["uncosted_macs_at_least"] == 5 * 32 * 32  # the weight, once per trip
    assert any("UNRESOLVED" in g for g in p.gaps)


def test_setuptools_ships_every_subpackage_and_the_chips():
    import pathlib
    import tomllib

    root = pathlib.Path(__file__).resolve().parent.parent
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "onnx_hwutil").rglob("__init__.py")}
    assert set(cfg["packages"]) == found | {"onnx_hwutil.hwspecs"}
    assert cfg["package-dir"]["onnx_hwutil.hwspecs"] == "hwspecs"
    assert cfg["package-data"]["onnx_hwutil.hwspecs"] == ["*.yaml"]
    assert cfg["package-data"]["onnx_hwutil"] == ["schemas/*.json"]
    assert list((root / "onnx_hwutil" / "schemas").glob("*.json"))

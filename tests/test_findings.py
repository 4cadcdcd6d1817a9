"""Findings: each rule's evidence is what an independent analysis of the what-if gives."""

import numpy as np
import pytest
from builders import T, conv_relu, helper, init, model, save, vi
from conftest import model_path

from onnx_hwutil.analysis import Analyzer, Point, analyze
from onnx_hwutil.errors import HwUtilError
from onnx_hwutil.findings import MAX_BATCH, TARGET_UTILIZATION, findings


def _findings(model, hw, batch=1, precision="auto", fusion="runtime"):
    a = Analyzer()
    p = Point(model, hw, batch, precision, fusion)
    s = a.run(p)
    return s, {f.rule: f for f in findings(a, p, s)}


def test_batch_search_finds_the_first_batch_reaching_half_of_peak():
    s, fs = _findings(model_path("resnet18"), "xeon-8490h")
    ev = fs["low_utilization"].evidence
    assert s.compute_utilization < TARGET_UTILIZATION == ev["target"]
    b = ev["batch_reaching_target"]
    lo = 1 << ((b - 1).bit_length() - 1)  # the power of two below it: every batch from there was checked
    assert ev["search"] == f"powers of two up to {lo}, then every batch from {lo + 1}"
    [at_b] = analyze(model_path("resnet18"), "xeon-8490h", b, s.precision)
    assert at_b.compute_utilization >= 0.5
    for n in [*range(lo, b), *(1 << k for k in range(lo.bit_length() - 1))]:
        assert analyze(model_path("resnet18"), "xeon-8490h", n, s.precision)[0].compute_utilization < 0.5, n
    assert ev["utilization_at_that_batch"] == pytest.approx(at_b.compute_utilization, rel=1e-12)
    assert f"batch {b} is the first" in fs["low_utilization"].mitigation


def test_a_bisected_batch_is_not_called_the_first(monkeypatch):
    """Bisection (a gap between powers wider than EXHAUSTIVE) finds a batch at the target, not surely the
    first one: utilization is not monotonic in batch."""
    import onnx_hwutil.analysis as analysis
    monkeypatch.setattr(analysis, "EXHAUSTIVE", 2)
    _, fs = _findings(model_path("resnet18"), "xeon-8490h")
    ev, text = fs["low_utilization"].evidence, fs["low_utilization"].mitigation
    assert ev["search"] == "powers of two up to 4, then bisection up to 8"
    b = ev["batch_reaching_target"]
    assert 4 < b <= 8 and f"batch {b} reaches 50.0%" in text and "first" not in text


def test_batch_search_says_when_no_batch_fills_the_chip():
    s, fs = _findings(model_path("resnet50"), "h100-sxm5")
    ev = fs["low_utilization"].evidence
    assert ev["batch_reaching_target"] is None and ev["searched_up_to"] == MAX_BATCH
    best = analyze(model_path("resnet50"), "h100-sxm5", ev["best_batch"], s.precision)[0]
    assert ev["best_utilization"] == pytest.approx(best.compute_utilization, rel=1e-12)
    assert ev["best_utilization"] < 0.5
    assert "batch alone will not fill" in fs["low_utilization"].mitigation


def test_memory_bound_names_the_fusion_and_the_bytes_it_saves():
    # ViT-B/16: on a CPU the runtime preset (ORT_ENABLE_ALL) already folds ResNet-50's residual Adds and
    # Relus into its convs (NCHWc), so there the aggressive what-if saves no bytes; attention still does.
    s, fs = _findings(model_path("vit_b_16"), "xeon-8490h")
    f = fs["memory_bound"]
    assert f.evidence["memory_bound_share"] == s.bound_share["memory"] >= 0.3
    agg = analyze(model_path("vit_b_16"), "xeon-8490h", 1, s.precision, "aggressive")[0]
    o = f.evidence["fusion_options"]["aggressive"]
    assert o["saved_bytes"] == s.dram_bytes - agg.dram_bytes > 0
    assert o["latency_s"] == pytest.approx(agg.latency_s, rel=1e-12)
    assert "attention" in o["passes_added"] and "conv_bn" not in o["passes_added"]
    assert f.mitigation.startswith("fusion preset aggressive")


def test_below_ridge_lists_each_precision_and_only_faster_ones_as_mitigation():
    s, fs = _findings(model_path("resnet18"), "h100-sxm5")
    f = fs["below_ridge"]
    assert f.evidence["arithmetic_intensity"] == pytest.approx(s.flops / s.dram_bytes)
    assert f.evidence["ridge_point"] == pytest.approx(989e12 / 3.35e12, rel=1e-3)
    per = f.evidence["by_precision"]
    assert set(per) == {"fp32", "tf32", "fp16", "bf16", "int8", "fp8"}
    int8 = analyze(model_path("resnet18"), "h100-sxm5", 1, "int8")[0]
    assert per["int8"]["latency_s"] == pytest.approx(int8.latency_s, rel=1e-12)
    # fp32 "passes" the ridge only by a lower peak: slower, so never offered
    assert per["fp32"]["arithmetic_intensity"] >= per["fp32"]["ridge_point"]
    assert per["fp32"]["latency_s"] > s.latency_s and "fp32" not in f.mitigation


def test_idle_units_and_a_well_used_chip():
    s, fs = _findings(model_path("resnet18"), "h100-sxm5")
    ev = fs["idle_units"].evidence
    assert ev["units_total"] == 132
    assert ev["units_idle_mean"] == pytest.approx(132 - s.units_allocated["mean"])
    s, fs = _findings(model_path("resnet50"), "kpu-t256", batch=8)  # 76% busy, compute-bound, all tiles
    assert s.compute_utilization > 0.5 and s.arithmetic_intensity > s.ridge_point and fs == {}


def test_a_batch_bound_by_dim_is_not_called_fixed_by_the_file():
    a = Analyzer(dims={"batch": 8})
    # fusion none: with the runtime preset's NCHWc folds ResNet-18 at batch 8 is no longer under-utilized
    p = Point(model_path("resnet18"), "xeon-8490h", None, "auto", "none")
    s = a.run(p)
    f = {f.rule: f for f in findings(a, p, s)}["low_utilization"]
    assert s.batch == 8 and "batch_fixed" not in f.evidence and f.evidence["searched_up_to"] == 8
    assert f.mitigation == ("no larger batch could be analyzed (at batch 16: --batch 16 conflicts with --dim "
                            "batch=8)")


def test_overhead_share_is_the_launch_time_itself():
    s, fs = _findings(model_path("resnet18"), "h100-sxm5")
    ev = fs["overhead_bound"].evidence
    assert ev["overhead_share"] == pytest.approx(23 * 5e-6 / s.latency_s)  # ORT_ENABLE_ALL's 23 kernels
    # every kernel is overhead-bound, but not all of the time is overhead
    assert ev["overhead_share"] < s.bound_share["overhead"] == 1.0


def test_a_spill_mitigation_is_only_offered_when_faster():
    s, fs = _findings(model_path("vit_b_16"), "kpu-t256", batch=8)
    f = fs["spills"]
    alt = f.evidence["alternatives"]
    assert set(alt) == {"fusion none", "batch 4"}
    assert all(v["latency_s_per_inference"] > s.latency_s / 8 for v in alt.values())
    assert f.mitigation.startswith("the spill costs less than the alternatives")


def test_nothing_to_find_where_nothing_computes(tmp_path):
    path = save(model([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1])],
                      [vi("x", T.FLOAT, ["N", 64, 128])], [vi("y", T.FLOAT, ["N", 128, 64])]),
                tmp_path / "t.onnx")
    s, fs = _findings(path, "h100-sxm5")
    assert s.flops == 0 and len(s.kernels) == 1 and fs == {}


def test_a_fixed_batch_file_is_searched_by_rebatching_it(tmp_path):
    # The file fixes batch 1: the search re-batches it in memory instead of asking for a re-export.
    path = save(conv_relu(batch=1), tmp_path / "fixed.onnx")
    [s] = analyze(path, "h100-sxm5")
    a = Analyzer()
    p = Point(path, "h100-sxm5", None, "auto", "runtime")
    f = {f.rule: f for f in findings(a, p, a.run(p))}["low_utilization"]
    assert s.batch == 1 and "batch_fixed" not in f.evidence
    assert f.evidence["searched_up_to"] > 1 and "re-export" not in f.mitigation
    [s8] = analyze(path, "h100-sxm5", 8)
    assert s8.batch == 8 and s8.flops == 8 * s.flops


def test_a_fixed_leading_dim_other_than_one_is_not_taken_for_a_batch(tmp_path):
    # dim 0 fixed at 4 may be a sequence (a seq-first export): --batch asks for an explicit --shape
    path = save(conv_relu(batch=4), tmp_path / "fixed4.onnx")
    with pytest.raises(HwUtilError, match="every input fixes dim 0 at 4; if that is the batch, re-batch "
                                          "with --shape"):
        analyze(path, "h100-sxm5", 8)
    [s] = analyze(path, "h100-sxm5", None, shapes={"x": (8, 3, 32, 32)})
    assert s.batch == 8


def test_a_model_without_a_batch_dim_says_so(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", T.FLOAT, [])], [vi("y", T.FLOAT, [])])
    path = save(m, tmp_path / "scalar.onnx")
    a = Analyzer()
    p = Point(path, "h100-sxm5", None, "auto", "runtime")
    f = {f.rule: f for f in findings(a, p, a.run(p))}["low_utilization"]
    assert f.evidence["batch_fixed"] is True and "no batch dim" in f.mitigation


def test_a_model_that_does_not_fit_says_so_and_which_batch_does():
    s, fs = _findings(model_path("resnet50"), "h100-sxm5", batch=32768)
    f = fs["exceeds_memory"]
    cap = s.spec.dram_capacity
    a = Analyzer()
    peak = {b: a.profile(model_path("resnet50"), b, "bf16").totals.peak_memory_bytes for b in (16384, 32768)}
    assert f.evidence["peak_memory_bytes"] == peak[32768] > cap >= peak[16384]
    assert f.evidence["largest_power_of_two_batch_that_fits"] == 16384
    s, fs = _findings(model_path("bert_base"), "kendryte-k210")
    f = fs["exceeds_memory"]
    assert f.evidence["weight_bytes"] > f.evidence["memory_capacity_bytes"] == 6 * 2**20  # 6 MiB general SRAM
    assert "int8 is the narrowest type this chip runs" in f.mitigation


def test_a_batch_the_model_cannot_take_makes_it_a_batch_not_the_first(tmp_path):
    # the Reshape to [-1, 1024] of [N, 512] runs only at even N: odd batches between powers are skipped
    path = save(model([helper.make_node("Reshape", ["x", "s"], ["r"]),
                       helper.make_node("MatMul", ["r", "w"], ["y"])],
                      [vi("x", T.FLOAT, ["N", 512])], [vi("y", T.FLOAT, None)],
                      [init("s", (2,), np.int64, [-1, 1024]), init("w", (1024, 1024))]),
                tmp_path / "even.onnx")
    _, fs = _findings(path, "kpu-t256", batch=2)
    f = fs["low_utilization"]
    b = f.evidence["batch_reaching_target"]
    assert b % 2 == 0 and "(Reshape)" in f.evidence["search_stopped"]
    assert f"batch {b} reaches 50.0%" in f.mitigation and "first" not in f.mitigation


def test_no_batch_advice_for_a_model_that_does_not_fit():
    _, fs = _findings(model_path("bert_base"), "kendryte-k210")
    f = fs["low_utilization"]
    assert f.evidence["batch_reaching_target"] is None
    assert f.mitigation.startswith("no larger batch could be analyzed (at batch 2: it needs")

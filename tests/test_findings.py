"""Findings: each rule's evidence is what an independent analysis of the what-if gives."""

import pytest
from builders import conv_relu, save
from conftest import model_path

from onnx_hwutil.analysis import Analyzer, Point, analyze
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
    [at_b, before] = [analyze(model_path("resnet18"), "xeon-8490h", n, s.precision)[0] for n in (b, b - 1)]
    assert at_b.compute_utilization >= 0.5 > before.compute_utilization
    assert ev["utilization_at_that_batch"] == pytest.approx(at_b.compute_utilization, rel=1e-12)
    assert f"batch {b} is the first" in fs["low_utilization"].mitigation


def test_batch_search_says_when_no_batch_fills_the_chip():
    s, fs = _findings(model_path("resnet50"), "h100-sxm5")
    ev = fs["low_utilization"].evidence
    assert ev["batch_reaching_target"] is None and ev["searched_up_to"] == MAX_BATCH
    best = analyze(model_path("resnet50"), "h100-sxm5", ev["best_batch"], s.precision)[0]
    assert ev["best_utilization"] == pytest.approx(best.compute_utilization, rel=1e-12)
    assert ev["best_utilization"] < 0.5
    assert "batch alone will not fill" in fs["low_utilization"].mitigation


def test_memory_bound_names_the_fusion_and_the_bytes_it_saves():
    s, fs = _findings(model_path("resnet50"), "xeon-8490h")
    f = fs["memory_bound"]
    assert f.evidence["memory_bound_share"] == s.bound_share["memory"] >= 0.3
    agg = analyze(model_path("resnet50"), "xeon-8490h", 1, s.precision, "aggressive")[0]
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


def test_fixed_batch_is_said_not_searched(tmp_path):
    path = save(conv_relu(batch=4), tmp_path / "fixed.onnx")
    [s] = analyze(path, "h100-sxm5")
    a = Analyzer()
    p = Point(path, "h100-sxm5", None, "auto", "runtime")
    fs = {f.rule: f for f in findings(a, p, a.run(p))}
    assert s.batch == 4
    assert fs["low_utilization"].evidence["batch_fixed"] is True
    assert "symbolic batch dim" in fs["low_utilization"].mitigation

"""Thresholds at, just under and just over their value (issue 21): findings and gates.

Findings are computed on schedules built here with exact times, so each share lands on the threshold
itself; the preset is `aggressive` (nothing stronger to try) so the rules run no what-if.
"""

import operator

import pytest
from builders import conv_relu, save

from onnx_hwutil.analysis import Analyzer, Point, WhatIf
from onnx_hwutil.findings import (
    IDLE_SHARE,
    MEMORY_BOUND_SHARE,
    OVERHEAD_SHARE,
    RULE_TABLE,
    TARGET_UTILIZATION,
    finding,
)
from onnx_hwutil.gates import parse_gate
from onnx_hwutil.hardware import load_spec
from onnx_hwutil.hardware.mapping import KernelTime, Schedule
from onnx_hwutil.hardware.rates import rates


def test_thresholds_are_the_documented_ones():
    # README's findings table and the seed report's "saturate" use these values
    assert (TARGET_UTILIZATION, MEMORY_BOUND_SHARE, OVERHEAD_SHARE, IDLE_SHARE) == (0.5, 0.3, 0.25, 0.25)


def _k(i, compute=0.0, memory=0.0, overhead=0.0, units=1, flops=1, dram=1):
    return KernelTime(i, f"k{i}", units, compute, memory, overhead, flops, dram, 0, 0, 0.0, 0.0, 0.0)


SPEC = load_spec("h100-sxm5")
RATES = rates(SPEC, "fp16")


def _rules(tmp_path, kernels):
    a = Analyzer()
    p = Point(save(conv_relu(), tmp_path / "m.onnx"), SPEC.name, 1, "fp16", "aggressive")
    s = Schedule(SPEC, RATES, 1, "aggressive", kernels)
    return WhatIf(a, p, s)


def _finding(rule, w):
    return finding(next(r for r in RULE_TABLE if r.id == rule), w)


@pytest.mark.parametrize(("memory_s", "expected"), [(3.0, True), (2.99, False), (3.01, True)])
def test_memory_bound_at_its_threshold(tmp_path, memory_s, expected):
    # memory-bound time / total: 3 / (3 + 7) = 0.3 exactly
    r = _rules(tmp_path, [_k(0, memory=memory_s), _k(1, compute=7.0)])
    assert r.s.bound_share["memory"] == pytest.approx(memory_s / (memory_s + 7.0), abs=1e-6)
    assert (_finding("memory_bound", r) is not None) is expected


@pytest.mark.parametrize(("overhead_s", "expected"), [(1.0, True), (0.999, False), (1.001, True)])
def test_overhead_bound_at_its_threshold(tmp_path, overhead_s, expected):
    # overhead / latency: 1 / (3 + 1) = 0.25 exactly
    r = _rules(tmp_path, [_k(0, compute=3.0, overhead=overhead_s)])
    assert (_finding("overhead_bound", r) is not None) is expected


@pytest.mark.parametrize(("units", "expected"), [(99, True), (100, False), (98, True)])
def test_idle_units_at_its_threshold(tmp_path, units, expected):
    # (132 - 99) / 132 = 0.25 exactly; 100 busy is 0.242, 98 busy 0.258
    r = _rules(tmp_path, [_k(0, compute=1.0, units=units)])
    assert (_finding("idle_units", r) is not None) is expected


def test_low_utilization_at_its_threshold(tmp_path):
    # attained / peak = flops / 1 s / 989.4e12: half the peak is no finding, one FLOP less is
    half = int(989.4e12 / 2)
    assert _finding("low_utilization", _rules(tmp_path, [_k(0, compute=1.0, flops=half)])) is None
    f = _finding("low_utilization", _rules(tmp_path, [_k(0, compute=1.0, flops=half - 1)]))
    assert f is not None and f.evidence["compute_utilization"] < 0.5


def test_below_ridge_at_the_ridge(tmp_path):
    # intensity = flops / DRAM bytes against 989.4e12 / 3.35e12 FLOP/B: on the ridge is not below it
    at = _rules(tmp_path, [_k(0, compute=1.0, flops=int(989.4e12), dram=int(3.35e12))])
    assert at.s.arithmetic_intensity == at.s.ridge_point and _finding("below_ridge", at) is None
    below = _rules(tmp_path, [_k(0, compute=1.0, flops=int(989.4e12), dram=int(3.35e12) + 1)])
    assert _finding("below_ridge", below) is not None


ENTRY = {"hardware": "h100-sxm5", "precision": "fp16", "batch": 1, "latency_s": 0.005,
         "units_allocated": {"mean": 10.0}, "findings": [], "energy_per_inference_j": 0.002,
         "energy_per_batch_j": 0.002, "coverage": {"uncosted_nodes": 0, "uncosted_node_share": 0.0,
                                                   "uncosted_mac_share_at_least": 0.0}}
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
       "!=": operator.ne}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("threshold", [5.0, 4.999, 5.001])
def test_every_gate_operator_at_under_and_over_the_value(op, threshold):
    # latency_ms is 5.0 here: each operator fails the entry exactly when its comparison holds
    gate = parse_gate(f"latency_ms{op}{threshold}", ENTRY)
    assert gate.value_of(ENTRY) == 5.0
    assert gate.fails(ENTRY) is OPS[op](5.0, threshold)


def test_gate_table_at_the_exact_value():
    # spelled out, so a `>` read as `>=` (or any swap) is caught by name
    expected = {"<": False, "<=": True, ">": False, ">=": True, "==": True, "!=": False}
    assert {op: parse_gate(f"latency_ms{op}5", ENTRY).fails(ENTRY) for op in OPS} == expected

"""Sweeps: every point equals the same point analyzed alone, in one process or several; failures carry on."""

import pytest
from conftest import model_path

from onnx_hwutil.analysis import analyze
from onnx_hwutil.sweep import points, sweep


def test_sweep_points_equal_single_analyses_and_workers_agree():
    pts = points([model_path("resnet18")], ["h100-sxm5", "tpu-v4"], [1, 8], ["fp16", "bf16"],
                 ["none", "runtime"])
    serial = sweep(pts, jobs=1)
    parallel = sweep(pts, jobs=2)
    assert serial == parallel and len(serial) == 16
    failed = [r for r in serial if not r["ok"]]
    assert {r["hardware"] for r in failed} == {"tpu-v4"} and len(failed) == 4  # TPU v4 has no fp16
    assert "tpu-v4 cannot run fp16" in failed[0]["error"]
    for r in serial:
        if r["ok"]:
            [alone] = analyze(r["model"], r["hardware"], r["batch"], r["precision"], r["fusion"])
            assert r["latency_s"] == pytest.approx(alone.latency_s, rel=1e-12)
            assert r["energy_j"] == pytest.approx(alone.energy["total_j"], rel=1e-12)

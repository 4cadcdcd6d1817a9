"""CI gates on analyze: tripped conditions exit 1 naming each failure, held ones exit 0, bad ones exit 2."""

from conftest import model_path
from typer.testing import CliRunner

from onnx_hwutil.cli import app


def _analyze(*gates):
    args = ["analyze", model_path("resnet18"), "--hw", "h100-sxm5,tpu-v4", "--batch", "1,8"]
    for g in gates:
        args += ["--fail-if", g]
    return CliRunner().invoke(app, args)


def test_gates_trip_and_list_every_failure():
    r = _analyze("latency_ms>0.0001", "compute_utilization<2")
    assert r.exit_code == 1
    line = r.stderr.strip()
    assert line.startswith("onnx-hwutil: error: gate failed: ")
    assert line.count("latency_ms>0.0001 on") == 4 and line.count("compute_utilization<2 on") == 4
    assert "tpu-v4 bf16 batch 8" in line


def test_gates_that_hold_pass():
    r = _analyze("latency_ms>1000", "memory_bandwidth_utilization>1", "units_mean<1")
    assert r.exit_code == 0, r.output


def test_bad_gates_are_input_errors():
    r = _analyze("latency_ms>>5")
    assert r.exit_code == 2 and "expected METRIC OP NUMBER" in r.stderr
    r = _analyze("speed>5")
    assert r.exit_code == 2 and "unknown metric 'speed'" in r.stderr and "latency_ms" in r.stderr

"""CI gates on analyze: tripped conditions exit 1 naming each failure, held ones exit 0, bad ones exit 2."""

import json

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


def test_gates_act_on_findings():
    r = _analyze("finding_low_utilization>0")  # the H100 at batch 1 and 8 is far below half its peak
    assert r.exit_code == 1 and "finding_low_utilization>0 on h100-sxm5 bf16 batch 1" in r.stderr
    assert _analyze("findings>20").exit_code == 0
    r = CliRunner().invoke(app, ["analyze", model_path("resnet18"), "--no-findings", "--fail-if",
                                 "findings>0"])
    assert r.exit_code == 2 and "--no-findings" in r.stderr


def test_findings_in_json_rows():
    # ViT-B/16: ResNet-50's runtime preset already folds what aggressive would (NCHWc Add+Relu into convs)
    r = CliRunner().invoke(app, ["analyze", model_path("vit_b_16"), "--hw", "xeon-8490h", "-f", "json"])
    [entry] = json.loads(r.stdout)
    rules = {f["rule"]: f for f in entry["findings"]}
    assert {"low_utilization", "memory_bound", "below_ridge"} <= set(rules)
    mb = rules["memory_bound"]
    assert mb["evidence"]["fusion_options"]["aggressive"]["saved_bytes"] > 0 and mb["mitigation"]

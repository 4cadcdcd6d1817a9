"""calibrate writes a spec that loads and changes predictions; validate runs a model and maps its kernels."""

import json

import pytest
import yaml
from builders import conv_relu, save
from conftest import model_path
from typer.testing import CliRunner

from onnx_hwutil.analysis import Analyzer, Point
from onnx_hwutil.cli import app
from onnx_hwutil.hardware import load_spec
from onnx_hwutil.validate import validate


@pytest.fixture(scope="module")
def host_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("cal") / "host.yaml"
    r = CliRunner().invoke(app, ["calibrate", "--quick", "--threads", "1", "-o", str(path)])
    assert r.exit_code == 0, r.output
    return str(path)


def test_calibrate_writes_a_valid_measured_spec(host_yaml):
    spec = load_spec(host_yaml)
    assert spec.kind == "cpu" and spec.calibration is not None
    t1 = spec.calibration["threads"][1]
    assert len(t1["gemm"]) >= 5 and len(t1["elementwise"]) >= 3 and 0 < t1["dispatch_s"] < 1e-3
    # measured rates are rates a CPU can attain: positive, and under the spec's own peak
    assert all(0 < row[3] <= spec.vector_ops_per_s["fp32"] * 1.05 for row in t1["gemm"])
    assert spec.sources["memory.dram_bandwidth_bytes_per_s"].source.startswith("measured by onnx-hwutil")
    with open(host_yaml) as f:
        assert yaml.safe_load(f)["calibration"]["source"].startswith("measured")


def test_calibration_changes_the_cpu_prediction(host_yaml):
    # Structure, not this machine's speed: the calibrated schedule uses the measured tables (every kernel
    # pays the measured dispatch time as its overhead) and the peak one does not.
    a = Analyzer()
    peak = a.run(Point(model_path("resnet18"), "host", 1, "fp32", "runtime", 1))
    measured = a.run(Point(model_path("resnet18"), host_yaml, 1, "fp32", "runtime", 1))
    dispatch = load_spec(host_yaml).calibration["threads"][1]["dispatch_s"]
    assert measured.calibrated and not peak.calibrated
    assert {k.overhead_s for k in measured.kernels} == {dispatch}
    assert {k.overhead_s for k in peak.kernels} == {5e-6}  # host's assumed per-kernel cost
    assert len(measured.kernels) == len(peak.kernels) and measured.latency_s != peak.latency_s
    assert any("calibrated rates for 1 threads" in n for n in measured.notes)


def test_validate_reports_both_numbers_and_maps_resnet18_kernels(host_yaml):
    v = validate(model_path("resnet18"), host_yaml, threads=1, runs=3)
    d = v.to_dict()
    assert 0 < d["measured_latency_s"] < 10 and 0 < d["predicted_latency_s"] < 10
    assert d["threads"] == 1 and d["runs"] == 3
    # every row names one of our fused kernels, with a prediction from the schedule itself
    predicted = {k.id: k.latency_s for k in v.schedule.kernels}
    assert all(r["id"] in predicted and r["predicted_s"] == predicted[r["id"]] for r in d["subgraphs"]
               if r["predicted_s"])
    assert d["kernel_time_coverage"] >= 0.9
    assert {"id", "predicted_s", "measured_s"} <= set(d["subgraphs"][0])


def test_validate_cli_on_a_small_model(tmp_path, host_yaml):
    path = save(conv_relu(), tmp_path / "m.onnx")
    r = CliRunner().invoke(app, ["validate", path, "--hw", host_yaml, "--batch", "2", "--runs", "3",
                                 "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "predicted" in r.stdout and "measured" in r.stdout
    assert "onnxruntime at a default session (ORT_ENABLE_ALL)" in r.stdout  # what `runtime` mirrors
    r = CliRunner().invoke(app, ["validate", path, "--hw", host_yaml, "--batch", "2", "--runs", "3",
                                 "--threads", "1", "--level", "extended", "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["ort_level"] == "extended", r.output
    r = CliRunner().invoke(app, ["validate", path, "--hw", host_yaml, "--level", "basic"])
    assert r.exit_code == 2 and "unknown onnxruntime level 'basic'" in r.stderr
    r = CliRunner().invoke(app, ["validate", path, "--hw", "h100-sxm5", "--batch", "2"])
    assert r.exit_code == 2 and "runs on this machine's CPU" in r.stderr


def test_calibration_measures_a_vector_rate_and_the_backend_prices_with_it(host_yaml, tmp_path):
    t1 = load_spec(host_yaml).calibration["threads"][1]
    assert t1["vector"] and all(0 < rate < 1e12 for _, rate in t1["vector"])
    # a Sigmoid-heavy model: its non-matrix time follows the measured table, not the spec's peak
    with open(host_yaml) as f:
        data = yaml.safe_load(f)
    slow = tmp_path / "slow.yaml"
    data["calibration"]["threads"]["1"]["vector"] = [[1, 1e6], [1e9, 1e6]]  # 1 MFLOP/s at every size
    slow.write_text(yaml.safe_dump(data))
    old = tmp_path / "old.yaml"
    del data["calibration"]["threads"]["1"]["vector"]  # a calibration written before the table: still loads
    old.write_text(yaml.safe_dump(data))
    a = Analyzer()
    k_slow = a.run(Point(model_path("resnet18"), str(slow), 1, "fp32", "none", 1))
    k_old = a.run(Point(model_path("resnet18"), str(old), 1, "fp32", "none", 1))
    relu = next(k for k in k_slow.kernels if k.label == "Relu")
    assert relu.vector_s == pytest.approx(relu.flops / 1e6, rel=1e-9)
    assert k_old.kernel(relu.id).vector_s < relu.vector_s / 1000


def test_an_int8_kernel_runs_at_the_measured_int8_rate(host_yaml, tmp_path):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    t1 = load_spec(host_yaml).calibration["threads"][1]
    assert len(t1["gemm_int8"]) == len(t1["gemm"])  # each shape measured both ways
    params = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
              numpy_helper.from_array(np.array(128, np.uint8), "zu"),
              numpy_helper.from_array(np.array(0, np.int8), "zi"),
              numpy_helper.from_array(np.ones((32, 16, 3, 3), np.int8), "w")]
    node = helper.make_node("QLinearConv", ["x", "s", "zu", "w", "s", "zi", "s", "zu"], ["y"],
                            kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 16, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 32, 28, 28])
    g = helper.make_graph([node], "q", [x], [y], params)
    m = save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "q.onnx")
    with open(host_yaml) as f:
        data = yaml.safe_load(f)
    rows = data["calibration"]["threads"]["1"]
    rows["gemm_int8"] = [[*r[:3], 1e8] for r in rows["gemm"]]  # 0.1 GFLOP/s at every shape
    slow = tmp_path / "slow.yaml"
    slow.write_text(yaml.safe_dump(data))
    [k] = Analyzer().run(Point(m, str(slow), None, "fp32", "runtime", 1)).kernels
    macs = 28 * 28 * 32 * 16 * 9
    assert k.compute_s - k.vector_s == pytest.approx(2 * macs / 1e8, rel=1e-9)


def test_a_quantized_elementwise_kernel_runs_at_the_measured_int8_vector_rate(host_yaml, tmp_path):
    """QLinearAdd and QLinearSigmoid are measured too (onnxruntime runs them on integers or a lookup table);
    a quantized kernel's non-matrix work is priced with that table, a float one's with the fp32 table."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    t1 = load_spec(host_yaml).calibration["threads"][1]
    assert t1["vector_int8"] and all(0 < rate < 1e12 for _, rate in t1["vector_int8"])
    params = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
              numpy_helper.from_array(np.array(128, np.uint8), "z")]
    nodes = [helper.make_node("QLinearAdd", ["x", "s", "z", "x", "s", "z", "s", "z"], ["a"],
                              domain="com.microsoft", name="qadd"),
             helper.make_node("DequantizeLinear", ["a", "s", "z"], ["f"], name="deq"),
             helper.make_node("Sigmoid", ["f"], ["y"], name="sig")]
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [64, 768])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 768])
    g = helper.make_graph(nodes, "q", [x], [y], params)
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)]
    m = save(helper.make_model(g, opset_imports=opsets), tmp_path / "qa.onnx")
    with open(host_yaml) as f:
        data = yaml.safe_load(f)
    rows = data["calibration"]["threads"]["1"]
    rows["vector"] = [[1, 1e6], [1e9, 1e6]]  # fp32: 1 MFLOP/s
    rows["vector_int8"] = [[1, 1e9], [1e9, 1e9]]  # int8: 1 GFLOP/s
    both = tmp_path / "both.yaml"
    both.write_text(yaml.safe_dump(data))
    del rows["vector_int8"]  # a calibration written before the table: quantized kernels take fp32's
    older = tmp_path / "older.yaml"
    older.write_text(yaml.safe_dump(data))
    a = Analyzer()
    kernels = {k.label: k for k in a.run(Point(m, str(both), None, "fp32", "none", 1)).kernels}
    assert kernels["QLinearAdd"].vector_s == pytest.approx(8 * 64 * 768 / 1e9, rel=1e-9)
    assert kernels["Sigmoid"].vector_s == pytest.approx(kernels["Sigmoid"].flops / 1e6, rel=1e-9)
    old = {k.label: k for k in a.run(Point(m, str(older), None, "fp32", "none", 1)).kernels}
    assert old["QLinearAdd"].vector_s == pytest.approx(8 * 64 * 768 / 1e6, rel=1e-9)

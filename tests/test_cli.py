"""The CLI's outputs: the JSON contract, CSV, tables, and the API giving the same numbers."""

import csv
import io
import json

from builders import conv_relu, save
from conftest import model_path
from typer.testing import CliRunner

import onnx_hwutil
from onnx_hwutil.cli import app

runner = CliRunner()


def test_profile_json_contract():
    r = runner.invoke(app, ["profile", model_path("resnet18"), "--batch", "1", "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["schema"] == "onnx-hwutil/2"
    assert d["model"]["opset"] == 17
    assert d["model"]["inputs"] == {"input": [1, 3, 224, 224]}
    assert set(d["totals"]) >= {"macs", "flops", "params", "weight_bytes", "activation_bytes", "dram_bytes",
                                "arithmetic_intensity", "peak_memory_bytes"}
    assert d["totals"]["macs"] == 1_814_073_344
    assert d["uncovered_ops"] == []
    node = d["nodes"][0]
    assert set(node) >= {"name", "op_type", "macs", "flops", "bytes_read", "bytes_written", "kind"}
    assert sum(n["macs"] for n in d["nodes"]) == d["totals"]["macs"]
    assert sum(n["bytes_read"] + n["bytes_written"] + n["weight_bytes"] for n in d["nodes"]) == \
        d["totals"]["dram_bytes"]
    # the API is the same computation
    api = onnx_hwutil.profile(model_path("resnet18"), batch=1).to_dict()
    assert api == d


def test_profile_table_and_csv(tmp_path):
    path = save(conv_relu(), tmp_path / "m.onnx")
    r = runner.invoke(app, ["profile", path, "--batch", "4", "--top", "2"])
    assert r.exit_code == 0
    assert "MACs" in r.stdout and "Conv" in r.stdout and "Top 2 nodes" in r.stdout
    assert f"{4 * 8 * 32 * 32 * 27:,}" in r.stdout
    out = tmp_path / "nodes.csv"
    r = runner.invoke(app, ["profile", path, "--batch", "4", "--format", "csv", "-o", str(out)])
    assert r.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [row["op_type"] for row in rows] == ["Conv", "Relu"]
    assert int(rows[0]["macs"]) == 4 * 8 * 32 * 32 * 27


def test_dim_binding_equals_batch(tmp_path):
    path = save(conv_relu(), tmp_path / "m.onnx")
    a = onnx_hwutil.profile(path, batch=3).totals
    b = onnx_hwutil.profile(path, dims={"N": 3}).totals
    c = onnx_hwutil.profile(path, shapes={"x": (3, 3, 32, 32)}).totals
    # batch 3 of Conv 3->8 k3 on 32x32: 3 x 8 x 32 x 32 outputs x 27 MACs
    assert a.macs == 3 * 8 * 32 * 32 * 27 == 663_552
    assert a == b == c


def test_analyze_plot_writes_a_roofline_per_result(tmp_path):
    r = CliRunner().invoke(app, ["analyze", model_path("resnet18"), "--hw", "h100-sxm5,tpu-v4", "--batch",
                                 "1,8", "--plot", str(tmp_path), "--no-findings"])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(f"roofline_{hw}_bf16_b{b}.{ext}" for hw in ("h100-sxm5", "tpu-v4") for b in (1, 8)
                           for ext in ("png", "svg"))

"""Regression gates for build pipelines (issue 17): `diff`, `analyze --baseline` and the JSON schema."""

import json
import pathlib

import jsonschema
import pytest
from builders import init, model, save, vi
from onnx import TensorProto as T
from onnx import helper
from typer.testing import CliRunner

from onnx_hwutil.cli import app
from onnx_hwutil.diff import diff

SCHEMA = pathlib.Path(__file__).resolve().parent.parent / "onnx_hwutil" / "schemas" / "analyze.schema.json"


def _net(width=8, extra=False, prefix=""):
    """x[N,3,32,32] -> Conv 3->width k3 -> Relu [-> Sigmoid] -> GlobalAveragePool."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              name=f"{prefix}conv"),
             helper.make_node("Relu", ["c"], ["r"], name=f"{prefix}relu")]
    last = "r"
    if extra:
        nodes.append(helper.make_node("Sigmoid", ["r"], ["s"], name=f"{prefix}gate"))
        last = "s"
    nodes.append(helper.make_node("GlobalAveragePool", [last], ["y"], name=f"{prefix}pool"))
    return model(nodes, [vi("x", T.FLOAT, ["N", 3, 32, 32])], [vi("y", T.FLOAT, ["N", width, 1, 1])],
                 [init("w", (width, 3, 3, 3))])


def test_a_model_diffed_with_itself_reports_no_change(tmp_path):
    path = save(_net(), tmp_path / "a.onnx")
    d = diff(path, path, ["h100-sxm5", "tpu-v4"])
    assert d["changed"] is False and d["kernels"] == [] and d["op_types"] == []
    assert d["nodes"]["matched_by_name"] == 3 and d["nodes"]["added"] == d["nodes"]["removed"] == []
    assert all(c["latency_s"]["ratio"] == 1.0 for c in d["chips"])
    r = CliRunner().invoke(app, ["diff", path, path])
    assert r.exit_code == 0 and r.stdout.startswith("No change")


def test_renamed_nodes_align_by_structure(tmp_path):
    a = save(_net(), tmp_path / "a.onnx")
    b = save(_net(prefix="/model/"), tmp_path / "b.onnx")
    d = diff(a, b, ["h100-sxm5"])
    assert d["nodes"]["matched_by_name"] == 0 and d["nodes"]["matched_by_structure"] == 3
    assert d["changed"] is False


def test_a_wider_layer_and_an_inserted_node(tmp_path):
    a = save(_net(8), tmp_path / "a.onnx")
    b = save(_net(16, extra=True, prefix="v2/"), tmp_path / "b.onnx")
    d = diff(a, b, ["h100-sxm5"])
    # the conv's MACs double: 8 -> 16 output channels of 32 x 32 x 27
    assert d["totals"]["macs"] == {"old": 8 * 1024 * 27, "new": 16 * 1024 * 27, "ratio": 2.0}
    changed = {c["new"]: c for c in d["nodes"]["changed"]}
    assert changed["v2/conv"]["old"] == "conv" and changed["v2/conv"]["macs"]["ratio"] == 2.0
    assert d["nodes"]["added"] == ["v2/gate"] and d["nodes"]["removed"] == []
    assert {r["op_type"] for r in d["op_types"]} == {"Conv", "Relu", "Sigmoid", "GlobalAveragePool"}
    sigmoid = next(r for r in d["op_types"] if r["op_type"] == "Sigmoid")
    assert sigmoid["count"] == {"old": 0, "new": 1, "ratio": None}
    statuses = sorted(k["status"] for k in d["kernels"])
    assert "changed" in statuses and d["changed"] is True
    r = CliRunner().invoke(app, ["diff", a, b, "-f", "markdown"])
    assert r.exit_code == 0 and r.stdout.startswith("## ") and "| MACs " in r.stdout and "+100.0%" in r.stdout
    r = CliRunner().invoke(app, ["diff", a, b, "-f", "json"])
    assert json.loads(r.stdout)["schema"] == "onnx-hwutil/2"


def test_unnamed_nodes_align_by_structure_not_position(tmp_path):
    # No node names: an inserted Conv+Relu is two added nodes, not four "changed" ones by shifted position
    def net(extra):
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["c"], ["r"])]
        last = "r"
        if extra:
            nodes += [helper.make_node("Conv", ["r", "w2"], ["c2"], kernel_shape=[1, 1]),
                      helper.make_node("Relu", ["c2"], ["r2"])]
            last = "r2"
        nodes.append(helper.make_node("GlobalAveragePool", [last], ["y"]))
        return model(nodes, [vi("x", T.FLOAT, [1, 3, 8, 8])], [vi("y", T.FLOAT, [1, 8, 1, 1])],
                     [init("w", (8, 3, 3, 3)), init("w2", (8, 8, 1, 1))])
    d = diff(save(net(False), tmp_path / "a.onnx"), save(net(True), tmp_path / "b.onnx"), ["h100-sxm5"])
    assert d["nodes"]["matched_by_name"] == 0 and len(d["nodes"]["added"]) == 2
    assert d["nodes"]["changed"] == [] and d["nodes"]["removed"] == []


def _analyze(path, *extra):
    return CliRunner().invoke(app, ["analyze", path, "--hw", "h100-sxm5,tpu-v4", "--batch", "1,2", *extra])


def test_relative_gates_against_a_saved_baseline(tmp_path):
    a = save(_net(8), tmp_path / "a.onnx")
    b = save(_net(16, extra=True), tmp_path / "b.onnx")
    base = tmp_path / "base.json"
    assert _analyze(a, "--no-findings", "-f", "json", "-o", str(base)).exit_code == 0
    # the same model passes any relative gate at +0%
    r = _analyze(a, "--no-findings", "--baseline", str(base), "--fail-if", "dram_bytes>+0%",
                 "--fail-if", "latency_ms>+0%")
    assert r.exit_code == 0, r.output
    # the wider one moves more bytes: every point fails, each named with both values
    r = _analyze(b, "--no-findings", "--baseline", str(base), "--fail-if", "dram_bytes>+0%")
    assert r.exit_code == 1
    old = json.loads(base.read_text())
    new = json.loads(_analyze(b, "--no-findings", "-f", "json").stdout)
    first = f"dram_bytes>+0% on h100-sxm5 bf16 batch 1: dram_bytes = {new[0]['dram_bytes']:.6g} " \
            f"(baseline {old[0]['dram_bytes']:.6g}, " \
            f"{100 * (new[0]['dram_bytes'] - old[0]['dram_bytes']) / old[0]['dram_bytes']:+.1f}%)"
    assert first in r.stderr and r.stderr.count("dram_bytes>+0% on") == 4
    # a threshold above the growth holds
    growth = max(100 * (n["dram_bytes"] - o["dram_bytes"]) / o["dram_bytes"]
                 for n, o in zip(new, old, strict=True))
    r = _analyze(b, "--no-findings", "--baseline", str(base), "--fail-if", f"dram_bytes>+{growth + 1:.0f}%")
    assert r.exit_code == 0


def test_a_baseline_for_another_run_is_bad_input(tmp_path):
    a = save(_net(8), tmp_path / "a.onnx")
    base = tmp_path / "base.json"
    _analyze(a, "--no-findings", "-f", "json", "-o", str(base))
    r = CliRunner().invoke(app, ["analyze", a, "--hw", "h100-sxm5", "--batch", "1", "--no-findings",
                                 "--baseline", str(base), "--fail-if", "latency_ms>+5%"])
    assert r.exit_code == 2 and "this run is h100-sxm5 bf16 batch 1 tensorrt" in r.stderr
    r = CliRunner().invoke(app, ["analyze", a, "--fail-if", "latency_ms>+5%"])
    assert r.exit_code == 2 and "needs --baseline" in r.stderr
    old = json.loads(base.read_text())
    for e in old:
        e["schema"] = "onnx-hwutil/1"
    base.write_text(json.dumps(old))
    r = _analyze(a, "--no-findings", "--baseline", str(base), "--fail-if", "latency_ms>+5%")
    assert r.exit_code == 2 and "regenerate the baseline" in r.stderr
    # a baseline without findings for a findings gate, or with a non-number where a number belongs
    fresh = json.loads(_analyze(a, "--no-findings", "-f", "json").stdout)
    base.write_text(json.dumps(fresh))
    r = _analyze(a, "--baseline", str(base), "--fail-if", "findings>+5%")
    assert r.exit_code == 2 and "the baseline has no findings" in r.stderr
    fresh[0]["latency_s"] = float("nan")
    base.write_text(json.dumps(fresh))
    r = _analyze(a, "--no-findings", "--baseline", str(base), "--fail-if", "latency_ms>+5%")
    assert r.exit_code == 2 and "not a finite number" in r.stderr
    base.write_text("{not json")
    r = _analyze(a, "--no-findings", "--baseline", str(base), "--fail-if", "latency_ms>+5%")
    assert r.exit_code == 2 and "not valid JSON" in r.stderr


def test_analyze_json_follows_its_published_schema(tmp_path):
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    path = save(_net(8), tmp_path / "a.onnx")
    r = _analyze(path, "--per-subgraph", "-f", "json")
    assert r.exit_code == 0
    entries = json.loads(r.stdout)
    jsonschema.validate(entries, schema)
    assert {e["schema"] for e in entries} == {schema["items"]["properties"]["schema"]["const"]}
    # the schema is strict: an unknown or a missing field is a change of layout
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([entries[0] | {"energy_j": 1.0}], schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate([{k: v for k, v in entries[0].items() if k != "coverage"}], schema)

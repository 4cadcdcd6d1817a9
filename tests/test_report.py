"""`onnx-hwutil report`: Markdown, HTML and plots, every number from the report's own JSON."""

import base64
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from builders import OPSET, T, conv_relu, helper, init, model, save, vi
from conftest import ROOT, model_path
from typer.testing import CliRunner

from onnx_hwutil.analysis import analyze
from onnx_hwutil.cli import app


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.tables, self.headings, self._h = [], 0, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        self.tables += tag == "table"
        self._h = tag if tag in ("h1", "h2") else None

    def handle_data(self, data):
        if self._h:
            self.headings.append(data.strip())
            self._h = None


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    r = CliRunner().invoke(app, ["report", model_path("resnet18"), model_path("mobilenet_v2"), "--hw",
                                 "h100-sxm5,tpu-v4", "--sweep-batch", "1,4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    return out


def test_html_parses_and_embeds_every_plot(report):
    page = _Page()
    page.feed((report / "report.html").read_text())
    # a roofline per model and chip, utilization, the batch sweep, fusion per model
    assert len(page.images) == 4 + 1 + 1 + 2
    for img in page.images:
        head, data = img["src"].split(",", 1)
        assert head == "data:image/png;base64"
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    assert page.headings[:4] == ["Hardware utilization: resnet18 vs mobilenet_v2", "Summary",
                                 "Model characteristics", "Hardware"]
    for h in ("Batch sweep", "Findings and recommendations", "Energy", "How far to trust these numbers"):
        assert h in page.headings
    assert page.tables >= 8


def test_markdown_links_files_that_exist_in_both_formats(report):
    md = (report / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 8
    for link in links:
        assert (report / link).is_file() and (report / link.replace(".png", ".svg")).is_file()


def test_numbers_come_from_the_json_and_match_analyze(report):
    study = json.loads((report / "report.json").read_text())
    md = (report / "report.md").read_text()
    assert study["schema"] == "onnx-hwutil/report/1"
    r = next(r for r in study["results"] if r["model"] == "mobilenet_v2" and r["hardware"] == "tpu-v4")
    [alone] = analyze(model_path("mobilenet_v2"), "tpu-v4", 1)
    assert r["latency_s"] == pytest.approx(alone.latency_s, rel=1e-12)
    assert f"{r['latency_s'] * 1e3:.3f} ms" in md
    assert len(study["sweep"]) == 2 * 2 * 2 and all(row["ok"] for row in study["sweep"])
    # each chip's fusion what-ifs: none, its own runtime's rules (auto), aggressive
    assert {(f["model"], f["hardware"], f["fusion"]) for f in study["fusion"]} == {
        (m, hw, p) for m in ("resnet18", "mobilenet_v2")
        for hw, own in (("h100-sxm5", "tensorrt"), ("tpu-v4", "xla")) for p in ("none", own, "aggressive")}
    rows = [f for r in study["results"] for f in r["findings"]]
    assert rows and all(set(f) == {"rule", "hardware", "finding", "evidence", "mitigation"} for f in rows)
    for f in rows:
        assert f["finding"] in md


def test_one_model_with_a_fixed_batch(tmp_path):
    # The file fixes batch 1: its own tables run at 1, and the batch sweep re-batches it in memory.
    path = save(conv_relu(batch=1), tmp_path / "fixed.onnx")
    before = Path(path).read_bytes()
    r = CliRunner().invoke(app, ["report", path, "--hw", "xeon-8490h", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    study = json.loads((tmp_path / "out" / "report.json").read_text())
    assert study["results"][0]["batch"] == 1 and not study["models"][0]["batch_fixed"]
    sweep = {r["batch"]: r for r in study["sweep"] if r["ok"]}
    assert sorted(sweep) == [1, 2, 4, 8, 16, 32, 64]
    assert sweep[8]["flops"] == 8 * sweep[1]["flops"]
    assert os.path.exists(tmp_path / "out" / "batch_sweep.png")
    assert Path(path).read_bytes() == before


def test_report_input_errors(tmp_path):
    r = CliRunner().invoke(app, ["report", model_path("resnet18"), model_path("resnet50"),
                                 model_path("mobilenet_v2"), "-o", str(tmp_path)])
    assert r.exit_code == 2 and "one or two models" in r.stderr
    r = CliRunner().invoke(app, ["report", model_path("resnet18"), "--fusion", "max", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "unknown fusion preset 'max'" in r.stderr


def test_uncovered_ops_are_named_and_counts_not_called_exact(tmp_path):
    path = save(model([helper.make_node("MatMul", ["x", "w"], ["h"]),
                       helper.make_node("Foo", ["h"], ["y"], domain="custom.x")],
                      [vi("x", T.FLOAT, ["N", 64])], [vi("y", T.FLOAT, ["N", 64])], [init("w", (64, 64))],
                      opset=[*OPSET, helper.make_opsetid("custom.x", 1)],
                      value_info=[vi("h", T.FLOAT, ["N", 64])]),
                tmp_path / "custom.onnx")
    r = CliRunner().invoke(app, ["report", path, model_path("resnet18"), "--hw", "tpu-v4", "--sweep-batch",
                                 "1,2", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    md = (tmp_path / "out" / "report.md").read_text()
    assert "exact counts **except**" in md and "custom: UNCOVERED ops" in md and "custom.x::Foo x1" in md


def test_a_model_that_computes_nothing_beside_one_that_does(tmp_path):
    path = save(model([helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 1])],
                      [vi("x", T.FLOAT, ["N", 64, 128])], [vi("y", T.FLOAT, ["N", 128, 64])]),
                tmp_path / "t.onnx")
    r = CliRunner().invoke(app, ["report", path, model_path("resnet18"), "--hw", "h100-sxm5", "--sweep-batch",
                                 "1,2", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    study = json.loads((tmp_path / "out" / "report.json").read_text())
    assert study["results"][0]["flops"] == 0 and study["results"][0]["findings"] == []
    assert "x the FLOPs of" not in (tmp_path / "out" / "report.md").read_text()


def test_two_chips_of_one_name_are_refused(tmp_path):
    spec = tmp_path / "mine.yaml"
    spec.write_text((ROOT / "hwspecs" / "h100-sxm5.yaml").read_text())
    r = CliRunner().invoke(app, ["report", model_path("resnet18"), "--hw", f"{spec},h100-sxm5", "-o",
                                 str(tmp_path / "out")])
    assert r.exit_code == 2 and "are both named 'h100-sxm5'" in r.stderr

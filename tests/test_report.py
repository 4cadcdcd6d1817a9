"""`onnx-hwutil report`: Markdown, HTML and plots, every number from the report's own JSON."""

import base64
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from builders import conv_relu, save
from conftest import model_path
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
    assert {(f["model"], f["fusion"]) for f in study["fusion"]} == {
        (m, p) for m in ("resnet18", "mobilenet_v2") for p in ("none", "runtime", "aggressive")}
    rows = [f for r in study["results"] for f in r["findings"]]
    assert rows and all(set(f) == {"rule", "hardware", "finding", "evidence", "mitigation"} for f in rows)
    for f in rows:
        assert f["finding"] in md


def test_one_model_with_a_fixed_batch(tmp_path):
    path = save(conv_relu(batch=2), tmp_path / "fixed.onnx")
    before = Path(path).read_bytes()
    r = CliRunner().invoke(app, ["report", path, "--hw", "xeon-8490h", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    study = json.loads((tmp_path / "out" / "report.json").read_text())
    assert study["sweep"] == [] and study["results"][0]["batch"] == 2
    assert "fixes the batch at 2" in " ".join(study["notes"])
    assert "No model here has a symbolic batch dim" in (tmp_path / "out" / "report.md").read_text()
    assert not os.path.exists(tmp_path / "out" / "batch_sweep.png")
    assert Path(path).read_bytes() == before


def test_report_input_errors(tmp_path):
    r = CliRunner().invoke(app, ["report", model_path("resnet18"), model_path("resnet50"),
                                 model_path("mobilenet_v2"), "-o", str(tmp_path)])
    assert r.exit_code == 2 and "one or two models" in r.stderr
    r = CliRunner().invoke(app, ["report", model_path("resnet18"), "--fusion", "max", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "unknown fusion preset 'max'" in r.stderr

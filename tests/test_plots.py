"""Plots render headless from the JSON results, with one mark per kernel, line per series, bar per value."""

import xml.etree.ElementTree as ET
from pathlib import Path

from conftest import model_path
from matplotlib.collections import PathCollection

from onnx_hwutil.analysis import analyze
from onnx_hwutil.report import plots
from onnx_hwutil.sweep import points, sweep


def _entry(model="resnet18", hw="h100-sxm5", **kw):
    [s] = analyze(model_path(model), hw, 1, **kw)
    return s.to_dict(per_subgraph=True)


def _scatters(fig):
    return [c for c in fig.axes[0].collections if isinstance(c, PathCollection) and len(c.get_offsets())]


def test_roofline_has_a_point_per_kernel_and_one_for_the_model():
    e = _entry()
    fig = plots.roofline(e)
    kernels, model = _scatters(fig)
    shown = [k for k in e["subgraphs"] if k["flops"] and k["dram_bytes"]]
    assert len(kernels.get_offsets()) == len(shown) == 23  # every ResNet-18 kernel computes and reads DRAM
    [(x, y)] = model.get_offsets()
    assert x == e["arithmetic_intensity"] and y == e["attained_ops_per_s"]
    sizes = kernels.get_sizes()
    slowest = max(range(len(shown)), key=lambda i: shown[i]["latency_s"])
    assert sizes[slowest] == max(sizes)  # area follows time
    roof, ridge = fig.axes[0].lines
    assert max(roof.get_ydata()) == e["peak_ops_per_s"]
    assert list(ridge.get_xdata()) == [e["ridge_point"]] * 2


def test_roofline_counts_the_kernels_it_cannot_place():
    e = _entry("vit_b_16", "tpu-v4")
    fig = plots.roofline(e)
    kernels, _ = _scatters(fig)
    hidden = [k for k in e["subgraphs"] if not (k["flops"] and k["dram_bytes"])]
    assert hidden and len(kernels.get_offsets()) == len(e["subgraphs"]) - len(hidden)
    assert any(f"{len(hidden)} kernels with no FLOPs or no DRAM traffic" in t.get_text()
               for t in fig.axes[0].texts)


def test_batch_curves_have_a_line_per_chip_and_a_point_per_batch():
    rows = sweep(points([model_path("resnet18")], ["h100-sxm5", "tpu-v4", "kpu-t256"], [1, 2, 4, 8],
                        ["auto"], ["runtime"]))
    fig = plots.batch_curves(rows)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert len(ax.lines) == 3 and all(list(line.get_xdata()) == [1, 2, 4, 8] for line in ax.lines)
    lat = {line.get_label(): line.get_ydata() for line in fig.axes[0].lines}
    h100 = [r["latency_s"] * 1e3 for r in rows if r["hardware"] == "h100-sxm5"]
    assert list(lat["h100-sxm5"]) == h100


def test_bars_across_chips_and_presets():
    entries = [_entry(m, hw) | {"model": m} for m in ("resnet18", "mobilenet_v2")
               for hw in ("h100-sxm5", "tpu-v4", "xeon-8490h")]
    fig = plots.utilization_bars(entries)
    assert [len(ax.patches) for ax in fig.axes] == [6, 6, 6]
    assert fig.axes[0].patches[0].get_height() == 100 * entries[0]["compute_utilization"]
    presets = [_entry("resnet18", hw, fusion=f) for hw in ("h100-sxm5", "tpu-v4") for f in
               ("none", "runtime", "aggressive")]
    fig = plots.fusion_bars(presets)
    assert [len(ax.patches) for ax in fig.axes] == [6, 6, 6]
    # runtime (ORT_ENABLE_ALL: residual Add and Relu folded into the convs) and aggressive both give 23
    assert sorted(p.get_height() for p in fig.axes[0].patches) == [23, 23, 23, 23, 48, 48]


def test_saved_files_are_valid_and_reproducible(tmp_path):
    fig = plots.roofline(_entry())
    png, svg = plots.save(fig, tmp_path / "out", "roof")
    first = Path(png).read_bytes()
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert ET.parse(svg).getroot().tag.endswith("svg")
    png2, svg2 = plots.save(plots.roofline(_entry()), tmp_path / "again", "roof")
    assert Path(png2).read_bytes() == first and Path(svg2).read_text() == Path(svg).read_text()


def test_batch_curves_with_many_series_keep_their_axes():
    rows = [{"model": f"m{i % 3}", "hardware": f"chip{i}", "precision": "fp16", "fusion": "none", "batch": b,
             "latency_s": 1e-3 * b, "throughput_per_s": 1e3, "compute_utilization": 0.1 * (i % 9)}
            for i in range(64) for b in (1, 2, 4)]
    fig = plots.batch_curves(rows)
    assert all(len(ax.lines) == 64 for ax in fig.axes)
    assert all(ax.get_position().height > 0.2 for ax in fig.axes)  # the legend grew the figure instead
    assert len({line.get_color() for line in fig.axes[0].lines}) == 20  # tab20 beyond ten series

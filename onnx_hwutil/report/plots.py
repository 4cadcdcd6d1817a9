"""Plots, drawn from the JSON the CLI prints (never from live objects), so a plot and a table cannot disagree.

matplotlib's object API (Figure, no pyplot): no global state, no display needed, safe in worker processes.
Margins are fixed rather than solved by a layout engine, which would double the time of every save.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict

import matplotlib as mpl
from matplotlib.figure import Figure

from ..errors import HwUtilError
from .units import si

BOUND_COLORS = {"compute": "tab:blue", "memory": "tab:red", "overhead": "tab:gray"}
FORMATS = ("png", "svg")


def _label(e: dict) -> str:
    model = f"{e['model']}, " if e.get("model") else ""
    return f"{model}{e['hardware']}, {e['precision']}, batch {e['batch']}, fusion {e['fusion']}"


def roofline_points(entry: dict) -> tuple[list[dict], list[dict]]:
    """Kernels that have a place on a log-log roofline (FLOPs and DRAM traffic both > 0), and those that
    do not (pure data movement, or everything served on chip)."""
    subs = entry.get("subgraphs")
    if subs is None:
        raise HwUtilError("a roofline needs per-kernel results (analyze --per-subgraph)")
    shown = [k for k in subs if k["flops"] > 0 and k["dram_bytes"] > 0]
    return shown, [k for k in subs if not (k["flops"] > 0 and k["dram_bytes"] > 0)]


def roofline(entry: dict) -> Figure:
    """The chip's roofline at the entry's precision; each kernel a point of area proportional to its time,
    colored by what bounds it; the whole model a star."""
    shown, hidden = roofline_points(entry)
    peak, bw = entry["peak_ops_per_s"], entry["dram_bandwidth_bytes_per_s"]
    ridge = peak / bw
    total = entry["latency_s"] or 1.0
    fig = Figure(figsize=(7.5, 5))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.11, top=0.93)
    ax = fig.add_subplot()
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / DRAM byte)",
           ylabel="attained (FLOP/s)", title=f"Roofline: {_label(entry)}")
    xs = [k["flops"] / k["dram_bytes"] for k in shown]
    ys = [k["flops"] / k["latency_s"] for k in shown]
    ai = entry.get("arithmetic_intensity")
    lo = min([*xs, ridge, ai or ridge]) / 4
    hi = max([*xs, ridge, ai or ridge]) * 4
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(grid, [min(peak, x * bw) for x in grid], color="black", lw=1.5,
            label=f"roof: {si(peak, 'FLOP/s')} peak, {si(bw, 'B/s')} DRAM")
    ax.axvline(ridge, color="black", ls=":", lw=0.8)
    # the label goes on the side of the line with room for it, so it is never cut off at the edge
    left = math.log(ridge / lo) > 0.6 * math.log(hi / lo)
    ax.annotate(f"ridge {ridge:.3g} FLOP/B", (ridge, peak), textcoords="offset points",
                xytext=(-4 if left else 4, -12), ha="right" if left else "left", fontsize=8)
    ax.scatter(xs, ys, s=[15 + 1500 * k["latency_s"] / total for k in shown],
               c=[BOUND_COLORS[k["bound"]] for k in shown], alpha=0.6, edgecolors="none")
    for bound, color in BOUND_COLORS.items():  # legend entries for the kernel colors
        ax.scatter([], [], c=color, s=30, label=f"kernel, {bound}-bound")
    if ai:
        ax.scatter([ai], [entry["attained_ops_per_s"]], marker="*", s=250, c="gold", edgecolors="black",
                   zorder=3,
                   label=f"whole model: {ai:.3g} FLOP/B, {si(entry['attained_ops_per_s'], 'FLOP/s')}")
    if not entry["subgraphs"]:
        ax.text(0.01, 0.01, "no kernel runs: every node is a view, a shape computation or folded",
                transform=ax.transAxes, fontsize=7)
    elif hidden:
        share = sum(k["latency_s"] for k in hidden) / total
        ax.text(0.01, 0.01, f"{len(hidden)} kernels with no FLOPs or no DRAM traffic not shown "
                f"({100 * share:.1f}% of the time)", transform=ax.transAxes, fontsize=7)
    ax.set_ylim(min([*ys, peak]) / 10, peak * 3)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, which="major", alpha=0.3)
    return fig


def batch_curves(rows: list[dict]) -> Figure:
    """Latency, throughput and compute utilization against batch: one line per model, chip, precision and
    fusion preset (sweep rows or report JSON; failed points are left out)."""
    keys = ("model", "hardware", "precision", "fusion")
    lines: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r.get("ok", True):
            lines[tuple(r.get(k, "") for k in keys)].append(r)
    varying = [i for i in range(len(keys)) if len({k[i] for k in lines}) > 1] or [1]
    batches = sorted({r["batch"] for pts in lines.values() for r in pts})
    legend_rows = -(-len(lines) // 4)
    # The legend sits below the axes: the figure grows by its height, so the axes keep theirs.
    height = 3.8 + 0.22 * legend_rows
    fig = Figure(figsize=(13, height))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=(0.55 + 0.22 * legend_rows) / height,
                        top=1 - 0.35 / height, wspace=0.25)
    colors = mpl.colormaps["tab10" if len(lines) <= 10 else "tab20"].colors
    metrics = [("latency_s", "latency per batch (ms)", 1e3, "log"),
               ("throughput_per_s", "throughput (inferences/s)", 1, "log"),
               ("compute_utilization", "compute utilization (%)", 100, "linear")]
    styles = ["-", "--", ":", "-."]
    models = sorted({k[0] for k in lines})
    for ax, (metric, title, scale, yscale) in zip(axes, metrics, strict=True):
        for n, (key, pts) in enumerate(sorted(lines.items())):
            # a log axis has no place for zero (a model with no kernel has no latency)
            pts = sorted((r for r in pts if r[metric] > 0 or yscale == "linear"), key=lambda r: r["batch"])
            if not pts:
                continue
            ax.plot([r["batch"] for r in pts], [r[metric] * scale for r in pts], marker="o", ms=3,
                    ls=styles[models.index(key[0]) % len(styles)], color=colors[n % len(colors)],
                    label=", ".join(key[i] for i in varying))
        ax.set_xscale("log", base=2)
        ax.set(yscale=yscale if ax.lines else "linear", xlabel="batch", title=title)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    return fig


def _grouped(ax, groups: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        ax.bar([g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))], values, width,
               label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)


def utilization_bars(entries: list[dict]) -> Figure:
    """Compute and memory-bandwidth utilization and the share of units allocated, per chip (and model)."""
    chips = list(dict.fromkeys(e["hardware"] for e in entries))
    models = list(dict.fromkeys(e.get("model", "") for e in entries))
    at = {(e.get("model", ""), e["hardware"]): e for e in entries}
    fig = Figure(figsize=(13, 4.2))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.22, top=0.92, wspace=0.25)
    metrics = [("compute utilization (%)", lambda e: 100 * e["compute_utilization"]),
               ("memory bandwidth utilization (%)", lambda e: 100 * e["memory_bandwidth_utilization"]),
               ("units allocated, time-weighted (% of chip)",
                lambda e: 100 * e["units_allocated"]["mean"] / e["units_allocated"]["total"])]
    for ax, (title, fn) in zip(axes, metrics, strict=True):
        _grouped(ax, chips, {m or "model": [fn(at[(m, c)]) if (m, c) in at else 0 for c in chips]
                             for m in models})
        ax.set_title(title, fontsize=10)
    if len(models) > 1:
        axes[0].legend(fontsize=8)
    return fig


def fusion_bars(entries: list[dict]) -> Figure:
    """Kernels, DRAM traffic and latency per chip under each fusion preset: the before and after."""
    chips = list(dict.fromkeys(e["hardware"] for e in entries))
    presets = list(dict.fromkeys(e["fusion"] for e in entries))
    at = {(e["fusion"], e["hardware"]): e for e in entries}
    fig = Figure(figsize=(13, 4.2))
    axes = fig.subplots(1, 3)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.25, top=0.92, wspace=0.25)
    metrics = [("kernels launched", lambda e: e["kernels"]),
               ("DRAM traffic (MiB)", lambda e: e["dram_bytes"] / 2**20),
               ("latency (ms)", lambda e: e["latency_s"] * 1e3)]
    for ax, (title, fn) in zip(axes, metrics, strict=True):
        _grouped(ax, chips, {f"fusion {p}": [fn(at[(p, c)]) if (p, c) in at else 0 for c in chips]
                             for p in presets})
        ax.set_title(title, fontsize=10)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=len(presets), fontsize=8,
               frameon=False)
    return fig


def ensure_dir(directory: str) -> None:
    """Create the output directory up front, so a bad path fails before the work, not after it."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise HwUtilError(f"{directory}: cannot create the directory: {e.strerror}") from None
    if not os.access(directory, os.W_OK):
        raise HwUtilError(f"{directory}: the directory is not writable")


def save(fig: Figure, directory: str, name: str, formats: tuple[str, ...] = FORMATS) -> list[str]:
    """Write `name.png` and `name.svg`; metadata without dates, so the same input writes the same files."""
    ensure_dir(directory)
    paths = []
    for fmt in formats:
        path = os.path.join(directory, f"{name}.{fmt}")
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        with mpl.rc_context({"svg.hashsalt": "onnx-hwutil"}):
            try:
                fig.savefig(path, format=fmt, dpi=110, metadata=meta)
            except OSError as e:
                raise HwUtilError(f"{path}: cannot write: {e.strerror}") from None
        paths.append(path)
    return paths

"""Cross-check the TPU backend's systolic-array cycle model against SCALE-Sim, layer by layer.

For every Conv and Gemm node of a model (batch 1) this computes the cycles one weight-stationary 128x128
array needs with our model (`TpuBackend`: folds = ceil(K/rows) * ceil(N/cols), each `fold_cycles(M)` long)
and with SCALE-Sim (https://github.com/scalesim-project/SCALE-Sim), an independent cycle-level simulator,
configured as a single 128x128 array, dataflow 'ws', SRAMs far larger than any layer and bandwidth
estimated (CALC mode), so memory never stalls and the cycles compared are compute cycles only.

Both sides see the same layers: the SCALE-Sim topology rows are derived from the nodes the profile costs.
A Conv becomes one conv row whose IFMAP size is the padded input extent the ONNX output actually reads,
(Hout - 1) * stride + kernel, so SCALE-Sim's ofmap (ceil((H - F + S) / S)) equals the ONNX output even where
the padded input has an unused trailing row (e.g. ResNet's 7x7 s2 conv: 230 padded, 229 read, 112 out).
A Gemm becomes a 1x1 "conv" on a 1 x M IFMAP with K channels and N filters. Grouped, dilated, 3-D and
unequal-stride convs have no SCALE-Sim conv row and are skipped with a note.

SCALE-Sim runs in its own virtual environment, never in this project's interpreter:

    python3 -m venv /work/scalesim-venv
    /work/scalesim-venv/bin/pip install scalesim 'numpy<2.4'

Run (prints one row per layer, totals, errors, and PASS/FAIL against the targets; always exits 0):

    python scripts/compare_scalesim.py [--model models/resnet18.onnx] \
        [--scalesim-python /work/scalesim-venv/bin/python] [--layer-target 0.10] [--total-target 0.05]

Besides our model, the table shows SCALE-Sim's own weight-stationary formula (read from
scalesim/compute/systolic_compute_ws.py) evaluated in closed form, as a check that the simulator run and the
formula agree.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from math import ceil, prod

from tabulate import tabulate

import onnx_hwutil
from onnx_hwutil.hardware import load_spec
from onnx_hwutil.hardware.backends import TpuBackend
from onnx_hwutil.hardware.rates import rates

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRAM_KB = 1 << 20  # 1 GiB per SRAM: no layer comes close, so SCALE-Sim never stalls on memory

CONFIG = """\
[general]
run_name = onnx_hwutil

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {sram}
FilterSramSzkB = {sram}
OfmapSramSzkB = {sram}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = ws
Bandwidth = 10
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False
"""

TOPO_HEADER = (
    "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,"
)
LAYOUT_HEADER = "Layer name,"  # no custom layouts: SCALE-Sim only needs the file to exist

# Runs inside the SCALE-Sim venv: argv = config, topology, layout, output folder.
DRIVER = """\
import sys
from scalesim.scale_sim import scalesim
cfg, topo, layout, out = sys.argv[1:5]
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout)
s.run_scale(top_path=out)
"""


@dataclass
class Layer:
    name: str
    op: str
    m: int
    n: int
    k: int
    ours: int
    formula: int  # SCALE-Sim's WS cycles in closed form
    row: list  # SCALE-Sim conv topology row: H, W, Fh, Fw, C, Nf, S
    scalesim: int | None = None


def _ints(v, n: int, default: int) -> list[int]:
    return [int(x) for x in v] if v is not None else [default] * n


def topology_row(node, graph) -> tuple[list | None, str]:
    """SCALE-Sim conv row (IFMAP H, W, Fh, Fw, Channels, Filters, Stride) of a Conv/Gemm, or why none."""
    if node.op_type == "Gemm":
        a = graph.tensor(node.inputs[0]).shape
        out = graph.tensor(node.outputs[0]).shape
        k = a[0] if node.attr("transA", 0) else a[1]
        return [1, out[0], 1, 1, k, out[1], 1], ""
    x = graph.tensor(node.inputs[0]).shape
    w = graph.tensor(node.inputs[1]).shape
    y = graph.tensor(node.outputs[0]).shape
    if len(w) not in (3, 4):
        return None, f"{len(w) - 2}-D conv"
    spatial = len(w) - 2
    if int(node.attr("group", 1)) != 1:
        return None, f"grouped conv (group={node.attr('group')}): SCALE-Sim has no groups"
    if any(d != 1 for d in _ints(node.attr("dilations"), spatial, 1)):
        return None, "dilated conv: SCALE-Sim has no dilation"
    strides = _ints(node.attr("strides"), spatial, 1)
    if len(set(strides)) != 1:
        return None, f"unequal strides {strides}: SCALE-Sim takes one stride"
    if y[0] != 1:
        return None, f"batch {y[0]}: SCALE-Sim conv rows have no batch"
    kernel = list(w[2:]) + [1] * (2 - spatial)
    outs = list(y[2:]) + [1] * (2 - spatial)
    s = strides[0]
    # The padded input extent the output reads; SCALE-Sim's ofmap = ceil((H - F + S) / S) gives back `outs`.
    h, wd = ((o - 1) * s + f for o, f in zip(outs, kernel, strict=True))
    assert x[1] == w[1], "ungrouped conv: input channels = weight channels"
    return [h, wd, kernel[0], kernel[1], w[1], w[0], s], ""


def scalesim_formula(m: int, n: int, k: int, rows: int, cols: int) -> int:
    """SCALE-Sim v3 WS (systolic_compute_ws.py): ceil(Sr/R) * ceil(Sc/C) folds, each 2R + C + T - 2
    demand lines (filter: R load + R + C + T - 2 gap; ifmap: R + T + C - 1, skewed + R - 1; ofmap:
    2R - 1 + T, skewed + C - 1). The reported cycle is the index of the last line: one less in total."""
    return ceil(k / rows) * ceil(n / cols) * (2 * rows + cols + m - 2) - 1


def _run_chunk(python: str, chunk: list[tuple[int, Layer]], rows: int, cols: int) -> list[dict]:
    """One SCALE-Sim run over a topology of these layers (one row each), in a temp dir; its compute report."""
    with tempfile.TemporaryDirectory(prefix="scalesim_") as tmp:
        cfg, topo, layout = (os.path.join(tmp, f) for f in ("ws.cfg", "topology.csv", "layout.csv"))
        with open(cfg, "w") as f:
            f.write(CONFIG.format(rows=rows, cols=cols, sram=SRAM_KB))
        with open(topo, "w") as f:
            f.write(TOPO_HEADER + "\n")
            for i, lay in chunk:
                f.write(", ".join([f"L{i}", *map(str, lay.row)]) + ",\n")
        with open(layout, "w") as f:
            f.write(LAYOUT_HEADER + "\n")
        out = os.path.join(tmp, "out")
        r = subprocess.run([python, "-c", DRIVER, cfg, topo, layout, out], cwd=tmp, capture_output=True,
                           text=True)
        if r.returncode != 0:
            raise RuntimeError(f"SCALE-Sim failed ({python}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        with open(os.path.join(out, "onnx_hwutil", "COMPUTE_REPORT.csv")) as f:
            return [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def run_scalesim(python: str, layers: list[Layer], rows: int, cols: int, jobs: int) -> None:
    """Fill in each layer's SCALE-Sim compute cycles; the layers are split over `jobs` parallel runs."""
    chunks = [list(enumerate(layers))[j::jobs] for j in range(jobs)]
    chunks = [c for c in chunks if c]
    with ThreadPoolExecutor(len(chunks)) as pool:
        reports = list(pool.map(lambda c: _run_chunk(python, c, rows, cols), chunks))
    for chunk, rep in zip(chunks, reports, strict=True):
        assert len(rep) == len(chunk), f"SCALE-Sim reported {len(rep)} layers for {len(chunk)}"
        for (_, lay), row in zip(chunk, rep, strict=True):
            # v3 reports "Total Cycles" (compute, stalls included) and "Stall Cycles"; older versions
            # report "Compute cycles" directly.
            if "Compute cycles" in row:
                lay.scalesim = int(float(row["Compute cycles"]))
                continue
            stalls = int(float(row["Stall Cycles"]))
            lay.scalesim = int(float(row["Total Cycles"])) - stalls
            if stalls:
                print(f"note: {lay.name}: {stalls} stall cycles (removed)")


def _err(a: int, b: int) -> float:
    return abs(a - b) / b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "resnet18.onnx"))
    ap.add_argument("--scalesim-python", default="/work/scalesim-venv/bin/python")
    ap.add_argument("--spec", default="tpu-v4")
    ap.add_argument("--layer-target", type=float, default=0.10)
    ap.add_argument("--total-target", type=float, default=0.05)
    ap.add_argument("--jobs", type=int, default=min(os.cpu_count() or 1, 8), help="parallel SCALE-Sim runs")
    args = ap.parse_args()

    p = onnx_hwutil.profile(args.model, batch=1)
    spec = load_spec(args.spec)
    tpu = TpuBackend(spec, rates(spec, "bf16"))
    layers, notes = [], []
    for nc in p.costs.nodes:
        if nc.cost.macs <= 0:
            continue
        node = nc.node
        if node.op_type not in ("Conv", "Gemm"):
            notes.append(f"{node.name} ({node.op_type}): not a Conv/Gemm, not compared")
            continue
        g = nc.gemms[0] if len(nc.gemms) == 1 else None
        row, why = topology_row(node, p.graph)
        if row is None:
            notes.append(f"{node.name}: skipped, {why}")
            continue
        sm, sn, sk = prod(row[:2]) if node.op_type == "Gemm" else _ofmap(row), row[5], prod(row[2:5])
        if g is None or g.approx or (g.batch, g.m, g.n, g.k) != (1, sm, sn, sk):
            notes.append(f"{node.name}: skipped, our GEMM {g} differs from the SCALE-Sim row {row}")
            continue
        ours = g.batch * ceil(g.k / tpu.rows) * ceil(g.n / tpu.cols) * tpu.fold_cycles(g.m)
        layers.append(Layer(node.name, node.op_type, g.m, g.n, g.k, ours,
                            scalesim_formula(g.m, g.n, g.k, tpu.rows, tpu.cols), row))
    if not layers:
        print("no Conv/Gemm layers to compare")
        print("\n".join(notes))
        return 0

    try:
        run_scalesim(args.scalesim_python, layers, tpu.rows, tpu.cols, max(args.jobs, 1))
    except (RuntimeError, OSError) as e:
        sys.exit(str(e))

    table = [[lay.name, lay.m, lay.n, lay.k, lay.scalesim, lay.ours, f"{lay.ours / lay.scalesim:.4f}",
              lay.formula, f"{lay.formula / lay.scalesim:.6f}"] for lay in layers]
    tot_s, tot_o, tot_f = (sum(getattr(lay, a) for lay in layers) for a in ("scalesim", "ours", "formula"))
    table.append(["TOTAL", "", "", "", tot_s, tot_o, f"{tot_o / tot_s:.4f}", tot_f, f"{tot_f / tot_s:.6f}"])
    print(f"{os.path.relpath(args.model)}: one {tpu.rows}x{tpu.cols} weight-stationary array, batch 1, "
          f"compute cycles (SCALE-Sim: Total - Stall)")
    print(tabulate(table, headers=["layer", "M", "N", "K", "SCALE-Sim", "ours", "ours/SS", "SS formula",
                                   "formula/SS"]))
    for n in notes:
        print("note:", n)

    print()
    for label, attr in (("ours", "ours"), ("hypothetical: SCALE-Sim's formula", "formula")):
        worst = max(layers, key=lambda lay, a=attr: _err(getattr(lay, a), lay.scalesim))
        layer_err = _err(getattr(worst, attr), worst.scalesim)
        total_err = _err(sum(getattr(lay, attr) for lay in layers), tot_s)
        ok_layer, ok_total = layer_err <= args.layer_target, total_err <= args.total_target
        print(f"{label}: max per-layer |error| {layer_err:.4%} ({worst.name}), total |error| {total_err:.4%}")
        print(f"  per-layer within {args.layer_target:.0%}: {'PASS' if ok_layer else 'FAIL'}; "
              f"total within {args.total_target:.0%}: {'PASS' if ok_total else 'FAIL'}; "
              f"overall: {'PASS' if ok_layer and ok_total else 'FAIL'}")
    return 0


def _ofmap(row: list) -> int:
    """SCALE-Sim's ofmap pixels for a conv row (topology_utils.topo_calc_hyperparams)."""
    h, w, fh, fw, s = row[0], row[1], row[2], row[3], row[6]
    return ceil((h - fh + s) / s) * ceil((w - fw + s) / s)


if __name__ == "__main__":
    sys.exit(main())

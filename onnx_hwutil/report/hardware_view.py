"""Tables for `onnx-hwutil hw list` and `hw show`."""

from __future__ import annotations

from tabulate import tabulate

from ..hardware import HardwareSpec
from .units import si, size


def list_table(specs: list[HardwareSpec]) -> str:
    rows = []
    for s in specs:
        peak = max(s.peak_ops_per_s.items(), key=lambda kv: kv[1])
        rows.append((s.name, s.kind, s.title, f"{s.units} {s.unit_name}", f"{si(peak[1], 'OP/s')} {peak[0]}",
                     si(s.dram_bandwidth, "B/s"), f"{s.tdp_w:g} W", ", ".join(s.precisions)))
    return tabulate(rows, headers=["name", "kind", "chip", "units", "peak (dense)", "DRAM BW", "TDP",
                                   "precisions"], tablefmt="simple", disable_numparse=True)


def show(s: HardwareSpec) -> str:
    rows = [(k, _fmt(k, c.value), c.source) for k, c in s.sources.items()]
    assumed = sum(c.assumed for c in s.sources.values())
    head = (f"{s.title} ({s.name}, {s.kind}, {s.path})\n{len(rows)} numbers, {assumed} of them assumed "
            "(no public figure; the reason is given)")
    return head + "\n\n" + tabulate(rows, headers=["field", "value", "source"], tablefmt="simple",
                                    maxcolwidths=[None, None, 90], disable_numparse=True)


def _fmt(key: str, v: float) -> str:
    if key.endswith(("bytes", "_bytes_per_core", "_bytes_per_tile", "_bytes_per_tensorcore")):
        return size(v)
    if key.endswith("bytes_per_s"):
        return si(v, "B/s")
    if "ops_per_s" in key:
        return si(v, "OP/s")
    if key.endswith("_hz"):
        return si(v, "Hz")
    if key.endswith("_s"):
        return f"{v * 1e6:g} us"
    if key.startswith("energy"):
        return f"{v * 1e12:.3g} pJ"
    return f"{v:g}"

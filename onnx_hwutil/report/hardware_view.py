"""Tables for `onnx-hwutil hw list` and `hw show`."""

from __future__ import annotations

from dataclasses import fields

from tabulate import tabulate

from ..hardware import HardwareSpec
from ..units import si, size


def summary(s: HardwareSpec) -> dict:
    """One chip's headline numbers (hw list --format json)."""
    return {"name": s.name, "kind": s.kind, "title": s.title, "units": s.units, "unit_name": s.unit_name,
            "clock_hz": s.clock_hz, "peak_ops_per_s": s.peak_ops_per_s,
            "sparse_peak_ops_per_s": s.sparse_peak_ops_per_s, "vector_ops_per_s": s.vector_ops_per_s,
            "dram_bandwidth_bytes_per_s": s.dram_bandwidth, "dram_capacity_bytes": s.dram_capacity,
            "onchip_bytes": s.onchip_bytes, "tdp_w": s.tdp_w, "precisions": s.precisions,
            "partitions": list(s.partitions), "interconnect": s.interconnect,
            "numbers": len(s.sources), "numbers_assumed": sum(c.assumed for c in s.sources.values()),
            "spec": s.path}


def list_table(specs: list[HardwareSpec]) -> str:
    rows = []
    for s in specs:
        peak = max(s.peak_ops_per_s.items(), key=lambda kv: kv[1])
        assumed = sum(c.assumed for c in s.sources.values())
        rows.append((s.name, s.kind, s.title[:44], f"{s.units} {s.unit_name}",
                     f"{si(peak[1], 'OP/s')} {peak[0]}",
                     si(s.dram_bandwidth, "B/s"), size(s.dram_capacity), f"{s.tdp_w:g} W",
                     ", ".join(s.precisions), f"{assumed}/{len(s.sources)}"))
    return tabulate(rows, headers=["name", "kind", "chip", "units", "peak (dense)", "DRAM BW", "memory",
                                   "TDP", "precisions", "assumed"], tablefmt="simple", disable_numparse=True)


def side_by_side(specs: list[HardwareSpec]) -> str:
    """Several chips' headline numbers in columns, each marked * where the number is assumed."""
    def cell(s: HardwareSpec, key: str, value, fmt) -> str:
        if value is None:
            return "-"
        c = s.sources.get(key)
        return fmt(value) + ("*" if c is not None and c.assumed else "")

    precisions = [p for p in ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
                  if any(p in s.peak_ops_per_s for s in specs)]
    rows = [("kind", *(s.kind for s in specs)),
            ("units", *(f"{s.units} {s.unit_name}" for s in specs)),
            ("clock", *(cell(s, "clock_hz", s.clock_hz, lambda v: si(v, "Hz")) for s in specs))]
    rows += [(f"peak {p} (dense)", *(cell(s, f"peak_ops_per_s.{p}", s.peak_ops_per_s.get(p),
                                          lambda v: si(v, "OP/s")) for s in specs)) for p in precisions]
    rows += [("vector fp32", *(cell(s, "vector_ops_per_s.fp32", s.vector_ops_per_s.get("fp32"),
                                    lambda v: si(v, "OP/s")) for s in specs)),
             ("DRAM bandwidth", *(cell(s, "memory.dram_bandwidth_bytes_per_s", s.dram_bandwidth,
                                       lambda v: si(v, "B/s")) for s in specs)),
             ("memory", *(cell(s, "memory.dram_capacity_bytes", s.dram_capacity, size) for s in specs)),
             ("on-chip memory", *(cell(s, "memory.onchip_bytes", s.onchip_bytes, size) for s in specs)),
             ("TDP", *(cell(s, "power.tdp_w", s.tdp_w, lambda v: f"{v:g} W") for s in specs)),
             ("per-kernel overhead", *(cell(s, "kernel_overhead_s", s.kernel_overhead_s,
                                            lambda v: f"{v * 1e6:g} us") for s in specs)),
             ("interconnect", *(_link(s) for s in specs)),
             ("partitions", *(", ".join(s.partitions) or "-" for s in specs)),
             ("numbers assumed", *(f"{sum(c.assumed for c in s.sources.values())} of {len(s.sources)}"
                                   for s in specs))]
    return tabulate(rows, headers=["", *(s.name for s in specs)], tablefmt="simple",
                    disable_numparse=True) + "\n\n* assumed: no public figure (`hw show NAME` says why)"


def tpu_peaks_agree(s: HardwareSpec) -> bool:
    """A systolic array's peaks are its cells x 2 x clock times the MACs a cell does per cycle at that
    precision: 1, a power of two above (int8 at twice bf16) or below (fp32 in several passes)."""
    per_clock = 2 * s.units * s.backend.mxu_rows * s.backend.mxu_cols * s.clock_hz
    return all(any(abs(v - m * per_clock) <= 0.05 * m * per_clock for m in (0.125, 0.25, 0.5, 1, 2, 4))
               for v in s.peak_ops_per_s.values())


def _link(s: HardwareSpec) -> str:
    i = s.interconnect
    return f"{i['name']} {si(i['bandwidth_bytes_per_s'], 'B/s')}" if i else "-"


def check(s: HardwareSpec) -> tuple[str, int]:
    """What a person should know about a spec that loads: its assumed numbers, the optional parts it lacks,
    and whether its matrix peaks agree with units x clock for the kinds whose per-unit rate is fixed."""
    assumed = [(k, c.source.removeprefix("assumed: ")) for k, c in s.sources.items() if c.assumed]
    lines = [f"{s.path}: valid ({s.name}, {s.kind}); {len(s.sources)} numbers, {len(assumed)} assumed"]
    if assumed:
        lines += ["", tabulate([(k, why) for k, why in assumed], headers=["assumed field", "why"],
                               tablefmt="simple", maxcolwidths=[None, 90], disable_numparse=True)]
    absent = [f for f, present in (("sparse_peak_ops_per_s", s.sparse_peak_ops_per_s),
                                   ("interconnect", s.interconnect), ("partitions", s.partitions),
                                   ("calibration", s.calibration)) if not present]
    # the backend fields no backend reads: cited for the reader where the spec has them
    absent += [f"backend.{s.kind}.{f.name}" for f in fields(s.backend) if getattr(s.backend, f.name) is None]
    if absent:
        lines += ["", "absent (optional): " + ", ".join(absent)]
    if s.kind == "tpu" and not tpu_peaks_agree(s):
        b = s.backend
        per_clock = 2 * s.units * b.mxu_rows * b.mxu_cols * s.clock_hz
        lines += ["", f"warning: {s.units} arrays x {b.mxu_rows}x{b.mxu_cols} MACs x 2 x clock = "
                      f"{si(per_clock, 'OP/s')}, but the peaks are "
                      + ", ".join(f"{p} {si(v, 'OP/s')}" for p, v in s.peak_ops_per_s.items())
                      + " (each should be 1/8 to 4 MACs per cell per cycle, a power of two)"]
    return "\n".join(lines), len(assumed)


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

"""`--hw host`: this machine's CPU, read at run time from /proc/cpuinfo and sysfs.

Core count, SIMD width (from the CPU flags), clock and cache sizes are read; what the OS does not tell
(memory bandwidth, FMA units, power) is assumed, each with its reason, until `calibrate` measures it.
"""

from __future__ import annotations

import os

from .spec import HardwareSpec, parse


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key and key not in out:
            out[key] = value.strip()
    return out


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1:], 1)
    return int(text.rstrip("KMG") or 0) * mult


def _caches() -> dict[int, int]:
    """Cache level -> bytes (data or unified caches of cpu0)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    out: dict[int, int] = {}
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        kind = (_read(f"{base}/{entry}/type") or "").strip()
        level = (_read(f"{base}/{entry}/level") or "").strip()
        size = _read(f"{base}/{entry}/size")
        if kind in ("Data", "Unified") and level.isdigit() and size:
            out[int(level)] = _size(size)
    return out


def _clock_hz(info: dict[str, str]) -> float | None:
    khz = (_read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") or "").strip()
    if khz.isdigit() and int(khz) > 0:
        return float(khz) * 1e3
    try:
        mhz = float(info["cpu MHz"])
    except (KeyError, ValueError):
        return None
    return mhz * 1e6 if mhz > 0 else None


def host_spec() -> HardwareSpec:
    return parse(host_data(), "host")


def host_data() -> dict:
    """The spec of this machine as the YAML mapping a spec file holds (what `calibrate` starts from)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    cores = os.cpu_count() or 1
    simd = 512 if "avx512f" in flags else 256 if "avx2" in flags or "avx" in flags else 128
    fma = 2 if "fma" in flags or "avx512f" in flags else 1
    read = "detected at run time from /proc/cpuinfo and /sys/devices/system/cpu"

    def det(value, what):
        return {"value": value, "source": f"{read}: {what}"}

    def assumed(value, why):
        return {"value": value, "assumed": why}

    def found(value, what, fallback, why):
        """Detected where the OS told us; otherwise the fallback, labelled as the assumption it is."""
        return det(value, what) if value is not None else assumed(fallback, why)

    clock_e = found(_clock_hz(info), "cpuinfo_max_freq, else 'cpu MHz'", 2e9,
                    "the OS reports no clock (no cpufreq, no 'cpu MHz'): 2 GHz, a typical server base clock")
    clock = clock_e["value"]
    caches = _caches()
    cache_e = {lvl: found(float(caches[lvl]) if lvl in caches else None, what, float(fb),
                          f"/sys reports no {what}: {fb // 1024} KiB, typical of current server cores")
               for lvl, what, fb in ((1, "L1 data cache", 32 * 1024), (2, "L2 cache", 512 * 1024),
                                     (3, "L3 cache", 8 * 1024**2))}
    fp32 = cores * (simd // 32) * 2 * fma * clock

    peak = {"fp32": det(fp32, f"{cores} cores x {simd // 32} fp32 lanes x 2 (FMA) x {fma} FMA units x clock")}
    if {"amx_bf16", "amx_tile"} <= flags:
        peak["bf16"] = det(cores * 1024 * clock, "AMX: 1024 bf16 FLOP/cycle/core")
        peak["int8"] = det(cores * 2048 * clock, "AMX: 2048 int8 OP/cycle/core")
    energy_fp32 = 8.0 * cores / fp32  # the assumed 10 W - 2 W idle per core, at the fp32 peak
    data = {
        "name": "host", "title": f"this machine: {info.get('model name', 'unknown CPU')}, {cores} cores",
        "kind": "cpu",
        "units": {"name": "core", "count": det(cores, "logical CPUs available (os.cpu_count)")},
        "clock_hz": clock_e,
        "peak_ops_per_s": peak,
        "vector_ops_per_s": {"fp32": det(fp32, "same as the fp32 peak: the SIMD units do the matrix work")},
        "memory": {
            "dram_bandwidth_bytes_per_s": assumed(
                8e9 * cores, "not readable from the OS; 8 GB/s per core is typical of a cloud VM's share of "
                "a DDR4/DDR5 socket. `onnx-hwutil calibrate` measures it"),
            "dram_capacity_bytes": det(float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")),
                                       "physical memory"),
            "onchip_bytes": cache_e[3],
            "unit_local_bytes": cache_e[2],
        },
        "kernel_overhead_s": assumed(5e-6, "onnxruntime's per-op dispatch on a CPU is a few microseconds; "
                                           "`calibrate` measures it"),
        "power": {"tdp_w": assumed(10.0 * cores, "not readable; 10 W per core"),
                  "idle_w": assumed(2.0 * cores, "not readable; 2 W per core")},
        "energy": {"j_per_op": {p: assumed(energy_fp32 * fp32 / v["value"],
                                           "(10 W - 2 W per core at full load) over the peak rate")
                                for p, v in peak.items()},
                   "j_per_dram_byte": assumed(1.6e-10, "DDR4/DDR5 access energy of about 20 pJ/bit "
                                                        "(Horowitz, ISSCC 2014, scaled)")},
        "backend": {"cpu": {
            "cores": det(cores, "os.cpu_count"), "simd_bits": det(simd, "avx512f/avx2/avx flags"),
            "fma_units_per_core": assumed(fma, "the flags say whether FMA exists, not how many units; 2 on "
                                               "every AVX2/AVX-512 server core of the last decade"),
            "amx": {"amx_bf16", "amx_tile"} <= flags,
            "l1d_bytes_per_core": cache_e[1],
            "l2_bytes_per_core": cache_e[2],
            "l3_bytes": cache_e[3],
            "l1_bandwidth_bytes_per_cycle_per_core": assumed(2 * simd // 8, "two SIMD loads per cycle"),
            "l2_bandwidth_bytes_per_cycle_per_core": assumed(32, "one 64-byte line every 2 cycles"),
            "l3_bandwidth_bytes_per_s": assumed(16.0 * clock * cores, "16 bytes/cycle/core, a typical "
                                                                      "sustained L3 read rate"),
            "all_core_clock_hz": clock_e,  # the OS does not expose all-core turbo
        }},
    }
    return data

"""Hardware specs: one YAML file per chip, every number with its `source:` or an `assumed:` reason.

All files go through one schema that rejects unknown, missing or impossible fields, naming the file, the
field and the reason. Numbers are SI base units (Hz, bytes, bytes/s, ops/s, s, W, J). YAML 1.1 reads `3.35e12`
as a string; we accept such strings as numbers, since that is what a person writing a spec means.
Finding and reading the files is `catalog`'s job; this module only checks what was read.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ..errors import HwUtilError

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
KINDS = ("cpu", "gpu", "tpu", "kpu")

# Leaf types of the schema.
NUM, INT, STR, BOOL = "number", "integer", "string", "boolean"
PRECS, PREC_LIST = "precisions", "precision list"

# field -> type, or a nested schema; names ending in "?" are optional.
SCHEMA: dict[str, Any] = {
    "name": STR,
    "title": STR,
    "kind": STR,
    "units": {"name": STR, "count": INT},
    "clock_hz": NUM,
    "peak_ops_per_s": PRECS,
    "vector_ops_per_s": PRECS,
    "emulated?": "emulated",
    "memory": {"dram_bandwidth_bytes_per_s": NUM, "dram_capacity_bytes": NUM, "onchip_bytes": NUM,
               "unit_local_bytes": NUM},
    "kernel_overhead_s": NUM,
    "power": {"tdp_w": NUM, "idle_w": NUM},
    # vector_j_per_op: non-matrix work at a precision whose matrix units spend less per op (CUDA cores
    # beside tensor cores); without it, vector work at that precision is priced at j_per_op
    "energy": {"j_per_op": PRECS, "vector_j_per_op?": PRECS, "j_per_dram_byte": NUM},
    "backend": "backend",
    "calibration?": "calibration",
    "partitions?": "partitions",
    # 2:4 structured-sparsity peaks, kept apart from the dense ones every prediction uses
    "sparse_peak_ops_per_s?": PRECS,
    # chip-to-chip links for multi-device runs: per-direction bandwidth per chip, and one hop's latency
    "interconnect?": {"name": STR, "bandwidth_bytes_per_s": NUM, "latency_s": NUM},
    # how far the backend of this kind can model the chip (an AMD GPU through the NVIDIA-shaped GPU backend,
    # an NPU as a tile array): said in every result on it
    "modeling?": STR,
}
CURVES = ("gemm", "depthwise", "elementwise")  # measured rate tables of a calibrated CPU
# Tables a calibration written before them lacks: the backend then uses the peak vector rate, the fp32 GEMMs.
LATER_CURVES = ("vector", "gemm_int8", "vector_int8")


# One typed block per kind of chip, under `backend:`. A field without a default is one its backend reads;
# the rest are cited for the reader (how the chip is built) and read by nothing, so a spec may leave them
# out. Declared in the order `hw show` lists them.
@dataclass(frozen=True, kw_only=True)
class GpuBlock:
    tensor_core_precisions: tuple[str, ...] | None = None
    l2_bandwidth_bytes_per_s: float  # on-chip hits
    max_threads_per_sm: int | None = None
    smem_per_sm_bytes: float | None = None


@dataclass(frozen=True, kw_only=True)
class TpuBlock:
    tensorcores: int | None = None
    mxus_per_tensorcore: int | None = None
    mxu_rows: int  # the systolic array a weight tile is padded to
    mxu_cols: int
    cmem_bytes: float | None = None
    cmem_bandwidth_bytes_per_s: float  # on-chip hits
    vmem_bytes_per_tensorcore: float | None = None


@dataclass(frozen=True, kw_only=True)
class KpuBlock:
    pes_per_tile: int  # outputs a tile makes at a time
    macs_per_pe_per_cycle: int | None = None
    scratchpad_bytes_per_tile: float  # the weight slice a tile holds before inputs are streamed again
    noc_bandwidth_bytes_per_s: float  # on-chip hits


@dataclass(frozen=True, kw_only=True)
class CpuBlock:
    cores: int | None = None
    simd_bits: int | None = None
    fma_units_per_core: int | None = None
    amx: bool | None = None
    l1d_bytes_per_core: float | None = None
    l2_bytes_per_core: float | None = None
    l3_bytes: float | None = None
    l1_bandwidth_bytes_per_cycle_per_core: float | None = None
    l2_bandwidth_bytes_per_cycle_per_core: float | None = None
    l3_bandwidth_bytes_per_s: float  # on-chip hits
    all_core_clock_hz: float | None = None


Backend = GpuBlock | TpuBlock | KpuBlock | CpuBlock
BLOCKS: dict[str, type[Backend]] = {"gpu": GpuBlock, "tpu": TpuBlock, "kpu": KpuBlock, "cpu": CpuBlock}
_LEAVES = {"int": INT, "float": NUM, "bool": BOOL, "tuple[str, ...]": PREC_LIST}
# Each block's schema, read off its dataclass so the two cannot drift: a field with a default is optional.
BACKENDS: dict[str, dict[str, str]] = {
    kind: {f.name + ("" if f.default is MISSING else "?"): _LEAVES[f.type.removesuffix(" | None")]
           for f in fields(block)}
    for kind, block in BLOCKS.items()}

# The physical range of every number, by the end of its field's name (first match wins): a value outside
# is a typo or an attack (a 400-digit unit count, a peak of 5e-324), refused at load with the field named.
RANGES: tuple[tuple[str, float, float, str], ...] = (
    ("clock_hz", 1e6, 1e10, "a clock between 1 MHz and 10 GHz"),
    ("_bytes_per_s", 1e6, 1e17, "a bandwidth between 1 MB/s and 100 PB/s"),
    ("_per_cycle_per_core", 1, 1e5, "1 to 100,000 bytes per cycle"),
    ("ops_per_s", 1e6, 1e19, "a rate between 1 MOP/s and 10 EOP/s"),
    ("kernel_overhead_s", 1e-10, 1.0, "between 0.1 ns and 1 s per kernel"),
    ("latency_s", 1e-10, 1.0, "between 0.1 ns and 1 s"),
    ("_w", 1e-3, 1e6, "between 1 mW and 1 MW"),
    ("j_per_dram_byte", 1e-15, 1e-6, "between 1 fJ and 1 uJ per byte"),
    ("j_per_op", 1e-17, 1e-6, "between 0.01 fJ and 1 uJ per op"),
    ("slowdown", 1, 1e4, "1 to 10,000 passes"),
    ("simd_bits", 8, 8192, "8 to 8,192 bits"),
    ("bytes", 1, 1e16, "1 byte to 10 PB"),
    ("", 1, 1e8, "a count from 1 to 100,000,000"),
)
# Calibration tables: measured sizes, rates and per-op times.
CAL_SIZE, CAL_RATE, CAL_DISPATCH_S = (1, 1e15), (1e3, 1e19), (0.0, 1.0)


def _bounds(where: str) -> tuple[float, float, str]:
    last = where.rsplit(".", 2)
    name = ".".join(last[-2:])
    return next((lo, hi, what) for end, lo, hi, what in RANGES if end in name)


@dataclass(frozen=True)
class Cited:
    value: float
    source: str  # the citation, or "assumed: <why>"

    @property
    def assumed(self) -> bool:
        return self.source.startswith("assumed: ")


@dataclass(frozen=True)
class HardwareSpec:
    name: str
    title: str
    kind: str
    unit_name: str
    units: int
    clock_hz: float
    peak_ops_per_s: dict[str, float]  # dense matrix peak per precision, whole chip
    vector_ops_per_s: dict[str, float]
    emulated: dict[str, tuple[str, float]]  # precision -> (precision it runs on, slowdown)
    dram_bandwidth: float
    dram_capacity: float
    onchip_bytes: float
    unit_local_bytes: float
    kernel_overhead_s: float
    tdp_w: float
    idle_w: float
    j_per_op: dict[str, float]
    j_per_dram_byte: float
    backend: Backend
    vector_j_per_op: dict[str, float] = field(default_factory=dict)  # where vector units differ from matrix
    calibration: dict | None = None  # measured rate tables (cpu), see `calibrate`
    # The partitions the vendor defines (NVIDIA MIG profiles): name -> (units, memory bytes), smallest first.
    partitions: dict[str, tuple[int, float]] = field(default_factory=dict)
    sparse_peak_ops_per_s: dict[str, float] = field(default_factory=dict)  # never used for predictions
    interconnect: dict | None = None  # {"name", "bandwidth_bytes_per_s", "latency_s"}
    modeling: str | None = None  # the backend's limits on this chip, repeated in every result
    path: str = ""
    sources: dict[str, Cited] = field(default_factory=dict, repr=False)  # dotted field -> number + citation

    @property
    def precisions(self) -> list[str]:
        """Precisions it runs: on its matrix units, its vector units, or by stated emulation."""
        have = set(self.peak_ops_per_s) | set(self.vector_ops_per_s) | set(self.emulated)
        return [p for p in PRECISIONS if p in have]


class _Checker:
    def __init__(self, path: str):
        self.path = path
        self.sources: dict[str, Cited] = {}

    def fail(self, where: str, why: str) -> HwUtilError:
        return HwUtilError(f"{self.path}: field '{where}': {why}")

    def check(self, data: Any, schema: Any, where: str, kind: str | None = None) -> Any:
        if isinstance(schema, dict):
            if not isinstance(data, dict):
                raise self.fail(where, "expected a mapping")
            out = {}
            known = {k.rstrip("?") for k in schema}
            for k in data:
                if k not in known:
                    expected = ", ".join(sorted(known))
                    raise self.fail(_join(where, k), f"unknown field (expected one of: {expected})")
            for k, sub in schema.items():
                name = k.rstrip("?")
                if name not in data:
                    if k.endswith("?"):
                        continue
                    raise self.fail(_join(where, name), "missing")
                out[name] = self.check(data[name], sub, _join(where, name), kind)
            return out
        if schema in (NUM, INT):
            return self.number(data, where, integer=schema == INT)
        if schema == STR:
            if not isinstance(data, str) or not data.strip():
                raise self.fail(where, "expected a non-empty string")
            return data
        if schema == BOOL:
            if not isinstance(data, bool):
                raise self.fail(where, "expected true or false")
            return data
        if schema == PRECS:
            if not isinstance(data, dict) or not data:
                raise self.fail(where, f"expected a mapping of precisions ({', '.join(PRECISIONS)})")
            for p in data:
                if p not in PRECISIONS:
                    known = ", ".join(PRECISIONS)
                    raise self.fail(_join(where, str(p)), f"unknown precision (known: {known})")
            return {p: self.number(v, _join(where, p)) for p, v in data.items()}
        if schema == PREC_LIST:
            if not isinstance(data, list) or any(p not in PRECISIONS for p in data):
                raise self.fail(where, f"expected a list of precisions ({', '.join(PRECISIONS)})")
            return tuple(data)
        if schema == "emulated":
            if not isinstance(data, dict):
                raise self.fail(where, "expected a mapping: precision -> {via, slowdown}")
            out = {}
            for p, v in data.items():
                w = _join(where, str(p))
                if p not in PRECISIONS:
                    raise self.fail(w, "unknown precision")
                e = self.check(v, {"via": STR, "slowdown": NUM}, w)
                if e["via"] not in PRECISIONS:
                    raise self.fail(_join(w, "via"), "unknown precision")
                out[p] = (e["via"], e["slowdown"])
            return out
        if schema == "calibration":
            return self.calibration(data, where, kind)
        if schema == "partitions":
            if not isinstance(data, dict) or not data:
                raise self.fail(where, "expected a mapping: profile name -> {units, dram_capacity_bytes}")
            out = {str(n): self.check(v, {"units": INT, "dram_capacity_bytes": NUM}, _join(where, str(n)))
                   for n, v in data.items()}
            return dict(sorted(((n, (v["units"], v["dram_capacity_bytes"])) for n, v in out.items()),
                               key=lambda nv: nv[1]))
        if schema == "backend":
            if not isinstance(data, dict) or list(data) != [kind]:
                raise self.fail(where, f"expected exactly one block, '{kind}', matching kind")
            return BLOCKS[kind](**self.check(data[kind], BACKENDS[kind], _join(where, kind)))
        raise AssertionError(schema)

    def calibration(self, data: Any, where: str, kind: str | None) -> dict:
        """Measured rate tables per thread count: {"source": text, "threads": {N: {curve: [[x, rate]...],
        "dispatch_s": s}}}, written by `onnx-hwutil calibrate`."""
        if kind != "cpu":
            raise self.fail(where, "only a cpu spec carries calibration tables")
        if not isinstance(data, dict) or set(data) != {"source", "threads"} \
                or not isinstance(data["threads"], dict):
            raise self.fail(where, "expected {source: ..., threads: {N: {gemm, depthwise, elementwise, "
                                   "dispatch_s}}}")
        out = {}
        for n, table in data["threads"].items():
            w = _join(where, f"threads.{n}")
            if not (isinstance(n, int) or (str(n).isascii() and str(n).isdigit())) or not 1 <= int(n) <= 1e5 \
                    or not isinstance(table, dict):
                raise self.fail(w, "expected a positive thread count mapping to its tables")
            have = [c for c in (*CURVES, *LATER_CURVES) if c in table]
            if set(table) - {*LATER_CURVES} != {*CURVES, "dispatch_s"}:
                raise self.fail(w, f"expected exactly: {', '.join(CURVES)}, dispatch_s (optional: "
                                   f"{', '.join(LATER_CURVES)})")
            for c in have:
                width = 4 if c.startswith("gemm") else 2  # gemm: [M, N, K, FLOP/s]; others: [size, rate]
                pts = table[c]
                ok = isinstance(pts, list) and pts and all(
                    isinstance(p, list) and len(p) == width
                    and all(_within(v, *CAL_SIZE) for v in p[:-1]) and _within(p[-1], *CAL_RATE)
                    for p in pts)
                if not ok:
                    raise self.fail(_join(w, c), f"expected rows of {width} positive numbers: sizes from "
                                                 f"{CAL_SIZE[0]:g} to {CAL_SIZE[1]:g}, then a rate from "
                                                 f"{CAL_RATE[0]:g} to {CAL_RATE[1]:g} per second")
            d = table["dispatch_s"]
            if not _within(d, *CAL_DISPATCH_S):
                raise self.fail(_join(w, "dispatch_s"), "expected a number of seconds from 0 to 1")
            out[int(n)] = {c: sorted(tuple(float(v) for v in row) for row in table[c]) for c in have} | {
                "dispatch_s": float(d)}
        if not isinstance(data["source"], str) or len(data["source"]) < 8:
            raise self.fail(_join(where, "source"), "must say how and when it was measured")
        return {"source": data["source"], "threads": out}

    def number(self, data: Any, where: str, integer: bool = False) -> float:
        if not isinstance(data, dict) or "value" not in data:
            raise self.fail(where, "expected {value: ..., source: ...} or {value: ..., assumed: ...}")
        extra = set(data) - {"value", "source", "assumed"}
        if extra:
            raise self.fail(where, f"unknown key {sorted(extra)[0]!r} (allowed: value, source, assumed)")
        cited = [k for k in ("source", "assumed") if k in data]
        if len(cited) != 1:
            raise self.fail(where, "needs exactly one of 'source' (a citation) or 'assumed' (why)")
        text = data[cited[0]]
        if not isinstance(text, str) or len(text.strip()) < 8:
            raise self.fail(where, f"'{cited[0]}' must say where the number comes from, or why it is assumed")
        v = data["value"]
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                raise self.fail(where, f"value {v!r} is not a number") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(where, f"value {v!r} is not a number")
        try:
            f = float(v)
        except OverflowError:
            raise self.fail(where, f"value {str(v)[:20]}... is too large") from None
        if not f > 0 or f != f or f == float("inf"):
            raise self.fail(where, f"value {v!r} must be positive and finite")
        lo, hi, what = _bounds(where)
        if not lo <= f <= hi:
            raise self.fail(where, f"value {v!r} is outside the physical range ({what})")
        if integer and f != int(f):
            raise self.fail(where, f"value {v!r} must be a whole number")
        self.sources[where] = Cited(float(v), text if cited[0] == "source" else f"assumed: {text}")
        return int(v) if integer else float(v)


def _within(v: Any, lo: float, hi: float) -> bool:
    """A real number (not a bool, not NaN) within [lo, hi]."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _join(a: str, b: str) -> str:
    return f"{a}.{b}" if a else b


def parse(data: Any, path: str) -> HardwareSpec:
    c = _Checker(path)
    if not isinstance(data, dict):
        raise c.fail("", "the file must be a YAML mapping")
    kind = data.get("kind")
    if kind not in KINDS:
        raise c.fail("kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    d = c.check(data, SCHEMA, "", kind)
    if d["power"]["idle_w"] > d["power"]["tdp_w"]:
        raise c.fail("power.idle_w", "idle power exceeds TDP")
    for p, (via, _) in d.get("emulated", {}).items():
        if via not in d["peak_ops_per_s"]:
            raise c.fail(f"emulated.{p}.via", f"{via} has no peak_ops_per_s to emulate on")
    for n, (units, _) in d.get("partitions", {}).items():
        if units > d["units"]["count"]:
            raise c.fail(f"partitions.{n}.units", f"{units} is more than the chip's {d['units']['count']}")
    for p in d["peak_ops_per_s"]:
        if p not in d["energy"]["j_per_op"]:
            raise c.fail(f"energy.j_per_op.{p}", f"missing: the chip runs {p} but has no energy per op")
    return HardwareSpec(
        name=d["name"], title=d["title"], kind=kind, unit_name=d["units"]["name"],
        units=d["units"]["count"], clock_hz=d["clock_hz"], peak_ops_per_s=d["peak_ops_per_s"],
        vector_ops_per_s=d["vector_ops_per_s"],
        emulated=d.get("emulated", {}), dram_bandwidth=d["memory"]["dram_bandwidth_bytes_per_s"],
        dram_capacity=d["memory"]["dram_capacity_bytes"],
        onchip_bytes=d["memory"]["onchip_bytes"],
        unit_local_bytes=d["memory"]["unit_local_bytes"], kernel_overhead_s=d["kernel_overhead_s"],
        tdp_w=d["power"]["tdp_w"], idle_w=d["power"]["idle_w"], j_per_op=d["energy"]["j_per_op"],
        j_per_dram_byte=d["energy"]["j_per_dram_byte"], backend=d["backend"],
        vector_j_per_op=d["energy"].get("vector_j_per_op", {}),
        calibration=d.get("calibration"), partitions=d.get("partitions", {}),
        sparse_peak_ops_per_s=d.get("sparse_peak_ops_per_s", {}), interconnect=d.get("interconnect"),
        modeling=d.get("modeling"),
        path=path, sources=c.sources)


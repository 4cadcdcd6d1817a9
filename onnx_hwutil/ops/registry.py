"""The one registry of per-op cost formulas, keyed by (domain, op type).

A formula sees shapes and attributes through an `OpContext` and returns `Work`: MACs, FLOPs and the op's
pattern kind, plus byte counts only where the op does not simply read every input and write every output
(a Gather reads the rows it picks, not the whole table). Conventions, stated once:

- MAC: one multiply-accumulate of a matrix-class op. FLOPs of a matrix op = 2 x MACs, plus its epilogue
  (bias add, requantization) per output element; Gemm's alpha and beta are folded into the GEMM for free.
- Other ops: FLOPs per element from the table in `elementwise.py`; data movement and casts do no arithmetic.
- Bytes: every input read once, every output written once, at the element size of the chosen precision.
  Constant inputs of a parameter dtype are weight bytes; shape-only ops move nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum

from ..dtypes import PARAM_TYPES, nbytes, tensor_nbytes


class OpKind(IntEnum):
    """Pattern kinds on TVM's ordered scale (OpPatternKind); a fused group takes the max of its members."""

    SHAPE = -1  # metadata only: Reshape, Shape, Squeeze... no data moves
    ELEMENTWISE = 0
    BROADCAST = 1
    INJECTIVE = 2  # data movement: Transpose, Concat, Slice, Gather
    REDUCTION = 3
    MATRIX = 4  # TVM's out-elementwise-fusable: Conv, Gemm, MatMul
    OPAQUE = 8

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Cost:
    macs: int = 0
    flops: int = 0
    bytes_read: int = 0  # non-weight inputs
    bytes_written: int = 0
    weight_bytes: int = 0
    kind: OpKind = OpKind.OPAQUE

    @property
    def dram_bytes(self) -> int:
        return self.bytes_read + self.bytes_written + self.weight_bytes

    def __add__(self, o: Cost) -> Cost:
        return Cost(self.macs + o.macs, self.flops + o.flops, self.bytes_read + o.bytes_read,
                    self.bytes_written + o.bytes_written, self.weight_bytes + o.weight_bytes,
                    max(self.kind, o.kind))

    def scaled(self, k: int) -> Cost:
        return Cost(self.macs * k, self.flops * k, self.bytes_read * k, self.bytes_written * k,
                    self.weight_bytes * k, self.kind)


@dataclass(frozen=True)
class Gemm:
    """One matrix product as discrete units see it: `batch` independent [m, k] x [k, n] products.

    The op's own formula states it, next to its MACs, so a backend never rebuilds an op's shape.
    """

    batch: int  # independent GEMMs (groups, batch dims, heads, recurrent steps)
    m: int
    n: int
    k: int
    weight_stationary: bool = True  # B is a weight: it can stay in place on a systolic array
    approx: bool = False  # no geometry known: one GEMM with the same MACs (M = outputs, N = 1)
    # Times this batch of GEMMs runs one after another (recurrent steps, loop trips): each waits for the
    # last, so they cannot share out the units the way `batch` does.
    serial: int = 1
    int8: bool = False  # operands are 8-bit integers (a QLinear/Integer kernel): a CPU's int8 GEMM rate

    def __post_init__(self):
        # A degenerate dim (a malformed node) still occupies one unit: never zero, never negative.
        for f in ("batch", "m", "n", "k", "serial"):
            object.__setattr__(self, f, max(int(getattr(self, f)), 1))

    @property
    def macs(self) -> int:
        return self.batch * self.m * self.n * self.k * self.serial

    def repeated(self, times: int) -> Gemm:
        """This GEMM run `times` more times in sequence (a loop's trips)."""
        return replace(self, serial=self.serial * times)


@dataclass(frozen=True)
class Work:
    """What a formula returns. Traffic defaults to every input read and every output written in full;
    `reads`/`writes` override that per input/output index (a Gather reads only the rows it picks)."""

    macs: int = 0
    flops: int = 0
    kind: OpKind = OpKind.ELEMENTWISE
    # The matrix work as GEMMs; their MACs add up to `macs` (a formula with MACs and no geometry gets one
    # approximate GEMM in `evaluate`, flagged).
    gemms: tuple[Gemm, ...] = ()
    reads: dict[int, int] | None = None
    writes: dict[int, int] | None = None
    # Control flow: the traffic of the nested graphs as run, which replaces the node's own I/O.
    nested: Cost | None = None
    notes: tuple[str, ...] = ()
    # Nested graphs costed for this node (control flow): (label, costs, times executed).
    children: tuple = field(default=())


@dataclass(frozen=True, slots=True)
class Traffic:
    """Per-tensor DRAM traffic of one node, the unit fusion works in."""

    reads: tuple[tuple[str, int, bool], ...] = ()  # (tensor, bytes, is a weight)
    writes: tuple[tuple[str, int], ...] = ()


class MissingShape(Exception):
    """A formula needed a shape that inference left unknown."""

    def __init__(self, tensor: str):
        super().__init__(tensor)
        self.tensor = tensor


class MalformedNode(Exception):
    """The node breaks its op's spec: a required input or attribute absent, an attribute of the wrong type,
    an input of the wrong rank. The OpContext accessors raise it, so cost_graph can report the node as
    invalid with this reason; any other exception out of a formula is a bug in the formula."""


_REQUIRED = object()
Ranks = int | tuple[int, ...] | None  # the ranks an op's spec allows for one input or output


class OpContext:
    """Shapes, dtypes and attributes of one node, as its cost formula sees them."""

    def __init__(self, node, graph, precision: str, subgraph_coster=None, byte_cache: dict | None = None,
                 stored: Mapping[str, float] | None = None):
        self.node = node
        self.graph = graph
        self.precision = precision
        self.stored = stored  # tensor name -> bits in memory (a storage what-if; dtypes.tensor_nbytes)
        self._subgraph_coster = subgraph_coster
        self._bytes = {} if byte_cache is None else byte_cache  # tensor name -> bytes, shared per graph
        self._own = graph.tensors  # this scope's tensors: most lookups end here (_tensor)

    def _tensor(self, name: str):
        """graph.tensor(name), without walking the scopes for this graph's own tensors."""
        t = self._own.get(name)
        return t if t is not None else self.graph.tensor(name)

    # -- inputs and outputs ---------------------------------------------------------------------------
    def has(self, i: int) -> bool:
        return i < len(self.node.inputs) and bool(self.node.inputs[i])

    @property
    def n_inputs(self) -> int:
        return len(self.node.inputs)

    def _static(self, name: str) -> tuple[int, ...]:
        t = self._tensor(name)
        if not t.static:
            raise MissingShape(name)
        return t.shape  # type: ignore[return-value]

    def _input(self, i: int) -> str:
        if not self.has(i):
            raise MalformedNode(f"input {i} is absent")
        return self.node.inputs[i]

    def _output(self, i: int) -> str:
        if i >= len(self.node.outputs) or not self.node.outputs[i]:
            raise MalformedNode(f"output {i} is absent")
        return self.node.outputs[i]

    def shape(self, i: int, rank: Ranks = None, min_rank: int = 0) -> tuple[int, ...]:
        """Input i's static shape; absent, or of a rank other than `rank` (one or a tuple of them) or under
        `min_rank`, the node is malformed."""
        shape = self._static(self._input(i))
        if rank is None and not min_rank:
            return shape
        return _ranked(shape, f"input {i}", rank, min_rank)

    def out(self, i: int = 0, rank: Ranks = None, min_rank: int = 0) -> tuple[int, ...]:
        shape = self._static(self._output(i))
        if rank is None and not min_rank:
            return shape
        return _ranked(shape, f"output {i}", rank, min_rank)

    def numel(self, i: int) -> int:
        return _prod(self.shape(i))

    def numel_out(self, i: int = 0) -> int:
        return _prod(self.out(i))

    def attr(self, name: str, default=None):
        return self.node.attr(name, default)

    def int_attr(self, name: str, default=_REQUIRED, lo: int | None = None) -> int:
        """An INT attribute; without a default it is required. Absent (and required), of another type, or
        under `lo`: the node is malformed."""
        v = self._attr(name, default)
        if type(v) is not int:
            raise MalformedNode(f"attribute {name!r} is {v!r:.40}, not an integer")
        if lo is not None and v < lo:
            raise MalformedNode(f"attribute {name!r} is {v}, under {lo}")
        return v

    def ints_attr(self, name: str, default=_REQUIRED) -> list[int]:
        """An INTS attribute; an empty list is taken as absent (onnx writes none for an empty one)."""
        v = self._attr(name, default, empty_is_absent=True)
        if not isinstance(v, list | tuple) or any(type(x) is not int for x in v):
            raise MalformedNode(f"attribute {name!r} is {v!r:.40}, not a list of integers")
        return list(v)

    def str_attr(self, name: str, default=_REQUIRED) -> str:
        v = self._attr(name, default)
        if isinstance(v, bytes):
            try:
                return v.decode()
            except UnicodeDecodeError:
                raise MalformedNode(f"attribute {name!r} is not UTF-8 text") from None
        if not isinstance(v, str):
            raise MalformedNode(f"attribute {name!r} is {v!r:.40}, not text")
        return v

    def _attr(self, name: str, default, empty_is_absent: bool = False):
        v = self.node.attr(name)
        if v is None or (empty_is_absent and isinstance(v, list) and not v):
            v = default
        if v is _REQUIRED:
            raise MalformedNode(f"required attribute {name!r} is absent")
        return v

    def const_value(self, i: int):
        return self.graph.constant_value(self.node.inputs[i]) if self.has(i) else None

    def const_int(self, i: int) -> int | None:
        """Input i's value where it is a known one-element constant (a count, a length), else None; one that
        is not an integer breaks the op's spec."""
        v = self.const_value(i)
        if v is None or v.size != 1:
            return None
        if v.dtype.kind not in "iu":
            raise MalformedNode(f"input {i} is a constant of {v.dtype}, not an integer")
        return int(v.reshape(-1)[0])

    # -- bytes ----------------------------------------------------------------------------------------
    def tensor_bytes(self, name: str) -> int:
        b = self._bytes.get(name)
        if b is None:
            t = self._tensor(name)
            if not t.static:
                raise MissingShape(name)
            b = self._bytes[name] = tensor_nbytes(t, self.precision, self.stored)
        return b

    def in_bytes(self, i: int) -> int:
        return self.tensor_bytes(self.node.inputs[i]) if self.has(i) else 0

    def out_bytes(self, i: int = 0) -> int:
        return self.tensor_bytes(self._output(i))

    def elem_bytes_of_input(self, i: int, numel: int) -> int:
        """`numel` elements of input i's dtype at the chosen precision."""
        return nbytes(numel, self._tensor(self._input(i)).dtype, self.precision)

    def is_const(self, i: int) -> bool:
        return self.has(i) and self._tensor(self.node.inputs[i]).const

    def is_weight(self, i: int) -> bool:
        if not self.has(i):
            return False
        t = self._tensor(self.node.inputs[i])
        return t.const and t.dtype in PARAM_TYPES

    def cost_subgraph(self, attr_name: str):
        g = self.node.subgraphs().get(attr_name)
        if g is None or self._subgraph_coster is None:
            return None
        return self._subgraph_coster(g, self.graph)

    # -- the default traffic ---------------------------------------------------------------------------
    def traffic(self, reads: dict[int, int] | None = None, writes: dict[int, int] | None = None) -> Traffic:
        r = []
        for i, name in enumerate(self.node.inputs):
            if name:
                b = reads[i] if reads and i in reads else self.tensor_bytes(name)
                t = self._tensor(name)  # is_weight(i)
                r.append((name, b, t.const and t.dtype in PARAM_TYPES))
        w = []
        for i, name in enumerate(self.node.outputs):
            if name:
                w.append((name, writes[i] if writes and i in writes else self.tensor_bytes(name)))
        return Traffic(tuple(r), tuple(w))


def _ranked(shape: tuple[int, ...], what: str, rank: Ranks, min_rank: int) -> tuple[int, ...]:
    ranks = (rank,) if isinstance(rank, int) else rank
    if len(shape) < min_rank or (ranks is not None and len(shape) not in ranks):
        want = " or ".join(map(str, ranks)) if ranks else f"at least {min_rank}"
        raise MalformedNode(f"{what} has rank {len(shape)}, not {want}")
    return shape


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


Formula = Callable[[OpContext], Work]
_REGISTRY: dict[tuple[str, str], Formula] = {}


def cost(*op_types: str, domain: str = ""):
    """Register a formula for op types of a domain; registering an op twice is a bug, not an override."""

    def deco(fn: Formula) -> Formula:
        for op in op_types:
            key = (domain, op)
            if key in _REGISTRY:
                raise RuntimeError(f"cost formula for {domain or 'ai.onnx'}::{op} registered twice")
            _REGISTRY[key] = fn
        return fn

    return deco


def formula_for(domain: str, op_type: str) -> Formula | None:
    return _REGISTRY.get(("" if domain == "ai.onnx" else domain, op_type))


def covered_ops() -> list[tuple[str, str]]:
    return sorted(_REGISTRY)


def evaluate(ctx: OpContext) -> tuple[Cost, Traffic, Work]:
    """Run a node's formula and settle its traffic. Raises KeyError if uncovered, MissingShape if unshaped,
    MalformedNode if the node breaks its op's spec."""
    fn = _REGISTRY[(ctx.node.domain, ctx.node.op_type)]
    work = fn(ctx)
    if work.macs > 0 and not work.gemms:
        n_out = max(ctx.numel_out(), 1) if ctx.node.outputs and ctx.node.outputs[0] else 1
        work = replace(work, gemms=(Gemm(1, n_out, 1, work.macs // n_out, False, approx=True),))
    if work.kind == OpKind.SHAPE:
        traffic = Traffic()
    elif work.nested is not None:
        # Control flow: its cost is its bodies'; its own I/O only matters for fusion, so an output whose
        # shape inference cannot follow (a loop-carried value) must not void the whole loop.
        try:
            traffic = ctx.traffic(work.reads, work.writes)
        except MissingShape:
            traffic = Traffic()
    else:
        traffic = ctx.traffic(work.reads, work.writes)
    if work.nested is not None:
        n = work.nested
        return (Cost(work.macs, work.flops, n.bytes_read, n.bytes_written, n.weight_bytes, work.kind),
                traffic, work)
    return cost_of(work.macs, work.flops, work.kind, traffic), traffic, work


def cost_of(macs: int, flops: int, kind: OpKind, traffic: Traffic) -> Cost:
    read = weights = written = 0
    for _, b, w in traffic.reads:
        if w:
            weights += b
        else:
            read += b
    for _, b in traffic.writes:
        written += b
    return Cost(macs, flops, read, written, weights, kind)

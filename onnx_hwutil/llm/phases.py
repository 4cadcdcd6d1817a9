"""A decoder's two phases on one chip: the cache bound for the phase, storage what-ifs priced, fused, mapped.

Prefill runs the prompt with an empty cache (past 0, new = prompt); decode runs one new token with a past of
`context` tokens (DESIGN.md, LLM phases). Every number comes from the real graph bound at those lengths, so
GQA, fused attention ops, MatMulNBits and whatever else the exporter wrote are priced as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache, cached_property

import networkx as nx

from ..bindings import Bindings
from ..dtypes import FLOATING, element_bits
from ..errors import HwUtilError
from ..fusion import FusedGraph, fuse
from ..hardware import HardwareSpec
from ..hardware.mapping import Schedule, schedule
from ..ops import OpKind
from ..profile import BoundModel, Profile, bind
from .detect import Decoder

PHASES = ("prefill", "decode")
# Bits one weight takes in memory, scales included, per what-if. int4: ONNX Runtime's MatMulNBits layout at
# its default block of 32 with one fp16 scale per block (symmetric: no zero points); int8: one fp16 scale per
# output channel (16 / K bits a weight); fp8: one scale per tensor (nothing per weight).
WEIGHT_FORMATS = {"model": None, "int8": lambda k: 8 + 16 / k, "int4": lambda k: 4 + 16 / 32,
                  "fp8": lambda k: 8.0}
# KV cache: int8 with one fp16 scale per token and head (16 / head_dim bits an element), fp8 per tensor.
KV_FORMATS = {"model": None, "int8": lambda head: 8 + 16 / head, "fp8": lambda head: 8.0}


@dataclass(frozen=True)
class Phase:
    name: str  # "prefill" or "decode"
    batch: int
    context: int  # prefill: the prompt length; decode: the tokens already in the cache

    @property
    def past(self) -> int:
        return 0 if self.name == "prefill" else self.context

    @property
    def new(self) -> int:
        return self.context if self.name == "prefill" else 1


@dataclass
class PhaseRun:
    """One phase on one chip: the schedule and the memory it needs."""

    phase: Phase
    spec: HardwareSpec
    schedule: Schedule
    fused: FusedGraph
    weight_bytes: int
    kv_cache_bytes: int  # the cache after this step (past + new tokens), whole batch
    kv_read_bytes: int  # the cache this step reads (what bounds decode with the weights)
    weight_read_bytes: int  # the weights this step reads: each once, an embedding table only its rows
    activation_bytes: int  # live activations at the peak, the cache left out (it is counted above)
    layers: int  # decoder layers (for the all-reduces of tensor parallelism)

    @cached_property
    def split_kernels(self) -> set[int]:
        """Kernels with matrix work: what tensor parallelism splits over devices (heads, MLP columns)."""
        return {s.id for s in self.fused.subgraphs if s.kind == OpKind.MATRIX}


class DecoderModel:
    """One decoder file: bound graphs per (batch, past, new), profiles per storage what-if, each made once."""

    def __init__(self, path: str, decoder: Decoder, shapes: dict | None = None, dims: dict | None = None):
        self.path = path
        self.decoder = decoder
        self.shapes = dict(shapes or {})
        self.user_dims = dict(dims or {})
        self.bound = cache(self._bind)
        self.profile = cache(self._profile)
        self.fused = cache(self._fuse)

    def _bind(self, batch: int, past: int, new: int) -> BoundModel:
        d = self.decoder
        dims = d.dims(batch, past, new)
        clash = {k: v for k, v in self.user_dims.items() if k in dims and dims[k] != v}
        if clash:
            k = next(iter(clash))
            raise HwUtilError(f"--dim {k}={clash[k]}: `llm` sets {k!r} per phase (batch, past, new tokens); "
                              "use --batch, --context and --prompt instead")
        rebatch = batch if not isinstance(d.batch_dim, str) and d.batch_dim != batch else None
        return bind(self.path, Bindings(self.shapes, self.user_dims | dims, rebatch))

    def _profile(self, batch: int, past: int, new: int, precision: str, weights: str, kv: str) -> Profile:
        bound = self.bound(batch, past, new)
        if (weights, kv) == ("model", "model"):
            return Profile(bound, precision)
        base = self.profile(batch, past, new, precision, "model", "model")  # cached: what-ifs share it
        return Profile(bound, precision, self.stored_bits(base, weights, kv))

    def _fuse(self, batch: int, past: int, new: int, precision: str, weights: str, kv: str,
              fusion: str) -> FusedGraph:
        return fuse(self.profile(batch, past, new, precision, weights, kv), fusion)

    def stored_bits(self, base: Profile, weights: str, kv: str) -> dict[str, float]:
        """Tensor -> bits in memory for the what-ifs, read off the file's own profile `base`: the floating
        weights of matrix ops (what a weight-only quantizer converts; embeddings and norms stay), and the
        cache tensors."""
        bound = base.bound
        out: dict[str, float] = {}
        if WEIGHT_FORMATS[weights] is not None:
            for nc in base.costs.nodes:
                if nc.cost.kind != OpKind.MATRIX or not nc.gemms:
                    continue
                for t in nc.node.inputs:
                    x = bound.graph.lookup(t) if t else None
                    if x is not None and x.const and x.dtype in FLOATING and x.shape and len(x.shape) >= 2:
                        out[t] = WEIGHT_FORMATS[weights](max(nc.gemms[0].k, 1))
        if KV_FORMATS[kv] is not None:
            for c in self.decoder.caches:
                head = (bound.graph.lookup(c.past).shape or (1,))[-1] or 1
                out[c.past] = out[c.present] = KV_FORMATS[kv](head)
        return out

    def cache_bytes(self, profile: Profile, tokens: int) -> int:
        """Bytes of the whole batch's cache holding `tokens` tokens per sequence, at the what-if's storage:
        each cache input's bound shape (batch, heads, head size as the graph has them) per token."""
        total = 0.0
        for c in self.decoder.caches:
            shape = profile.bound.inputs[c.past]
            per_token = math.prod(d for i, d in enumerate(shape) if i != c.seq_axis)
            dtype = profile.graph.tensor(c.past).dtype
            bits = profile.stored.get(c.past) or element_bits(dtype, profile.precision)
            total += per_token * tokens * bits / 8
        return math.ceil(total)

    def run(self, phase: Phase, spec: HardwareSpec, precision: str, weights: str, kv: str,
            fusion: str) -> PhaseRun:
        key = (phase.batch, phase.past, phase.new, precision, weights, kv)
        p = self.profile(*key)
        f = self.fused(*key, fusion)
        s = schedule(f, spec, precision, phase.batch)
        cache_names = {c.past for c in self.decoder.caches} | {c.present for c in self.decoder.caches}
        act = kernel_peak_bytes(f, cache_names)
        return PhaseRun(phase, spec, s, f, p.totals.weight_bytes,
                        self.cache_bytes(p, phase.past + phase.new), self.cache_bytes(p, phase.past),
                        weight_reads(p), act, self.decoder.layers)


def kernel_peak_bytes(fused: FusedGraph, exclude: set[str]) -> int:
    """The most activation memory held at once when the graph runs as `fused` does: the buffers that cross
    kernel boundaries, each alive from the kernel that writes it (graph inputs: from the start) to the last
    that reads it (graph outputs: to the end). A fused kernel's intermediates never reach memory, so fused
    attention holds no score matrix, unlike the unfused graph's liveness (memory.py)."""
    order = list(nx.lexicographical_topological_sort(fused.dag()))  # subgraph ids are not execution order
    subs = [fused.subgraphs[i] for i in order]
    start: dict[str, int] = {}
    end: dict[str, int] = {}
    size: dict[str, int] = {}
    for i, sub in enumerate(subs):
        for name, b, weight in sub.reads:
            if not weight and name not in exclude:
                start.setdefault(name, 0)
                end[name] = i
                size[name] = max(size.get(name, 0), b)
        for name, b in sub.writes:
            if name not in exclude:
                start.setdefault(name, i)
                end.setdefault(name, i)
                size[name] = max(size.get(name, 0), b)
    for name in fused.profile.graph.outputs:
        if name in end:
            end[name] = len(subs)
    delta = [0] * (len(subs) + 2)
    for name, b in size.items():
        delta[start[name]] += b
        delta[end[name] + 1] -= b
    live = peak = 0
    for d in delta:
        live += d
        peak = max(peak, live)
    return peak


def weight_reads(profile: Profile) -> int:
    """Bytes of weights one run must read at the least: each weight tensor once, at the most any node reads
    of it (a Gather reads only the rows it looks up, so an embedding table is not streamed whole)."""
    most: dict[str, int] = {}
    for nc in profile.costs.nodes:
        for name, b, weight in nc.traffic.reads:
            if weight:
                most[name] = max(most.get(name, 0), b)
    return sum(most.values())

"""A fused model's kernels and its peak memory at any batch, from batches 1 and 2, where affine in the batch.

rescale.py extrapolates a bound model's shapes, but each batch it gives is still costed, settled into kernels
and walked for its peak memory again: some 50 ms on ViT-B/16, and findings' batch search tries dozens of
batches. Where the fusion passes chose the same kernels at batches 1, 2 and PROBE_BATCH (analysis.py checks
that), every number the mapping reads (a kernel's MACs, FLOPs and bytes per buffer, its GEMMs' dims) and the
activation bytes alive at each step are sums of products of dims, each affine in the batch, so in nearly
every model they are affine too: two batches give every other one. Nothing is taken on trust: a line exists
only where extrapolating from batches 1 and 2 reproduced every one of those numbers at PROBE_BATCH exactly.
A cost that multiplies two batch-scaled dims (CLIP's batch x batch logits) is not affine; its probe differs
and such a model takes the slow path at every batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .fusion import FusedGraph
from .fusion.fused import Subgraph
from .profile import Profile
from .rescale import PROBE_BATCH


@dataclass(frozen=True)
class Kernels:
    """What hardware.mapping.schedule maps, as a FusedGraph holds it: the kernels at one batch."""

    subgraphs: list[Subgraph]
    preset: str
    coverage_notes: list[str]
    coverage: dict


class KernelLine:
    """The kernels of fused graphs at batches 1, 2 and PROBE_BATCH (same partition), at any batch."""

    def __init__(self, fused: FusedGraph, base: list[int], step: list[int]):
        """`fused`: the graph at PROBE_BATCH, whose kernels these are but for their numbers."""
        self._template = fused
        self._base, self._step = base, step

    def at(self, batch: int) -> Kernels | None:
        """The kernels at `batch`, or None where a number would fall below zero (a dim the batch shrinks:
        binding refuses such a batch as well)."""
        k = batch - 1
        v = [a + d * k for a, d in zip(self._base, self._step, strict=True)]
        if min(v, default=0) < 0:
            return None
        subs, i = [], 0
        for s in self._template.subgraphs:
            sub, i = _rebuilt(s, v, i)
            subs.append(sub)
        f = self._template
        return Kernels(subs, f.preset, f.coverage_notes, f.coverage)


class PeakLine:
    """Peak memory of profiles at batches 1, 2 and PROBE_BATCH (one graph, one precision), at any batch."""

    def __init__(self, weight_bytes: int, base: list[int], step: list[int]):
        self._weights, self._base, self._step = weight_bytes, base, step

    def peak_memory_bytes(self, batch: int) -> int | None:
        """The peak at `batch`, or None where some step's bytes would fall below zero (as KernelLine.at)."""
        k = batch - 1
        live = [a + d * k for a, d in zip(self._base, self._step, strict=True)]
        return None if min(live, default=0) < 0 else self._weights + max(live, default=0)


def kernel_line(fused: list[FusedGraph]) -> KernelLine | None:
    """The line through fused graphs at batches 1, 2 and PROBE_BATCH (in that order, one partition), or
    None where the third is not on it, number for number. What is not a number (a kernel's label, its
    op kind, the notes...) comes from PROBE_BATCH and must be the same at batch 2: batch 1 may differ
    there (an Add of a batch-1 tensor to one of the same shape broadcasts nothing), the batches past 2
    not."""
    _, two, probe = fused
    if two.coverage_notes != probe.coverage_notes or two.coverage != probe.coverage:
        return None
    slots = [[_slots(s) for s in f.subgraphs] for f in fused]
    if slots[0] != slots[1] or slots[0] != slots[2] \
            or [_structure(s) for s in two.subgraphs] != [_structure(s) for s in probe.subgraphs]:
        return None
    line = _line(*([n for s in f.subgraphs for n in _numbers(s)] for f in fused))
    return KernelLine(probe, *line) if line else None


def peak_line(profiles: list[Profile]) -> PeakLine | None:
    """The line through the peak memory of profiles at batches 1, 2 and PROBE_BATCH, step by step, or None
    where the third is not on it."""
    lives = [p.live_activation_bytes[0] for p in profiles]
    weights = {p.totals.weight_bytes for p in profiles}
    if len(weights) != 1 or len({len(x) for x in lives}) != 1:
        return None
    line = _line(*lives)
    return PeakLine(weights.pop(), *line) if line else None


def _line(one: list[int], two: list[int], probe: list[int]) -> tuple[list[int], list[int]] | None:
    """(values at batch 1, change per batch), or None where `probe` is not on that line exactly."""
    step = [b - a for a, b in zip(one, two, strict=True)]
    k = PROBE_BATCH - 1
    if any(a + d * k != p for a, d, p in zip(one, step, probe, strict=True)):
        return None
    return one, step


def _numbers(s: Subgraph) -> list[int]:
    """Every number of a kernel the batch may change, in _rebuilt's order."""
    out = [s.macs, s.flops, s.bytes_read, s.bytes_written, s.weight_bytes, s.working_set_bytes, s.matrix_macs]
    out += [b for _, b, _ in s.reads]
    out += [b for _, b in s.writes]
    for g in s.gemms:
        out += (g.batch, g.m, g.n, g.k, g.serial)
    return out


def _slots(s: Subgraph) -> tuple:
    """Where _numbers finds each number: the same at every batch of a line."""
    return s.id, s.nodes, tuple(r for r, _, _ in s.reads), tuple(r for r, _ in s.writes), len(s.gemms)


def _structure(s: Subgraph) -> tuple:
    """Everything of a kernel but its numbers."""
    return (_slots(s), s.label, s.kind, s.folded, s.tiled, s.approx_nodes, s.int8,
            tuple(w for _, _, w in s.reads), tuple((g.weight_stationary, g.approx, g.int8) for g in s.gemms))


def _rebuilt(s: Subgraph, v: list[int], i: int) -> tuple[Subgraph, int]:
    """`s` with the numbers v[i:] (as _numbers lists them), and the index past them."""
    macs, flops, rd, wr, wb, ws, mm = v[i:i + 7]
    i += 7
    reads = tuple((r, v[i + j], w) for j, (r, _, w) in enumerate(s.reads))
    i += len(s.reads)
    writes = tuple((r, v[i + j]) for j, (r, _) in enumerate(s.writes))
    i += len(s.writes)
    gemms = []
    for g in s.gemms:
        gemms.append(replace(g, batch=v[i], m=v[i + 1], n=v[i + 2], k=v[i + 3], serial=v[i + 4]))
        i += 5
    return Subgraph(s.id, s.nodes, s.label, s.kind, macs, flops, rd, wr, wb, ws, s.folded, s.tiled, reads,
                    writes, tuple(gemms), mm, s.approx_nodes, s.int8), i


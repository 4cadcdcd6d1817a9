"""Fusion: the graph rewritten, as a partition, into the kernels a runtime would launch.

Presets are lists of passes; a pass manager runs the list to a fixpoint on a copy of the partition.
"""

from __future__ import annotations

from ..errors import HwUtilError
from ..profile import Profile
from .fused import FusedGraph, Subgraph
from .partition import Partition
from .passes import PASSES, Context

PRESETS: dict[str, list[str]] = {
    "none": [],
    # What ONNX Runtime's CPU optimizer does at ORT_ENABLE_EXTENDED: folds shape math, BN into Conv,
    # transposes and scales into matmul operands, bias/scale/activation after matrix ops, and decomposed
    # norms and GELU into single kernels (checked by scripts/compare_fusion_ort.py).
    "runtime": ["shape", "conv_bn", "norm", "operand", "activation"],
    # What a fusing compiler (TVM, XLA, TensorRT) can do, attention included.
    "aggressive": ["shape", "conv_bn", "norm", "operand", "attention", "epilogue", "elementwise",
                   "aggressive"],
}
MAX_ROUNDS = 8


def resolve_passes(preset: str | None = None, passes: list[str] | None = None,
                   disable: list[str] | None = None) -> tuple[str, list[str]]:
    if passes:
        unknown = [p for p in passes if p not in PASSES]
        if unknown:
            raise HwUtilError(f"unknown fusion pass {unknown[0]!r}; passes: {', '.join(PASSES)}")
        name, chosen = "custom", list(passes)
    else:
        name = preset or "runtime"
        if name not in PRESETS:
            raise HwUtilError(f"unknown fusion preset {name!r}; presets: {', '.join(PRESETS)}")
        chosen = list(PRESETS[name])
    for d in disable or []:
        if d not in PASSES:
            raise HwUtilError(f"--disable {d}: unknown pass; passes: {', '.join(PASSES)}")
        if d in chosen:
            chosen.remove(d)
            name = f"{name}-{d}"
    return name, chosen


def fuse(profile: Profile, preset: str | None = None, passes: list[str] | None = None,
         disable: list[str] | None = None) -> FusedGraph:
    """Run a preset (or a list of passes) to a fixpoint; the profiled graph is never modified."""
    name, chosen = resolve_passes(preset, passes, disable)
    ctx = Context(profile.graph, profile.costs.nodes)
    part = Partition.singletons(profile.graph).copy()
    merges = dict.fromkeys(chosen, 0)
    for _ in range(MAX_ROUNDS):
        changed = 0
        for p in chosen:
            before = part.merges
            PASSES[p]().run(ctx, part)
            merges[p] += part.merges - before
            changed += part.merges - before
        if not changed:
            break
    return FusedGraph(profile, part, name, chosen, merges)


__all__ = ["PASSES", "PRESETS", "FusedGraph", "Subgraph", "fuse", "resolve_passes"]

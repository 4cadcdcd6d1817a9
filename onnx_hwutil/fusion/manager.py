"""The pass manager: presets are lists of passes, run to a fixpoint on a partition of the graph, with the
partition's invariants checked after every pass that changed it (and once more at the end) and the passes'
own contracts once nothing changes."""

from __future__ import annotations

from ..errors import HwUtilError
from ..profile import Profile
from .chains import ActivationPass, ConvBnPass, OperandPass
from .context import Context, FusionPass, PassResult
from .contract import check_costs, check_fixpoint, check_partition
from .fused import FusedGraph
from .kinds import AggressivePass, ElementwisePass, EpiloguePass, ShapePass
from .ort_rules import NchwcPass, QuickGeluPass
from .partition import Partition
from .qdq import QdqPass
from .regions import AttentionPass, NormPass, OrtNormPass

PASSES: dict[str, type[FusionPass]] = {p.name: p for p in (
    ShapePass, ConvBnPass, OperandPass, ActivationPass, EpiloguePass, ElementwisePass, NormPass, OrtNormPass,
    QuickGeluPass, NchwcPass, QdqPass, AttentionPass, AggressivePass)}
PRESETS: dict[str, list[str]] = {
    "none": [],
    # What a default ONNX Runtime CPU session runs (ORT_ENABLE_ALL): folds shape math, BN into Conv,
    # QDQ node units (DQ -> op -> Q) into quantized kernels, decomposed norms and GELU (ORT's own patterns
    # only) and x*sigmoid(x) into single kernels, transposes and scales into matmul operands,
    # bias/scale/activation after matrix ops, and (NCHWc, CPU only) a residual Add and its Relu into a Conv
    # (checked by scripts/compare_fusion_ort.py). One preset for every chip: a per-kind `auto` is not built.
    "runtime": ["shape", "conv_bn", "qdq", "ort_norm", "quick_gelu", "operand", "activation", "nchwc"],
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


def run_passes(profile: Profile, preset: str | None = None, passes: list[str] | None = None,
               disable: list[str] | None = None) -> tuple[FusedGraph, list[list[PassResult]]]:
    """`fuse`, with every round's pass results (what each pass merged and what its rules refused)."""
    name, chosen = resolve_passes(preset, passes, disable)
    ctx = Context(profile.graph, profile.costs.nodes)
    part = Partition.singletons(profile.graph)
    rounds: list[list[PassResult]] = []
    checked = None
    for _ in range(MAX_ROUNDS):
        results = []
        for p in chosen:
            results.append(PASSES[p]().run(ctx, part))
            # Checking costs O(graph) per pass: after a pass that visibly changed nothing it is skipped, and
            # the final check below still catches a pass that changed groups behind Partition.merge's back.
            state = (part.version, len(part.members), len(part.folded), len(part.static))
            if state != checked:
                check_partition(ctx, part, p)
                checked = state
        rounds.append(results)
        if not any(r.changed for r in results):
            check_fixpoint(ctx, part, chosen)
            break
    check_partition(ctx, part, f"one of {', '.join(chosen)}" if chosen else "none")
    merges = {p: sum(len(r.merges) for rs in rounds for r in rs if r.pass_name == p) for p in chosen}
    fused = FusedGraph(profile, part, name, chosen, merges)
    check_costs(fused)
    return fused, rounds


def fuse(profile: Profile, preset: str | None = None, passes: list[str] | None = None,
         disable: list[str] | None = None) -> FusedGraph:
    """Run a preset (or a list of passes) to a fixpoint; the profiled graph is never modified."""
    return run_passes(profile, preset, passes, disable)[0]

"""The pass manager: presets are lists of passes, run to a fixpoint on a partition of the graph, with the
partition's invariants checked after every pass that changed it (and once more at the end) and the passes'
own contracts once nothing changes. One preset is no list of passes: `ort` asks onnxruntime (ort_graph.py)."""

from __future__ import annotations

from ..errors import HwUtilError
from ..profile import Profile
from .chains import ActivationPass, ConvBnPass, ConvMulAddPass, OperandPass
from .context import Context, FusionPass, PassResult
from .contract import check_costs, check_fixpoint, check_partition
from .dynamic_quant import DynamicQuantPass
from .fused import FusedGraph
from .kinds import AggressivePass, ElementwisePass, EpiloguePass, ShapePass
from .ort_conv import ConvAddActPass, NchwcPass
from .ort_fold import OrtShapePass
from .ort_graph import fuse_ort
from .ort_level1 import OrtLevel1Pass, PadFusionPass
from .ort_rules import QuickGeluPass, SliceSplitPass
from .partition import Partition
from .qdq import QdqPass
from .regions import AttentionPass, NormPass, OrtNormPass

PASSES: dict[str, type[FusionPass]] = {p.name: p for p in (
    ShapePass, OrtShapePass, ConvBnPass, ConvMulAddPass, OperandPass, ActivationPass, EpiloguePass,
    ElementwisePass, NormPass, OrtNormPass, QuickGeluPass, NchwcPass, ConvAddActPass, SliceSplitPass, QdqPass,
    DynamicQuantPass, AttentionPass, AggressivePass, PadFusionPass, OrtLevel1Pass)}
PRESETS: dict[str, list[str]] = {
    "none": [],
    # What a default ONNX Runtime CPU session runs (ORT_ENABLE_ALL): folds shape math (never a
    # DequantizeLinear), BN and a constant per-channel Mul and Add into Conv, QDQ node units (DQ -> op -> Q)
    # and dynamically quantized MatMuls (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul) into quantized
    # kernels, decomposed norms and GELU (ORT's own patterns only) and x*sigmoid(x) into
    # single kernels, transposes and scales into matmul operands, bias/scale/activation after matrix ops
    # (an activation after a MatMul only with its bias, as a Gemm; no Add into a Gemm or ConvTranspose),
    # (NCHWc, CPU only) a residual Add and its Relu, or a HardSwish, into a Conv, a residual Add and an
    # activation into a biased Conv NCHWc leaves (ConvAddActivationFusion), and Slices cutting one
    # tensor into adjacent pieces into one Split, and a zero constant Pad into the pads of the Conv or
    # AveragePool reading it; a Relu before a Clip, 1 / x before a Mul and a Not before Wheres dropped
    # (checked by scripts/compare_fusion_ort.py).
    "runtime": ["ort_shape", "pad_fusion", "ort_level1", "conv_bn", "conv_mul_add", "qdq", "dynamic_quant",
                "ort_norm", "quick_gelu", "operand", "activation", "nchwc", "conv_add_act",
                "slice_split"],
    # TensorRT's build-time fusions (Layer Fusion Catalog, docs.nvidia.com/deeplearning/tensorrt/latest/
    # performance/fusion-catalog.html; Fused Attention, same site, inference-library/
    # transformers-fused-attention.html):
    # Conv/GEMM with bias, activation and a residual sum in the epilogue, adjacent pointwise layers as one,
    # normalization layers, Q/DQ folded into int8 kernels, MHA/GQA as one attention kernel. Never checked
    # against a TensorRT engine (no GPU here): a what-it-documents, not a measured, preset.
    "tensorrt": ["shape", "conv_bn", "qdq", "norm", "operand", "attention", "epilogue", "elementwise"],
    # XLA's HLO fusion (openxla.org/xla/architecture; xla/service/instruction_fusion.cc and the TPU/GPU
    # fusible rules): producer-consumer loop fusion of elementwise ops, reductions taking their elementwise
    # inputs, a convolution or dot taking its elementwise consumers (output fusion) and dequantizing
    # producers; attention stays matmul, softmax, matmul (a flash-attention kernel is a hand-written custom
    # call, not XLA's). Not checked against a compiled XLA program.
    "xla": ["shape", "conv_bn", "qdq", "norm", "operand", "epilogue", "elementwise", "aggressive"],
    # What a fusing compiler (TVM, XLA, TensorRT) can do at most, attention included: the upper what-if.
    "aggressive": ["shape", "conv_bn", "norm", "operand", "attention", "epilogue", "elementwise",
                   "aggressive"],
}
# `auto`: per chip kind, the runtime people deploy there. kpu covers NPUs whose vendor compilers (Core ML,
# QNN, nncase, the KPU's own) publish no fusion rules: an XLA-like graph compiler is our assumption.
AUTO = {"cpu": "runtime", "gpu": "tensorrt", "tpu": "xla", "kpu": "xla"}
# `ort`: onnxruntime's own optimized graph, mapped back onto ours (ort_graph.py): no passes to choose from or
# disable. As strong as the runtime rules that mirror it; a what-if only for a point that asked for it.
ORT = "ort"
# Weakest to strongest: the order the findings' "stronger fusion" and "less fusion" what-ifs walk.
STRENGTH = ["none", "runtime", ORT, "tensorrt", "xla", "aggressive"]
CHOICES = ["auto", *PRESETS, ORT]


def for_chip(preset: str | None, kind: str | None) -> str:
    """The preset a point runs: `auto` (or nothing) becomes its chip kind's; without a chip, ORT's rules."""
    if preset in (None, "auto"):
        return AUTO.get(kind or "cpu", "runtime")
    return preset


def what_ifs(preset: str) -> list[str]:
    """The presets a point's fusion what-ifs try, weakest first: none, its own, aggressive. Another
    runtime's rules (TensorRT's on a CPU) are no option a user of that chip has."""
    return [p for p in STRENGTH if p in ("none", preset, "aggressive")]


MAX_ROUNDS = 8


def resolve_passes(preset: str | None = None, passes: list[str] | None = None,
                   disable: list[str] | None = None) -> tuple[str, list[str]]:
    if preset == ORT:
        if passes or disable:
            flag = "--passes" if passes else "--disable"
            raise HwUtilError(f"{flag} does not apply to the ort preset: it is onnxruntime's own graph, not "
                              "a list of passes (choose passes with the runtime preset)")
        return ORT, []
    if passes:
        unknown = [p for p in passes if p not in PASSES]
        if unknown:
            raise HwUtilError(f"unknown fusion pass {unknown[0]!r}; passes: {', '.join(PASSES)}")
        name, chosen = "custom", list(passes)
    else:
        name = for_chip(preset, None)
        if name not in PRESETS:
            raise HwUtilError(f"unknown fusion preset {name!r}; presets: {', '.join(CHOICES)}")
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
    if name == ORT:
        return fuse_ort(profile), []
    ctx = Context(profile.graph, profile.costs.nodes, profile.bound.declared)
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

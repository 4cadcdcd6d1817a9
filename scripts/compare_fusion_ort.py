"""Compare the `runtime` fusion preset with the graph ONNX Runtime actually runs.

ONNX Runtime writes its optimized graph when `SessionOptions.optimized_model_filepath` is set. For each model
this binds the inputs (batch 1, as our analysis does; the corpus manifest's dims; the bundled decoders'
prefill, sequence_length 128 and past_sequence_length 0), lets ORT optimize on the CPU at the level asked
(`--level all`, the default: ORT_ENABLE_ALL, what a default InferenceSession runs, NCHWc layout transformer
included; `--level extended`: ORT_ENABLE_EXTENDED), and counts kernels on both sides, leaving out shape-only
ops and layout reorders (Transpose, and the NCHWc transformer's ReorderInput and ReorderOutput, which get a
column of their own). Models whose external weights are absent get random weights in a temporary copy; the
original files are never modified. `--preset ort` puts the `ort` preset on our side instead (ORT's own graph
at ORT_ENABLE_ALL, mapped back onto ours): it checks the mapping, whose count is ORT's wherever it holds.

    python scripts/compare_fusion_ort.py [FOLDER ...] [--batch 1] [--target 0.05] [--level all|extended]
                                         [--preset runtime|ort]
    python scripts/compare_fusion_ort.py --corpus corpus --half tuning|heldout|both [--ops-half tuning]

With --corpus the models are those of corpus/manifest.json (scripts/build_corpus.py), one table per half,
with the share of models within 5%, 10% and 15% of ORT's count and the median and 90th percentile of the
|difference| (a model that fails on either side counts as outside every band); the bundled models are
reported apart and count in neither half. Then, for the half given by --ops-half (tuning by default: rules
are written from the tuning half only), the per-op-type differences summed over its models: each kernel is
keyed by its main op (ORT's FusedConv and NCHWc Conv are Conv; our `Conv+Relu` is Conv; Gemm, FusedGemm,
MatMul and our MatMul+Add are MatMul/Gemm), so an op type ORT has fewer of is work ORT fused that we did not.

Each difference is explained by the rule table below, which maps ORT's fused ops to our subgraph labels.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile

import numpy as np
import onnx
from tabulate import tabulate

import onnx_hwutil
from corpus import HALVES, model_groups
from onnx_hwutil.bindings import Bindings
from onnx_hwutil.fusion import fuse
from onnx_hwutil.fusion.ort_graph import count_kernels, optimized_graph, save_for_onnxruntime
from onnx_hwutil.runnable import LEVELS, bound_runnable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BANDS = (0.05, 0.10, 0.15)
# ORT's op -> the label our runtime preset gives the same kernel, and the ORT fusion that makes it.
RULES = [
    ("FusedConv", "Conv+<activation>", "ConvActivationFusion: Conv + Relu/Clip/Sigmoid/..."),
    ("Conv", "Conv (Mul, Add folded)", "ConvMulFusion / ConvAddFusion: a constant per-channel Mul and Add "
     "after a Conv folded into its weights and bias (BatchNorm as Keras converters write it)"),
    ("Gemm", "MatMul+Add / Gemm", "MatMulAddFusion: MatMul + constant bias Add (after reshaping to 2-D)"),
    ("Conv, AveragePool", "Conv, AveragePool (Pad folded)", "PadFusion: a zero constant Pad on the spatial "
     "dims folded into the pads of the Conv or AveragePool reading it (not a MaxPool)"),
    ("Clip, Div, Where", "Clip, Mul, Where (Relu, Div, Not folded)", "FuseReluClip: a Relu read only by "
     "a Clip dropped; DivMulFusion: 1/x read only by a Mul, one Div; NotWhereFusion: a Not read only as "
     "Wheres' condition dropped"),
    ("FusedGemm", "Gemm+<activation>", "GemmActivationFusion"),
    ("FusedMatMul", "MatMul+Mul, Mul+MatMul", "MatMulScaleFusion / MatMulTransposeFusion: scalar scale "
     "and last-two-dims transposes fold into the matmul"),
    ("SkipLayerNormalization", "SkipLayerNorm", "SkipLayerNormFusion: residual Add feeding only a LayerNorm"),
    ("Gelu", "Gelu", "GeluFusion: x*0.5*(1+erf(x/sqrt2)) as one op (ORT's two orders only: not the torch "
     "dynamo exporter's x*(0.5*(1+erf)))"),
    ("QuickGelu", "QuickGelu", "QuickGeluFusion: x*Sigmoid(x), x*Sigmoid(alpha*x) (SiLU, Swish)"),
    ("QLinearConv, QLinearMatMul, ...", "QLinear<op>", "QDQ node units: DequantizeLinear -> op -> "
     "QuantizeLinear as one quantized kernel; DQ/Q around data-movement ops dropped"),
    ("DynamicQuantizeMatMul", "DynamicQuantizeMatMul", "DynamicQuantizeMatMulFusion: DynamicQuantizeLinear "
     "-> MatMulIntegerToFloat whose quantized input nothing else reads"),
    ("MatMulIntegerToFloat", "MatMulIntegerToFloat", "MatMulIntegerToFloatFusion: MatMulInteger -> Cast -> "
     "Mul(scale product) (-> constant bias Add), quantize_dynamic's pattern"),
    ("BiasGelu", "Gelu", "BiasGeluFusion (dynamic shapes): the bias Add joins the GELU, not the MatMul"),
    ("LayerNormalization", "LayerNorm / LayerNormalization", "LayerNormFusion of decomposed patterns"),
    ("Split", "Split", "GatherToSplitFusion: sibling Gathers at constant indices; GatherSliceToSplitFusion: "
     "Slices cutting one tensor into adjacent pieces (opset 13+)"),
    ("QLinearWhere", "QLinearWhere", "WhereDummyDq: a Where with one dequantized branch and a scalar "
     "constant one, read by one QuantizeLinear"),
    ("nchwc.Conv", "Conv+<activation>", "NchwcTransformer (ALL only): Conv in the blocked layout, with a "
     "following Add (residual) and activation folded in; ReorderInput/ReorderOutput around it"),
    ("FusedConv", "Conv+Add+<activation>", "ConvAddActivationFusion (ALL only, after NCHWc): a biased Conv "
     "NCHWc leaves alone, a same-shaped residual Add (FusedConv's Z) and Relu/Sigmoid/Tanh/LeakyRelu/"
     "HardSigmoid/constant Clip"),
]
# Keys for the per-op-type differences: the main op of a kernel, on either side.
_CLASS = {"FusedConv": "Conv", "FusedGemm": "MatMul/Gemm", "FusedMatMul": "MatMul/Gemm",
          "Gemm": "MatMul/Gemm", "MatMul": "MatMul/Gemm", "SkipLayerNormalization": "SkipLayerNorm",
          "SkipSimplifiedLayerNormalization": "SkipLayerNorm", "SimplifiedLayerNormalization": "LayerNorm",
          "LayerNormalization": "LayerNorm", "BiasGelu": "Gelu", "FastGelu": "Gelu"}


def op_class(kernel: str) -> str:
    """`nchwc.Conv` -> Conv, `Conv+Relu` -> Conv, FusedGemm -> MatMul/Gemm, SkipLayerNorm stays."""
    main = kernel.split(".")[-1].split("+")[0]
    return _CLASS.get(main, main)


def _bound_copy(path: str, bindings: Bindings, tmp: str) -> str:
    """The model with inputs bound and weights present (random where absent), saved for ORT to optimize."""
    return save_for_onnxruntime(bound_runnable(path, bindings, np.random.default_rng(0)), tmp,
                                os.path.basename(path))


def _has_symbolic_batch(m: onnx.ModelProto) -> bool:
    inits = {i.name for i in m.graph.initializer}
    for v in m.graph.input:
        dims = v.type.tensor_type.shape.dim
        if v.name not in inits and dims and dims[0].dim_param:
            return True
    return False


def _bindings(path: str, batch: int, dims: dict[str, int]) -> Bindings:
    m = onnx.load(path, load_external_data=False)
    return Bindings(dims=dict(dims), batch=batch if _has_symbolic_batch(m) else None)


def ort_kernels(path: str, tmp: str, level: str = "all") -> tuple[collections.Counter, int]:
    """ORT's kernels by op type (NCHWc ones as `nchwc.OP`), and how many layout reorders it added: what the
    `ort` fusion preset counts too (onnx_hwutil/fusion/ort_graph.py)."""
    return count_kernels(optimized_graph(path, tmp, level))


def our_kernels(path: str, bindings: Bindings, preset: str = "runtime") -> collections.Counter:
    p = onnx_hwutil.profile(path, dims=bindings.dims, batch=bindings.batch)
    return collections.Counter(s.label for s in fuse(p, preset).kernels if s.label != "Transpose")


def _one_line(e: Exception) -> str:
    text = str(e).strip().splitlines()[0][:150] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"


def compare(path: str, batch: int, dims: dict[str, int], level: str, preset: str = "runtime") -> dict:
    """One model: ORT's kernels and ours, or the side that failed with its one-line error."""
    out: dict = {"ort": None, "reorders": 0, "ours": None, "error": None}
    try:
        bindings = _bindings(path, batch, dims)
    except Exception as e:  # an unreadable file is a row of the table, not the end of the run
        out["error"] = f"load: {_one_line(e)}"
        return out
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out["ort"], out["reorders"] = ort_kernels(_bound_copy(path, bindings, tmp), tmp, level)
        except Exception as e:  # ORT cannot take it: reported, the others still run
            out["error"] = f"onnxruntime: {_one_line(e)}"
    try:
        out["ours"] = our_kernels(path, bindings, preset)
    except Exception as e:  # the analyzer fails on it: that is a finding, recorded by name
        out["error"] = (out["error"] + "; " if out["error"] else "") + f"onnx-hwutil: {_one_line(e)}"
    return out


def _diff(r: dict) -> float | None:
    if r["ort"] is None or r["ours"] is None:
        return None
    a, b = sum(r["ort"].values()), sum(r["ours"].values())
    return (b - a) / a if a else 0.0


def _row(name: str, kind: str, r: dict, target: float) -> list:
    d = _diff(r)
    theirs = sum(r["ort"].values()) if r["ort"] is not None else "-"
    ours = sum(r["ours"].values()) if r["ours"] is not None else "-"
    if d is None:
        return [name, kind, theirs, r["reorders"] if r["ort"] is not None else "-", ours, "-",
                f"FAILED ({r['error']})"]
    return [name, kind, theirs, r["reorders"], ours, f"{100 * d:+.1f}%",
            "ok" if abs(d) <= target else "over target"]


def summary(results: list[dict]) -> str:
    n = len(results)
    diffs = [abs(d) for d in map(_diff, results) if d is not None]
    failed = n - len(diffs)
    parts = [f"within {round(100 * b)}%: {sum(1 for d in diffs if d <= b + 1e-12)}/{n}" for b in BANDS]
    if diffs:
        parts.append(f"median |diff| {100 * float(np.median(diffs)):.1f}%, "
                     f"p90 {100 * float(np.percentile(diffs, 90)):.1f}%, max {100 * max(diffs):.1f}%")
    if failed:
        parts.append(f"{failed} failed (counted outside every band)")
    return "; ".join(parts)


def op_differences(results: list[dict]) -> list[tuple]:
    """Per op class over the models both sides counted: ORT's total, ours, ours - ORT, models that differ."""
    ort_tot: collections.Counter = collections.Counter()
    our_tot: collections.Counter = collections.Counter()
    differ: collections.Counter = collections.Counter()
    for r in results:
        if _diff(r) is None:
            continue
        theirs = collections.Counter()
        ours = collections.Counter()
        for k, v in r["ort"].items():
            theirs[op_class(k)] += v
        for k, v in r["ours"].items():
            ours[op_class(k)] += v
        ort_tot.update(theirs)
        our_tot.update(ours)
        for k in set(theirs) | set(ours):
            differ[k] += theirs[k] != ours[k]
    rows = [(k, ort_tot[k], our_tot[k], our_tot[k] - ort_tot[k], differ[k])
            for k in set(ort_tot) | set(our_tot) if ort_tot[k] != our_tot[k]]
    return sorted(rows, key=lambda r: (-abs(r[3]), r[0]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--target", type=float, default=0.05, help="allowed relative kernel-count difference")
    ap.add_argument("--level", choices=sorted(LEVELS), default="all",
                    help="ORT's optimization level: all (a default session) or extended")
    ap.add_argument("--preset", choices=["runtime", "ort"], default="runtime",
                    help="our side: the runtime rules, or the ort preset (ORT's graph mapped back: exact "
                         "where the mapping holds)")
    ap.add_argument("--corpus", help="a corpus folder (scripts/build_corpus.py): its models, per half")
    ap.add_argument("--half", choices=[*HALVES, "both"], default="both")
    ap.add_argument("--ops-half", choices=HALVES, default="tuning",
                    help="the half whose per-op-type differences are printed (rules come from tuning only)")
    ap.add_argument("--no-bundled", action="store_true", help="leave out the bundled models")
    ap.add_argument("--details", action="store_true", help="print every model's kernels on both sides")
    args = ap.parse_args()

    groups = model_groups(ROOT, args.folders, args.corpus, args.half, not args.no_bundled)

    level = {"all": "ORT_ENABLE_ALL", "extended": "ORT_ENABLE_EXTENDED"}[args.level]
    results: dict[str, list[dict]] = {}
    details = []
    for title, models in groups:
        rows, res = [], []
        for name, kind, path, dims in models:
            r = compare(path, args.batch, dims, args.level, args.preset)
            res.append(r)
            rows.append(_row(name, kind, r, args.target))
            details.append((name, r))
            print(f"  {name}: {rows[-1][5]}", file=sys.stderr, flush=True)
        results[title] = res
        print(f"\n### {title}: kernels, ORT at {level} vs ours ({args.preset}), batch {args.batch}\n")
        print(tabulate(rows, headers=["model", "exporter", "ORT kernels", "NCHWc reorders", "ours", "diff",
                                      f"within {round(100 * args.target)}%"],
                       tablefmt="github", disable_numparse=True))
        print(f"\n{title}: {summary(res)}")
    if args.corpus and (args.half in ("both", args.ops_half)):
        ops = op_differences(results[f"corpus, {args.ops_half} half"])
        print(f"\n### per-op-type differences, {args.ops_half} half (summed over its models; ours - ORT)\n")
        print(tabulate(ops, headers=["op type", f"ORT ({level})", "ours", "ours - ORT", "models differing"],
                       tablefmt="github"))
    print()
    print(tabulate([(o, ours, why) for o, ours, why in RULES], headers=["ORT op", "our label", "rule"],
                   tablefmt="github"))
    if args.details or not args.corpus:
        for name, r in details:
            if r["ort"] is None or r["ours"] is None:
                continue
            print(f"\n{name}\n  ORT:  " + ", ".join(f"{k} {v}" for k, v in r["ort"].most_common())
                  + (f" (+ {r['reorders']} reorders)" if r["reorders"] else ""))
            print("  ours: " + ", ".join(f"{k} {v}" for k, v in r["ours"].most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

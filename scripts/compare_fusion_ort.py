"""Compare the `runtime` fusion preset with the graph ONNX Runtime actually runs.

ONNX Runtime writes its optimized graph when `SessionOptions.optimized_model_filepath` is set. For each model
(the bundled ones, plus every .onnx in the folders given) this binds the inputs (batch 1, as our analysis
does), lets ORT optimize at ORT_ENABLE_EXTENDED on the CPU, and counts kernels on both sides, leaving out
shape-only ops and layout reorders (Transpose). Models whose external weights are absent get random weights
in a temporary copy; the original files are never modified.

    python scripts/compare_fusion_ort.py [FOLDER ...] [--batch 1] [--target 0.15]

Each difference is explained by the rule table below, which maps ORT's fused ops to our subgraph labels.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from tabulate import tabulate

import onnx_hwutil
from onnx_hwutil.bindings import Bindings, apply_bindings, bind_inputs
from onnx_hwutil.fusion import fuse
from onnx_hwutil.validate import runnable_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_KERNELS = {"Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Shape", "Constant", "Transpose",
               "Dropout"}
# ORT's op -> the label our runtime preset gives the same kernel, and the ORT fusion that makes it.
RULES = [
    ("FusedConv", "Conv+<activation>", "ConvActivationFusion: Conv + Relu/Clip/Sigmoid/..."),
    ("Gemm", "MatMul+Add / Gemm", "MatMulAddFusion: MatMul + constant bias Add (after reshaping to 2-D)"),
    ("FusedGemm", "Gemm+<activation>", "GemmActivationFusion"),
    ("FusedMatMul", "MatMul+Mul, Mul+MatMul", "MatMulScaleFusion / MatMulTransposeFusion: scalar scale "
     "and last-two-dims transposes fold into the matmul"),
    ("SkipLayerNormalization", "SkipLayerNorm", "SkipLayerNormFusion: residual Add feeding only a LayerNorm"),
    ("Gelu", "Gelu", "GeluFusion: x*0.5*(1+erf(x/sqrt2)) as one op"),
    ("BiasGelu", "Gelu", "BiasGeluFusion (dynamic shapes): the bias Add joins the GELU, not the MatMul"),
    ("LayerNormalization", "LayerNorm / LayerNormalization", "LayerNormFusion of decomposed patterns"),
    ("Split", "Split", "GatherToSplitFusion: sibling Gathers at constant indices"),
]


def _bound_copy(path: str, batch: int, tmp: str) -> str:
    """The model with inputs bound and weights present (random where absent), saved for ORT to optimize."""
    m = runnable_model(path, np.random.default_rng(0))
    bound = bind_inputs(m, Bindings(batch=batch) if _has_symbolic_batch(m) else Bindings())
    shapes, values = bound.shapes, bound.values
    apply_bindings(m, shapes, values)
    out = os.path.join(tmp, os.path.basename(path))
    onnx.save_model(m, out, save_as_external_data=True, location=os.path.basename(path) + ".data")
    return out


def _has_symbolic_batch(m: onnx.ModelProto) -> bool:
    inits = {i.name for i in m.graph.initializer}
    for v in m.graph.input:
        dims = v.type.tensor_type.shape.dim
        if v.name not in inits and dims and dims[0].dim_param:
            return True
    return False


def ort_kernels(path: str, tmp: str) -> collections.Counter:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "optimized.data")
    so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    g = onnx.load(so.optimized_model_filepath, load_external_data=False).graph
    return collections.Counter(n.op_type for n in g.node if n.op_type not in NOT_KERNELS)


def our_kernels(path: str, batch: int) -> collections.Counter:
    m = onnx.load(path, load_external_data=False)
    p = onnx_hwutil.profile(path, batch=batch if _has_symbolic_batch(m) else None)
    return collections.Counter(s.label for s in fuse(p, "runtime").kernels if s.label != "Transpose")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="*")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--target", type=float, default=0.15, help="allowed relative kernel-count difference")
    args = ap.parse_args()
    paths = sorted(glob.glob(os.path.join(ROOT, "models", "*.onnx")))
    for folder in args.folders:
        paths += sorted(glob.glob(os.path.join(folder, "**", "*.onnx"), recursive=True))
    rows, details, worst = [], [], 0.0
    for path in paths:
        name = os.path.relpath(path, ROOT) if path.startswith(ROOT) else path
        with tempfile.TemporaryDirectory() as tmp:
            try:
                theirs = ort_kernels(_bound_copy(path, args.batch, tmp), tmp)
                ours = our_kernels(path, args.batch)
            except Exception as e:  # a model either side cannot take is reported, not fatal
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
                rows.append((name, "-", "-", "-", f"failed: {reason}"))
                continue
        a, b = sum(theirs.values()), sum(ours.values())
        diff = (b - a) / a if a else 0.0
        worst = max(worst, abs(diff))
        rows.append((name, a, b, f"{100 * diff:+.1f}%", "ok" if abs(diff) <= args.target else "OVER TARGET"))
        details.append((name, theirs, ours))
    print(tabulate(rows, headers=["model", "ORT kernels", "ours (runtime)", "diff", ""], tablefmt="github"))
    print()
    print(tabulate([(o, ours, why) for o, ours, why in RULES], headers=["ORT op", "our label", "rule"],
                   tablefmt="github"))
    for name, theirs, ours in details:
        print(f"\n{name}\n  ORT:  " + ", ".join(f"{k} {v}" for k, v in theirs.most_common()))
        print("  ours: " + ", ".join(f"{k} {v}" for k, v in ours.most_common()))
    print(f"\nlargest difference {100 * worst:.1f}% (target {100 * args.target:.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The `ort` fusion preset: the kernels onnxruntime's CPU provider runs, read off the graph it optimizes for
itself and mapped back onto ours as a partition. Exact wherever the weights fit in memory.

onnxruntime optimizes a runnable copy of the model (every weight present, random where the file holds none;
the inputs bound as the profile bound them) at ORT_ENABLE_ALL, as a default session does, and writes the
graph it will run. Its nodes are mapped onto ours by tensor names (ort_map.py); this module runs the session
and counts its kernels (what scripts/compare_fusion_ort.py reports for onnxruntime).
"""

from __future__ import annotations

import collections
import os
import re
import tempfile

import numpy as np
import onnx

from ..bindings import Bindings
from ..errors import HwUtilError
from ..profile import Profile
from ..runnable import bound_runnable, session_options
from .context import Context
from .contract import check_costs, check_partition
from .fused import FusedGraph
from .ort_map import ort_partition
from .ort_ops import REORDERS, is_kernel, label

# Weights at least this large go to the optimized graph's external file, not into its protobuf (2 GiB cap).
EXTERNAL_MIN_BYTES = 1024
_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")  # the prefix of every onnxruntime error


def count_kernels(graph: onnx.GraphProto) -> tuple[collections.Counter, int]:
    """ORT's kernels by label, and how many layout reorders it added."""
    ops: collections.Counter = collections.Counter()
    reorders = 0
    for n in graph.node:
        if n.op_type in REORDERS:
            reorders += 1
        elif is_kernel(n):
            ops[label(n)] += 1
    return ops, reorders


def save_for_onnxruntime(model: onnx.ModelProto, tmp: str, name: str = "model.onnx") -> str:
    """The model saved into `tmp` with its weights in a file beside it (past protobuf's 2 GiB), its path.
    The in-memory model gives its weights up to the file."""
    out = os.path.join(tmp, name)
    onnx.save_model(model, out, save_as_external_data=True, location=name + ".data")
    return out


def optimized_graph(path: str, tmp: str, level: str = "all") -> onnx.GraphProto:
    """The graph onnxruntime's CPU provider runs for the model at `path`, optimized at `level` (validate's
    LEVELS), without its weights' data. onnxruntime's own failure is raised as it is."""
    import onnxruntime as ort

    # errors only: at ALL, onnxruntime warns that the graph it saves is specific to this CPU, as it is meant
    so = session_options(ort, threads=1, level=level)
    saved = keep_optimized(so, tmp)
    ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return onnx.load(saved, load_external_data=False).graph


def keep_optimized(so, tmp: str) -> str:
    """Session options that write the optimized graph into `tmp` (large weights beside it, in their own
    file): the path it will be at."""
    so.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
    so.add_session_config_entry("session.optimized_model_external_initializers_file_name", "optimized.data")
    so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes",
                                str(EXTERNAL_MIN_BYTES))
    return so.optimized_model_filepath


def ort_optimized(profile: Profile) -> onnx.GraphProto:
    """What onnxruntime runs for the profiled model at its bound shapes; its failures in one line."""
    path = profile.bound.path
    try:
        import onnxruntime  # noqa: F401  (asked for here so that a missing one is a line, not a traceback)
    except ImportError:
        raise HwUtilError("the ort fusion preset asks onnxruntime for its graph: install onnxruntime, or use "
                          "the runtime preset") from None
    model = bound_runnable(path, Bindings(shapes=dict(profile.bound.inputs)), np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as tmp:
        saved = save_for_onnxruntime(model, tmp)
        del model  # its weights are in the file now: hold them once, in onnxruntime
        try:
            return optimized_graph(saved, tmp)
        except Exception as e:  # onnxruntime's own error types: an unsupported op, a type it rejects
            why = _reason(e, saved, path)
            raise HwUtilError(f"{path}: onnxruntime cannot load it ({why}); the ort fusion preset needs a "
                              "model onnxruntime runs: use the runtime preset") from None


def _reason(e: Exception, saved: str, path: str) -> str:
    """onnxruntime's message in one line, without its status prefix and naming the user's file, not our
    temporary copy."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0].replace(saved, path)
    return _STATUS.sub("", text)[:200]


def fuse_ort(profile: Profile) -> FusedGraph:
    """The `ort` preset: onnxruntime's kernels as our subgraphs, checked as every preset's partition is."""
    part = ort_partition(profile, ort_optimized(profile))
    check_partition(Context(profile.graph, profile.costs.nodes), part, "ort")
    fused = FusedGraph(profile, part, "ort", [], {})
    check_costs(fused)
    return fused

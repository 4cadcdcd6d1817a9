"""`onnx-hwutil validate`: run the model with onnxruntime on this machine and set the measurement beside our
prediction, whole model and per fused subgraph.

Weights the file holds, or that sit in external files inside the model's own folder, are used as they are;
absent ones (graph-only files), and external paths that leave the folder, are filled with random values in
memory. Nothing is written except onnxruntime's profile, into a temporary folder removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx

from .analysis import Analyzer, Point
from .bindings import Bindings
from .errors import HwUtilError
from .fusion.ort_graph import keep_optimized
from .fusion.ort_map import ort_owners
from .hardware.mapping import Schedule
from .runnable import LEVELS, runnable_model, session_options


@dataclass
class Validation:
    model: str
    hardware: str
    threads: int
    schedule: Schedule
    measured_latency_s: float
    subgraphs: list[dict]  # {"id", "label", "predicted_s", "measured_s"}
    coverage: float  # share of onnxruntime's kernel time mapped onto our subgraphs
    runs: int
    level: str = "all"  # onnxruntime's graph optimization level of the measured session

    @property
    def predicted_latency_s(self) -> float:
        return self.schedule.latency_s

    @property
    def relative_error(self) -> float:
        return (self.predicted_latency_s - self.measured_latency_s) / self.measured_latency_s

    def to_dict(self) -> dict:
        return {"model": self.model, "hardware": self.hardware, "threads": self.threads, "runs": self.runs,
                "ort_level": self.level,
                "predicted_latency_s": self.predicted_latency_s,
                "measured_latency_s": self.measured_latency_s,
                "relative_error": self.relative_error, "kernel_time_coverage": self.coverage,
                "subgraphs": self.subgraphs}


@contextlib.contextmanager
def _terminations_unwind():
    """SIGTERM and SIGHUP end the run the way Ctrl-C does, by an exception, so that the temporary folder's
    `with` removes it; by default they kill the process and leave the folder behind."""
    def stop(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def random_feeds(session, shapes: dict, rng: np.random.Generator) -> dict:
    """Inputs for a session at the bound shapes: random floats, ones for ids, masks and indices."""
    feeds = {}
    for i in session.get_inputs():
        shape = shapes[i.name]
        if "float" in i.type:
            dtype = {"tensor(float16)": np.float16, "tensor(double)": np.float64}.get(i.type, np.float32)
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
        elif "bool" in i.type:
            feeds[i.name] = np.ones(shape, bool)
        else:  # ids, masks, indices: ones are valid for all of them
            dtype = {"tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}.get(
                i.type, np.int64)
            feeds[i.name] = np.ones(shape, dtype)
    return feeds


WARMUP_RUNS = 5


def median_run_s(session, feeds: dict, runs: int) -> float:
    """Median wall time of `runs` runs after WARMUP_RUNS untimed ones."""
    for _ in range(WARMUP_RUNS):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def validate(model: str, hw: str = "host", threads: int | None = None, runs: int = 50,
             fusion: str = "auto", bindings: Bindings | None = None, level: str = "all") -> Validation:
    try:
        import onnxruntime as ort
    except ImportError:
        raise HwUtilError("validate needs onnxruntime") from None
    if level not in LEVELS:
        raise HwUtilError(f"unknown onnxruntime level {level!r}; levels: {', '.join(LEVELS)}")
    bindings = bindings or Bindings()
    analyzer = Analyzer(bindings.shapes, bindings.dims)
    spec = analyzer.spec(hw)
    if spec.kind != "cpu":
        raise HwUtilError(f"validate runs on this machine's CPU; --hw {hw} is a {spec.kind}: use host or the "
                          "spec `calibrate` wrote")
    threads = threads or spec.units
    # The user's batch, else the model's own shapes, else batch 1 for a model with a symbolic batch dim.
    [batch] = analyzer.batches(model, [bindings.batch] if bindings.batch else None)
    bound = analyzer.bound(model, batch)
    predicted = analyzer.run(Point(model, hw, batch, "fp32", fusion, threads))
    fused = analyzer.fused(model, batch, "fp32", fusion)

    rng = np.random.default_rng(0)
    blob = runnable_model(model, rng).SerializeToString()
    with _terminations_unwind(), tempfile.TemporaryDirectory() as tmp:
        so = session_options(ort, threads, level)
        try:
            sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise HwUtilError(f"onnxruntime cannot run {model}: {str(e).splitlines()[0][:200]}") from None
        feeds = random_feeds(sess, bound.inputs, rng)
        measured = median_run_s(sess, feeds, runs)
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        # the graph this session runs, to read the profile's node names (ORT names the kernels it makes)
        optimized = keep_optimized(so, tmp)
        prof = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
        for _ in range(3):
            prof.run(None, feeds)
        profiled = 10
        for _ in range(profiled):
            prof.run(None, feeds)
        with open(prof.end_profiling()) as f:
            events = json.load(f)
        owners = _owners(fused, optimized)
    kernel: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            kernel[name] = kernel.get(name, 0.0) + e["dur"] * 1e-6
    runs_seen = 3 + profiled  # the profile holds every run of that session: per-run means
    sub_of = {m: s.id for s in fused.subgraphs for m in s.nodes}
    names = sorted(sub_of, key=len, reverse=True)
    measured_sub: dict[int, float] = {}
    mapped = total = 0.0
    for name, t in kernel.items():
        t /= runs_seen
        total += t
        owner = sub_of.get(name)
        if owner is None and owners.get(name):  # a kernel ORT made: the subgraph most of its nodes are in
            owner = Counter(sub_of[m] for m in owners[name] if m in sub_of).most_common(1)[0][0]
        if owner is None:  # a node ORT renamed while fusing keeps our node's name as its prefix
            owner = next((sub_of[n] for n in names if name.startswith(n)), None)
        if owner is not None:
            measured_sub[owner] = measured_sub.get(owner, 0.0) + t
            mapped += t
    pred = {k.id: k for k in predicted.kernels}
    rows = [{"id": i, "label": pred[i].label if i in pred else "",
             "predicted_s": pred[i].latency_s if i in pred else 0.0, "measured_s": measured_sub.get(i, 0.0)}
            for i in sorted(set(pred) | set(measured_sub))]
    return Validation(model, spec.name, threads, predicted, measured, rows,
                      mapped / total if total else 0.0, runs, level)


def _owners(fused, optimized: str) -> dict[str, list[str]]:
    """onnxruntime's node name -> our nodes, read from the graph it ran by tensor names (fusion.ort_map);
    empty where that graph cannot be read or mapped (the profile is then mapped by node-name prefixes)."""
    try:
        return ort_owners(fused.profile, onnx.load(optimized, load_external_data=False).graph)
    except Exception:  # a mapping aid only: any failure leaves the prefix mapping to do the work
        return {}

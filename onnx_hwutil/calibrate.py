"""`onnx-hwutil calibrate`: measure this machine with onnxruntime microbenchmarks and write its spec.

Measured per thread count: what a convolution or matrix product of a given size attains (FLOP/s), in fp32
and as its int8 QLinear form, the same for depthwise convolutions, what an elementwise kernel streams at a
given working set (bytes/s, which shows the caches), the non-matrix FLOP/s of sigmoid, erf, softmax and layer
norm and of the quantized elementwise ops (QLinearAdd/Mul/Sigmoid/LeakyRelu, FLOPs as our registry counts
them), and the fixed cost of dispatching one op. Only single ops are timed, never the models that
will be predicted, so `validate` measures an honest error.

Sessions run at ORT_ENABLE_ALL, what a default session and `validate` run: a convolution is then ORT's NCHWc
kernel (depthwise ones 5-10x faster than at EXTENDED on AVX-512), wrapped in layout reorders a model pays
only at its NCHWc region's edges. Rates therefore come from onnxruntime's own per-kernel profile, the op's
kernel without the reorders and without dispatch (which the dispatch chain measures, and the CPU backend
adds per kernel).
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import HwUtilError
from .hardware.host import host_data
from .runnable import session_options

REORDERS = {"ReorderInput", "ReorderOutput"}  # the NCHWc layout changes around a lone convolution

# (C_in, C_out, kernel, output side, stride): shapes of the convolutions CNNs are made of, spanning
# 10^6 to 10^9 FLOPs, and matrix products of transformer layers (M, N, K).
CONVS = [(16, 16, 3, 14, 1), (32, 32, 3, 28, 1), (64, 64, 3, 56, 1), (64, 64, 1, 56, 1), (64, 256, 1, 56, 1),
         (256, 64, 1, 56, 1), (128, 128, 3, 28, 1), (256, 256, 3, 14, 1), (512, 512, 3, 7, 1),
         (3, 64, 7, 112, 2), (128, 512, 1, 28, 1), (32, 16, 1, 112, 1)]
MATMULS = [(1, 1000, 512), (1, 1000, 2048), (128, 768, 768), (128, 3072, 768), (197, 768, 768), (64, 64, 64)]
DEPTHWISE = [(32, 112, 1), (96, 56, 2), (144, 56, 1), (144, 28, 2), (192, 28, 1), (384, 14, 1), (576, 7, 2),
             (960, 7, 1)]
ELEMENTS = [1 << 10, 1 << 13, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24]
# Non-matrix work a CPU computes rather than streams: the sigmoid of SiLU/QuickGelu, GELU's erf, softmax and
# layer norm over transformer rows (rows of 768), priced per FLOP as our registry counts them.
VECTOR_OPS = ["Sigmoid", "Erf", "Softmax", "LayerNormalization"]
# Their quantized forms (com.microsoft, as onnxruntime's QOperator quantizer writes them): onnxruntime runs
# them on integers or a lookup table, far faster per FLOP than the dequantize-compute-requantize we count.
QVECTOR_OPS = ["QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu"]
VECTOR_ROWS = [16, 128, 512]
FULL = {"convs": CONVS, "matmuls": MATMULS, "depthwise": DEPTHWISE, "elements": ELEMENTS,
        "vector": VECTOR_ROWS}
QUICK = {"convs": CONVS[::3], "matmuls": MATMULS[::2], "depthwise": DEPTHWISE[::3], "elements": ELEMENTS[::2],
         "vector": VECTOR_ROWS[1:2]}


def _model(nodes, inputs, outputs, inits=()):
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    m = helper.make_model(helper.make_graph(nodes, "bench", inputs, outputs, list(inits)),
                          opset_imports=opsets)
    m.ir_version = 8
    return m.SerializeToString()


def _f32(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _weight(name, shape, rng):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.05, name)


def _time(run: Callable[[], object], budget_s: float) -> float:
    """Median seconds of one run, after warm-up, over at least `budget_s` of runs (3 at least)."""
    for _ in range(2):
        run()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < 200):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _Bench:
    def __init__(self, threads: int, budget_s: float):
        import onnxruntime as ort

        self.ort = ort
        self.threads = threads
        self.budget = budget_s
        self.rng = np.random.default_rng(0)

    def run(self, blob: bytes, feeds: dict) -> float:
        """Median wall seconds of one session run: what dispatch costs, the op's work included."""
        sess = self.ort.InferenceSession(blob, session_options(self.ort, self.threads),
                                         providers=["CPUExecutionProvider"])
        return _time(lambda: sess.run(None, feeds), self.budget)

    def kernel(self, blob: bytes, feeds: dict) -> float:
        """Median seconds of the op's own kernel in onnxruntime's profile, layout reorders left out."""
        so = session_options(self.ort, self.threads)
        with tempfile.TemporaryDirectory() as tmp:
            so.enable_profiling = True
            so.profile_file_prefix = os.path.join(tmp, "bench")
            sess = self.ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
            _time(lambda: sess.run(None, feeds), self.budget)
            with open(sess.end_profiling()) as f:
                events = json.load(f)
        runs: dict[str, list[float]] = {}
        for e in events:
            op = e.get("args", {}).get("op_name", "")
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and op not in REORDERS:
                runs.setdefault(e["name"], []).append(e["dur"] * 1e-6)
        if not runs:
            raise HwUtilError("calibrate: onnxruntime's profile holds no kernel for the benchmark op")
        return sum(statistics.median(d) for d in runs.values())

    def conv(self, cin, cout, k, side, stride, group=1):
        """(GEMM M, N, K, seconds) of one convolution, as implicit GEMM sees it."""
        h = (side - 1) * stride + k - 2 * (k // 2)
        x = self.rng.standard_normal((1, cin, h, h)).astype(np.float32)
        w = _weight("w", (cout, cin // group, k, k), self.rng)
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k], strides=[stride, stride],
                                pads=[k // 2] * 4, group=group)
        t = self.kernel(_model([node], [_f32("x", x.shape)], [_f32("y", (1, cout, side, side))], [w]),
                        {"x": x})
        return side * side, cout // group, cin // group * k * k, t

    def qconv(self, cin, cout, k, side, stride):
        """(GEMM M, N, K, seconds) of one QLinearConv (uint8 activations, int8 weights): the int8 kernel a
        QDQ or QOperator model runs."""
        h = (side - 1) * stride + k - 2 * (k // 2)
        x = self.rng.integers(0, 255, (1, cin, h, h), dtype=np.uint8)
        w = numpy_helper.from_array(self.rng.integers(-127, 127, (cout, cin, k, k), dtype=np.int8), "w")
        node = helper.make_node("QLinearConv", ["x", "s", "zu", "w", "s", "zi", "s", "zu"], ["y"],
                                kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)
        blob = _model([node], [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
                      [helper.make_tensor_value_info("y", TensorProto.UINT8, (1, cout, side, side))],
                      [w, *_quant_params()])
        return side * side, cout, cin * k * k, self.kernel(blob, {"x": x})

    def qmatmul(self, m, n, k):
        x = self.rng.integers(0, 255, (m, k), dtype=np.uint8)
        w = numpy_helper.from_array(self.rng.integers(-127, 127, (k, n), dtype=np.int8), "w")
        node = helper.make_node("QLinearMatMul", ["x", "s", "zu", "w", "s", "zi", "s", "zu"], ["y"])
        blob = _model([node], [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
                      [helper.make_tensor_value_info("y", TensorProto.UINT8, (m, n))], [w, *_quant_params()])
        return m, n, k, self.kernel(blob, {"x": x})

    def matmul(self, m, n, k):
        x = self.rng.standard_normal((m, k)).astype(np.float32)
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        blob = _model([node], [_f32("x", x.shape)], [_f32("y", (m, n))], [_weight("w", (k, n), self.rng)])
        return m, n, k, self.kernel(blob, {"x": x})

    def add(self, n):
        a = self.rng.standard_normal(n).astype(np.float32)
        node = helper.make_node("Add", ["a", "b"], ["y"])
        t = self.kernel(_model([node], [_f32("a", (n,)), _f32("b", (n,))], [_f32("y", (n,))]),
                        {"a": a, "b": a})
        return 3 * 4 * n, t

    def vector(self, op: str, rows: int, width: int = 768) -> tuple[int, float, bytes]:
        """(elements, seconds, the model) of one op over [rows, width] floats."""
        x = self.rng.standard_normal((rows, width)).astype(np.float32)
        inits, ins = [], ["x"]
        if op == "LayerNormalization":
            inits = [_weight("g", (width,), self.rng), _weight("b", (width,), self.rng)]
            ins += ["g", "b"]
        attrs = {"axis": -1} if op in ("Softmax", "LayerNormalization") else {}
        node = helper.make_node(op, ins, ["y"], **attrs)
        blob = _model([node], [_f32("x", x.shape)], [_f32("y", x.shape)], inits)
        return rows * width, self.kernel(blob, {"x": x}), blob

    def qvector(self, op: str, rows: int, width: int = 768) -> tuple[int, float, bytes]:
        """(elements, seconds, the model) of one quantized elementwise op over [rows, width] uint8."""
        x = self.rng.integers(0, 255, (rows, width), dtype=np.uint8)
        ins = ["x", "s", "zu", "x", "s", "zu", "s", "zu"] if op in ("QLinearAdd", "QLinearMul") else \
            ["x", "s", "zu", "s", "zu"]
        attrs = {"alpha": 0.1} if op == "QLinearLeakyRelu" else {}
        node = helper.make_node(op, ins, ["y"], domain="com.microsoft", **attrs)
        u8 = [helper.make_tensor_value_info(n, TensorProto.UINT8, x.shape) for n in ("x", "y")]
        blob = _model([node], u8[:1], u8[1:], _quant_params())
        return rows * width, self.kernel(blob, {"x": x}), blob

    def dispatch(self, chain: int = 64) -> float:
        nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(chain)]
        blob = _model(nodes, [_f32("t0", (1,))], [_f32(f"t{chain}", (1,))])
        return self.run(blob, {"t0": np.ones(1, np.float32)}) / chain


def measure(threads: int, quick: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """The rate tables for one thread count."""
    sets = QUICK if quick else FULL
    b = _Bench(threads, 0.02 if quick else 0.1)
    step = progress or (lambda _: None)

    def gemm_table(conv, matmul, what: str) -> list[list[float]]:
        rows = []
        for bench, shapes in ((conv, sets["convs"]), (matmul, sets["matmuls"])):
            for shape in shapes:
                m, n, k, t = bench(*shape)
                rows.append([m, n, k, 2 * m * n * k / t])
                step(what)
        return sorted(rows)

    gemm = gemm_table(b.conv, b.matmul, "conv and matmul")
    depthwise, elementwise = [], []
    for ch, side, stride in sets["depthwise"]:
        m, _, k, t = b.conv(ch, ch, 3, side, stride, group=ch)
        flops = 2 * ch * m * k
        depthwise.append([flops, flops / t])
        step("depthwise")
    dispatch = b.dispatch()
    step("dispatch")
    for n in sets["elements"]:
        nbytes, t = b.add(n)
        elementwise.append([nbytes, nbytes / t])
        step("elementwise")
    gemm_int8 = gemm_table(b.qconv, b.qmatmul, "int8 conv and matmul")
    vector, vector_int8 = [], []
    for rows in sets["vector"]:
        for bench, ops, table in ((b.vector, VECTOR_OPS, vector), (b.qvector, QVECTOR_OPS, vector_int8)):
            for op in ops:
                n, t, blob = bench(op, rows)
                table.append([n, _flops(blob) / t])
        step("vector")
    return {"gemm": gemm, "depthwise": _mean_by_size(depthwise),
            "elementwise": _mean_by_size(elementwise), "vector": _mean_by_size(vector),
            "gemm_int8": gemm_int8, "vector_int8": _mean_by_size(vector_int8), "dispatch_s": dispatch}


def _flops(blob: bytes) -> int:
    """The FLOPs our registry counts for a benchmark model: the rate is then per FLOP as we price them."""
    from .profile import profile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.onnx")
        with open(path, "wb") as f:
            f.write(blob)
        return profile(path).totals.flops


def _quant_params():
    return [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            numpy_helper.from_array(np.array(128, np.uint8), "zu"),
            numpy_helper.from_array(np.array(0, np.int8), "zi")]


def _mean_by_size(points: list[list[float]]) -> list[list[float]]:
    by: dict[float, list[float]] = {}
    for x, r in points:
        by.setdefault(float(x), []).append(r)
    return [[x, float(np.exp(np.mean(np.log(rs))))] for x, rs in sorted(by.items())]


def steps(quick: bool) -> int:
    sets = QUICK if quick else FULL
    return sum(len(v) for v in sets.values()) + len(sets["convs"]) + len(sets["matmuls"]) + 1


def calibrate(threads: int | None = None, quick: bool = False,
              progress: Callable[[str], None] | None = None) -> dict:
    """A host spec (the YAML mapping) whose calibration tables hold measurements for 1..threads."""
    try:
        import onnxruntime
    except ImportError:
        raise HwUtilError("calibrate needs onnxruntime") from None
    cores = os.cpu_count() or 1
    threads = threads or cores
    if threads < 1:
        raise HwUtilError(f"--threads {threads}: must be at least 1")
    data = host_data()
    tables = {n: measure(n, quick, progress) for n in range(1, threads + 1)}
    when = datetime.date.today().isoformat()
    how = (f"measured by onnx-hwutil calibrate on {when}, onnxruntime {onnxruntime.__version__}, "
           f"onnx {onnx.__version__}")
    what = ("Conv, MatMul, their QLinear int8 forms, depthwise Conv, Add, Sigmoid, Erf, Softmax, "
            "LayerNormalization and Relu microbenchmarks at ORT_ENABLE_ALL, kernel times from onnxruntime's "
            "profile")
    data["calibration"] = {"source": f"{how} ({what})",
                           "threads": {str(n): t for n, t in tables.items()}}
    top = tables[threads]
    dram = min(r for _, r in top["elementwise"][-2:])  # the largest working sets stream from DRAM
    data["memory"]["dram_bandwidth_bytes_per_s"] = {
        "value": dram, "source": f"{how}: Add over {int(top['elementwise'][-1][0] / 12):,} floats, "
                                 f"{threads} threads"}
    data["kernel_overhead_s"] = {"value": max(tables[1]["dispatch_s"], 1e-9),
                                 "source": f"{how}: a chain of 64 Relu on one element"}
    data["name"] = "host"
    data["title"] = data["title"] + " (calibrated)"
    return data

"""Fuzz campaign: hostile and broken models through profile, fuse and analyze, in-process.

    python scripts/fuzz.py --cases 10000 [--seed 0] [--jobs 2] [--save-bugs DIR]

Seeds are the small bundled models and graphs generated here (control flow, quantized, recurrent,
transformer-like). Each case applies one to three structure-aware mutations (truncation and byte flips,
zero/negative/huge dims, wrong ranks, dtype changes, dangling and duplicated tensor names, cycles, unknown
domains and opsets, attributes of the wrong type, empty graphs, deep nesting, external data naming absolute
paths, '..', devices and missing files, resource bombs: generators of constants with huge outputs, Scans
over 2^30 inputs, functions that expand exponentially, megabyte names), then runs the pipeline. One case in
ten is instead a hardware spec with one number made extreme (400 digits, 5e-324, NaN, a unicode digit as a
thread count), and one in ten the pipeline called with extreme integers (batch, dims, shapes). A case must end
in a result or in our own error (HwUtilError, with a message); anything else, a hang (30 s) or running out of
memory is a bug. Exit status 1 if any bug was found. Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import sys
import tempfile
import traceback
from multiprocessing import Pool

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from onnx_hwutil.analysis import analyze  # noqa: E402
from onnx_hwutil.errors import HwUtilError, NoBatchDim  # noqa: E402
from onnx_hwutil.fusion import fuse  # noqa: E402
from onnx_hwutil.profile import profile  # noqa: E402

CASE_TIMEOUT_S = 30
MEMORY_LIMIT = 6 << 30  # bytes of address space for a worker: far above any legitimate case here


# -- seeds -----------------------------------------------------------------------------------------------

def _vi(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def _init(name, shape, dtype=np.float32, value=None):
    arr = np.zeros(shape, dtype) if value is None else np.asarray(value, dtype)
    return numpy_helper.from_array(arr, name)


def _model(nodes, inputs, outputs, inits=(), opsets=(("", 17),)):
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                          opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    m.ir_version = 8
    return m


def generated_seeds() -> list[onnx.ModelProto]:
    seeds = []
    seeds.append(_model(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Add", ["r", "x2"], ["a"]),
         helper.make_node("GlobalAveragePool", ["a"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)],
        [_vi("x", T.FLOAT, ["batch", 8, 16, 16]), _vi("x2", T.FLOAT, ["batch", 8, 16, 16])],
        [_vi("y", T.FLOAT, ["batch", 10])],
        [_init("w", (8, 8, 3, 3)), _init("b", (8,)), _init("fw", (10, 8)), _init("fb", (10,))]))
    then = helper.make_graph([helper.make_node("MatMul", ["h", "w"], ["t"])], "then", [],
                             [_vi("t", T.FLOAT, [1, 16])])
    other = helper.make_graph([helper.make_node("Relu", ["h"], ["e"])], "else", [],
                              [_vi("e", T.FLOAT, [1, 16])])
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["v", "w"], ["v2"])],
        "body", [_vi("i", T.INT64, []), _vi("cond_in", T.BOOL, []), _vi("v", T.FLOAT, [1, 16])],
        [_vi("cond_out", T.BOOL, []), _vi("v2", T.FLOAT, [1, 16])])
    seeds.append(_model(
        [helper.make_node("Relu", ["x"], ["h"]),
         helper.make_node("If", ["cond"], ["y1"], then_branch=then, else_branch=other),
         helper.make_node("Loop", ["M", "true", "y1"], ["y"], body=body)],
        [_vi("x", T.FLOAT, [1, 16]), _vi("cond", T.BOOL, [])], [_vi("y", T.FLOAT, [1, 16])],
        [_init("w", (16, 16)), _init("M", (), np.int64, 3), _init("true", (), np.bool_, True)]))
    seeds.append(_model(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
         helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
         helper.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"]),
         helper.make_node("Conv", ["dq", "w"], ["c"], kernel_shape=[1, 1]),
         helper.make_node("QLinearConv", ["q", "s", "z", "wq", "s", "z", "s", "z"], ["qc"],
                          kernel_shape=[1, 1])],
        [_vi("x", T.FLOAT, [1, 4, 8, 8])],
        [_vi("c", T.FLOAT, [1, 4, 8, 8]), _vi("qc", T.UINT8, [1, 4, 8, 8])],
        [_init("s", (), np.float32, 0.1), _init("z", (), np.uint8, 0), _init("wq", (4, 4, 1, 1), np.uint8)]))
    seeds.append(_model(
        [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Yh"], hidden_size=8),
         helper.make_node("Einsum", ["Yh", "E"], ["y"], equation="dbh,hk->dbk")],
        [_vi("X", T.FLOAT, ["seq", 2, 8])], [_vi("y", T.FLOAT, [1, 2, 4])],
        [_init("W", (1, 32, 8)), _init("R", (1, 32, 8)), _init("B", (1, 64)), _init("E", (8, 4))]))
    seeds.append(_model(  # attention block with its shape subgraph, as exporters write it
        [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
         helper.make_node("Shape", ["q"], ["qs"]), helper.make_node("Gather", ["qs", "i0"], ["b"], axis=0),
         helper.make_node("Unsqueeze", ["b", "ax"], ["bu"]),
         helper.make_node("Concat", ["bu", "tail"], ["shape"], axis=0),
         helper.make_node("Reshape", ["q", "shape"], ["qh"]),
         helper.make_node("Reshape", ["k", "shape"], ["kh"]),
         helper.make_node("Transpose", ["kh"], ["kt"], perm=[0, 1, 3, 2]),
         helper.make_node("MatMul", ["qh", "kt"], ["s"]), helper.make_node("Div", ["s", "scale"], ["sd"]),
         helper.make_node("Softmax", ["sd"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "qh"], ["o"]),
         helper.make_node("LayerNormalization", ["o", "g", "bb"], ["y"], axis=-1)],
        [_vi("x", T.FLOAT, ["batch", 16, 32])], [_vi("y", T.FLOAT, None)],
        [_init("wq", (32, 32)), _init("wk", (32, 32)), _init("i0", (), np.int64, 0),
         _init("ax", (1,), np.int64, [0]), _init("tail", (3,), np.int64, [4, 16, 8]),
         _init("scale", (), np.float32, 2.8), _init("g", (8,)), _init("bb", (8,))]))
    return seeds


def bundled_seeds() -> list[onnx.ModelProto]:
    out = []
    for name in ("resnet18", "mobilenet_v2", "bert_base"):
        path = os.path.join(ROOT, "models", f"{name}.onnx")
        if os.path.exists(path):
            out.append(onnx.load(path, load_external_data=False))
    return out


# -- mutations ------------------------------------------------------------------------------------------

HUGE = [0, -1, -7, 1 << 40, 1 << 62, 3]
EVIL_PATHS = ["/etc/passwd", "../../../../etc/shadow", "/dev/zero", "/dev/urandom", "missing.bin",
              "/proc/self/mem", "nested/../../x.bin", "C:\\\\Windows\\\\x"]


def _graphs(m):
    stack = [m.graph]
    while stack:
        g = stack.pop()
        yield g
        for n in g.node:
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)


def _value_infos(m):
    return [vi for g in _graphs(m) for vi in list(g.input) + list(g.output) + list(g.value_info)]


def mutate(m: onnx.ModelProto, rng: random.Random) -> tuple[onnx.ModelProto | bytes, str]:
    kind = rng.choice(["truncate", "flip", "dim", "rank", "dtype", "dangling", "duplicate", "cycle", "domain",
                       "opset", "attr_type", "attr_value", "empty", "nest", "external", "drop_input",
                       "drop_init", "init_dims", "bomb", "long_name"])
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    g = m2.graph
    nodes = list(g.node)
    if kind in ("truncate", "flip"):
        data = bytearray(m2.SerializeToString())
        if kind == "truncate":
            return bytes(data[: rng.randrange(max(len(data), 1))]), kind
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data), kind
    if kind == "dim":
        vis = [vi for vi in _value_infos(m2) if vi.type.tensor_type.shape.dim]
        if vis:
            d = rng.choice(list(rng.choice(vis).type.tensor_type.shape.dim))
            d.dim_value = rng.choice(HUGE)
    elif kind == "rank" and g.input:
        shape = rng.choice(list(g.input)).type.tensor_type.shape
        if rng.random() < 0.5 and shape.dim:
            del shape.dim[-1]
        else:
            shape.dim.add().dim_value = rng.choice([1, 2, 7])
    elif kind == "dtype":
        vis = _value_infos(m2)
        if vis:
            rng.choice(vis).type.tensor_type.elem_type = rng.choice([0, 2, 3, 7, 8, 9, 10, 16, 17, 999])
    elif kind == "dangling" and nodes:
        n = rng.choice(nodes)
        if n.input:
            n.input[rng.randrange(len(n.input))] = f"ghost_{rng.randrange(100)}"
    elif kind == "duplicate" and len(nodes) > 1:
        a, b = rng.sample(nodes, 2)
        if a.output and b.output:
            a.output[0] = b.output[0]
    elif kind == "cycle" and len(nodes) > 1:
        i, j = sorted(rng.sample(range(len(nodes)), 2))
        if nodes[i].input and nodes[j].output:
            nodes[i].input[0] = nodes[j].output[0]
    elif kind == "domain" and nodes:
        n = rng.choice(nodes)
        if rng.random() < 0.5:
            n.domain = rng.choice(["x.y", "com.microsoft", "ai.onnx.ml", "ai.onnx"])
        else:
            n.op_type = rng.choice(["Frobnicate", "Conv", "If", "Loop", "Einsum", "Attention", ""])
    elif kind == "opset":
        for o in m2.opset_import:
            o.version = rng.choice([1, 7, 13, 25, 999, 0])
    elif kind in ("attr_type", "attr_value"):
        cands = [n for n in nodes if n.attribute]
        if cands:
            n = rng.choice(cands)
            a = rng.choice(list(n.attribute))
            name = a.name
            n.attribute.remove(a)
            if kind == "attr_type":
                wrong = rng.choice(["oops", 3, [1.5, 2.5], [b"a", b"b"], 2.5])
                n.attribute.append(helper.make_attribute(name, wrong))
            else:
                extreme = rng.choice([0, -1, 1 << 40, [0, 0], [1 << 40] * 2])
                n.attribute.append(helper.make_attribute(name, extreme))
    elif kind == "empty":
        del g.node[:]
    elif kind == "nest":
        depth = rng.choice([2, 8, 31, 40])  # 40 passes our nesting limit (32)
        inner = helper.make_graph(list(g.node), "inner", [], list(g.output))
        src = g.input[0].name if g.input else "nest_cond"
        other = helper.make_graph([helper.make_node("Identity", [src], [o.name]) for o in g.output], "other",
                                  [], list(g.output))  # small, so the nesting grows linearly
        for _ in range(depth):
            inner = helper.make_graph([helper.make_node("If", ["nest_cond"], [o.name for o in g.output],
                                                        then_branch=inner, else_branch=other)],
                                      "wrap", [], list(g.output))
        del g.node[:]
        g.node.extend(inner.node)
        g.input.append(_vi("nest_cond", T.BOOL, []))
    elif kind == "external" and g.initializer:
        t = rng.choice(list(g.initializer))
        t.ClearField("raw_data")
        t.data_location = T.EXTERNAL
        del t.external_data[:]
        e = t.external_data.add()
        e.key, e.value = "location", rng.choice(EVIL_PATHS)
        if rng.random() < 0.5:
            e = t.external_data.add()
            e.key, e.value = "offset", str(rng.choice([0, -5, 1 << 62]))
    elif kind == "drop_input" and g.input:
        del g.input[rng.randrange(len(g.input))]
    elif kind == "drop_init" and g.initializer:
        del g.initializer[rng.randrange(len(g.initializer))]
    elif kind == "init_dims" and g.initializer:
        t = rng.choice(list(g.initializer))
        if t.dims:
            t.dims[rng.randrange(len(t.dims))] = rng.choice(HUGE)
    elif kind == "bomb":
        _bomb(m2, rng)
    elif kind == "long_name" and nodes:
        rng.choice(nodes).name = "n" * rng.choice([70_000, 1 << 20])
    return m2, kind


def _bomb(m: onnx.ModelProto, rng: random.Random) -> None:
    """A few hundred bytes that ask for gigabytes: a generator of constants, a Scan over more inputs than it
    has, or model-local functions that double at each level."""
    g = m.graph
    which = rng.choice(["generator", "scan", "functions"])
    n = rng.choice([1 << 24, 1 << 40, 1 << 62])
    out = f"bomb_{rng.randrange(1000)}"
    if which == "generator":
        op = rng.choice(["Range", "ConstantOfShape", "Expand", "Tile"])
        c = [helper.make_node("Constant", [], [f"{out}_c{i}"],
                              value=numpy_helper.from_array(np.array(v, np.int64)))
             for i, v in enumerate({"Range": [0, n, 1], "ConstantOfShape": [[n]], "Expand": [[1], [n]],
                                    "Tile": [[1], [n]]}[op])]
        g.node.extend([*c, helper.make_node(op, [x.output[0] for x in c], [out])])
        g.output.append(_vi(out, T.INT64, None))
    elif which == "scan":
        body = helper.make_graph([helper.make_node("Identity", ["a"], ["b"])], "body",
                                 [_vi("a", T.FLOAT, [4])], [_vi("b", T.FLOAT, [4])])
        g.node.append(helper.make_node("Scan", [g.input[0].name if g.input else "x"], [out], body=body,
                                       num_scan_inputs=rng.choice([1 << 30, 0, -1])))
    else:
        levels = rng.choice([20, 30])
        for i in range(levels):
            callee = f"F{i + 1}"
            nodes = ([helper.make_node(callee, ["x"], ["h"], domain="local"),
                      helper.make_node(callee, ["h"], ["y"], domain="local")] if i + 1 < levels
                     else [helper.make_node("Relu", ["x"], ["y"])])
            m.functions.append(helper.make_function("local", f"F{i}", ["x"], ["y"], nodes,
                                                    [helper.make_opsetid("", 17)]))
        m.opset_import.append(helper.make_opsetid("local", 1))
        src = g.input[0].name if g.input else "x"
        g.node.append(helper.make_node("F0", [src], [out], domain="local"))


SPEC_EXTREMES = [int("9" * 400), 5e-324, 1e308, float("nan"), float("inf"), -1.0, 0, "1e3", "abc", True, None,
                 [1, 2]]


def spec_case(rng: random.Random, tmp: str) -> None:
    """A bundled spec with one number (or one calibration entry) made extreme, loaded and used."""
    import yaml

    from onnx_hwutil.hardware import load_spec
    from onnx_hwutil.hardware.catalog import HWSPEC_DIR

    name = rng.choice(sorted(f for f in os.listdir(HWSPEC_DIR) if f.endswith(".yaml")))
    with open(os.path.join(HWSPEC_DIR, name)) as f:
        data = yaml.safe_load(f)
    leaves = []

    def walk(d, path):
        for k, v in d.items():
            if isinstance(v, dict) and "value" in v:
                leaves.append((d, k))
            elif isinstance(v, dict):
                walk(v, [*path, k])

    walk(data, [])
    if rng.random() < 0.2 and data.get("kind") == "cpu":
        key = rng.choice([1, "²", "0", "-3", "1e3", "٣"])
        data["calibration"] = {"source": "a fuzzed calibration table", "threads": {key: {
            "gemm": [[64, 64, 64, rng.choice(SPEC_EXTREMES)]], "depthwise": [[1e3, 1e9]],
            "elementwise": [[1e3, 1e9]], "dispatch_s": rng.choice(SPEC_EXTREMES)}}}
    else:
        d, k = rng.choice(leaves)
        d[k]["value"] = rng.choice(SPEC_EXTREMES)
    path = os.path.join(tmp, "chip.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(data, f)
    load_spec(path)
    analyze(os.path.join(ROOT, "models", "resnet18.onnx"), [path], 1, "auto")


CLI_EXTREMES = [0, -1, 1, 3, (1 << 31) + 1, (1 << 63), 10**30]


def cli_case(rng: random.Random, tmp: str) -> None:
    """The pipeline asked for extreme integers: a batch, a named dim, a whole shape."""
    path = os.path.join(tmp, "case.onnx")
    onnx.save(generated_seeds()[0], path)
    v = rng.choice(CLI_EXTREMES)
    how = rng.choice(["batch", "dim", "shape"])
    if how == "batch":
        analyze(path, ["h100-sxm5"], v, "auto")
    elif how == "dim":
        analyze(path, ["h100-sxm5"], None, "auto", dims={"batch": v})
    else:
        profile(path, shapes={"x": (v, 8, 16, 16), "x2": (1, 8, 16, 16)})


# -- running ----------------------------------------------------------------------------------------------

class _Timeout(BaseException):  # not an Exception: library code that catches those must not swallow it
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_case(path: str) -> None:
    """profile -> fuse (both presets) -> analyze, binding a symbolic batch when the model has one."""
    try:
        p = profile(path, batch=1)
    except HwUtilError as e:
        if not isinstance(e, NoBatchDim):
            raise
        p = profile(path)
    for preset in ("runtime", "aggressive"):
        fuse(p, preset)
    batch = 1 if p.bound.symbols else None
    analyze(path, ["h100-sxm5", "tpu-v4"], batch or 1, "auto") if batch else None


def one(args) -> tuple[str, str, str]:
    """(outcome, mutation, detail) for case number i."""
    i, seed, seeds, save_dir = args
    rng = random.Random(seed * 1_000_003 + i)
    target = rng.random()
    if target < 0.2:  # not a model: a hostile spec, or extreme integers from the command line
        return _guarded(spec_case if target < 0.1 else cli_case, rng, "spec" if target < 0.1 else "cli")
    base = seeds[rng.randrange(len(seeds))]
    m: onnx.ModelProto | bytes = onnx.ModelProto.FromString(base)
    kinds = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        if isinstance(m, bytes):
            break
        try:
            m, k = mutate(m, rng)
        except Exception:  # protobuf refused to build the mutant (too deep, say): keep the last one
            break
        kinds.append(k)
    try:
        data = m if isinstance(m, bytes) else m.SerializeToString()
    except Exception:
        data = base
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.onnx")
        with open(path, "wb") as f:
            f.write(data)
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(CASE_TIMEOUT_S)
        try:
            run_case(path)
            outcome, detail = "result", ""
        except HwUtilError as e:
            msg = str(e)
            outcome, detail = ("error", msg) if msg and "\n" not in msg else ("bug", f"bad message: {msg!r}")
        except _Timeout:
            outcome, detail = "bug", f"hang: over {CASE_TIMEOUT_S} s"
        except BaseException as e:  # anything else is exactly what this campaign looks for
            tb = traceback.extract_tb(e.__traceback__)[-1]
            outcome = "bug"
            detail = f"{type(e).__name__}: {str(e)[:160]} at {os.path.basename(tb.filename)}:{tb.lineno}"
        finally:
            signal.alarm(0)
        if outcome == "bug" and save_dir:
            os.makedirs(save_dir, exist_ok=True)
            with open(os.path.join(save_dir, f"case_{seed}_{i}.onnx"), "wb") as f:
                f.write(data)
    return outcome, "+".join(kinds), detail


def _guarded(case, rng: random.Random, kind: str) -> tuple[str, str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(CASE_TIMEOUT_S)
        try:
            case(rng, tmp)
            return "result", kind, ""
        except HwUtilError as e:
            msg = str(e)
            return ("error", kind, msg) if msg and "\n" not in msg else ("bug", kind, f"bad message: {msg!r}")
        except _Timeout:
            return "bug", kind, f"hang: over {CASE_TIMEOUT_S} s"
        except BaseException as e:
            tb = traceback.extract_tb(e.__traceback__)[-1]
            where = f"{os.path.basename(tb.filename)}:{tb.lineno}"
            return "bug", kind, f"{type(e).__name__}: {str(e)[:160]} at {where}"
        finally:
            signal.alarm(0)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def campaign(cases: int, seed: int = 0, jobs: int = 1, save_dir: str | None = None,
             bundled: bool = True) -> dict:
    seeds = [s.SerializeToString() for s in generated_seeds() + (bundled_seeds() if bundled else [])]
    work = [(i, seed, seeds, save_dir) for i in range(cases)]
    if jobs > 1:
        with Pool(jobs, initializer=_limit_memory) as pool:
            outcomes = pool.map(one, work, chunksize=8)
    else:
        outcomes = [one(w) for w in work]
    counts = {"cases": cases, "results": 0, "errors": 0, "bugs": 0}
    bugs = []
    for i, (outcome, kinds, detail) in enumerate(outcomes):
        counts[{"result": "results", "error": "errors", "bug": "bugs"}[outcome]] += 1
        if outcome == "bug":
            bugs.append((i, kinds, detail))
    counts["bug_list"] = bugs
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--save-bugs", default=None, help="write every model that found a bug here")
    args = ap.parse_args()
    r = campaign(args.cases, args.seed, args.jobs, args.save_bugs)
    print(f"cases run: {r['cases']}, results: {r['results']}, clean errors: {r['errors']}, bugs: {r['bugs']}")
    seen = set()
    for i, kinds, detail in r["bug_list"]:
        key = detail.split(" at ")[-1]
        if key not in seen:
            seen.add(key)
            print(f"  case {i} ({kinds}): {detail}")
    return 1 if r["bugs"] else 0


if __name__ == "__main__":
    sys.exit(main())

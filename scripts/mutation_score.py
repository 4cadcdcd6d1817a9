"""Mutation score: plant one plausible bug at a time and see whether the tests notice.

    python scripts/mutation_score.py [--only ID,ID] [--jobs 2] [--json out.json]

Each mutant below is a small, believable slip (a rounding down, a `>` for a `>=`, a dropped factor of two, a
legality check removed) in ops/, memory, fusion/, hardware/, findings or gates. For each one the script copies
the package and the tests to a temporary folder, applies the change there (the checkout is never touched),
runs the tests that cover that module from that folder (so the mutated copy is the one imported), and
records whether they failed (killed) or passed (survived). A mutant whose text is no longer in the source is
reported as stale, not counted. Not run in
CI (it takes minutes); run it before a release and keep the README's testing section's score current.
"""

# ruff: noqa: E501  (the mutants are a table: one source line, its slip, its tests per entry)
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OPS_TESTS = ["tests/test_counts.py", "tests/test_formulas.py", "tests/test_geometry.py",
             "tests/test_regressions.py", "tests/test_predictions.py"]
MEMORY_TESTS = ["tests/test_counts.py", "tests/test_predictions.py", "tests/test_regressions.py"]
FUSION_TESTS = ["tests/test_fusion_legality.py", "tests/test_regressions.py", "tests/test_predictions.py",
                "tests/test_fusion.py"]
HW_TESTS = ["tests/test_predictions.py", "tests/test_geometry.py", "tests/test_hardware.py",
            "tests/test_regressions.py"]
FINDINGS_TESTS = ["tests/test_boundaries.py", "tests/test_findings.py", "tests/test_regressions.py"]
GATES_TESTS = ["tests/test_boundaries.py", "tests/test_gates.py", "tests/test_regressions.py"]

# (id, file under onnx_hwutil/, text to find (exactly once), replacement, the slip it stands for, tests)
MUTANTS = [
    # -- ops: the counts and their geometry
    ("gemm-transA", "ops/matrix.py", 'k = a_shape[0] if ctx.attr("transA", 0) else a_shape[-1]',
     "k = a_shape[-1]", "Gemm's transA ignored", OPS_TESTS),
    ("conv-cin", "ops/matrix.py", "return prod(y_shape) * prod(w_shape[1:])",
     "return prod(y_shape) * prod(w_shape[2:])", "Conv MACs without Cin/group", OPS_TESTS),
    ("bias-free", "ops/matrix.py", "bias = n_out if bias_input is not None and ctx.has(bias_input) else 0",
     "bias = 0", "a matrix op's bias add not counted", OPS_TESTS),
    ("seq-first", "ops/matrix.py", "if b_rank <= 2 or prod(b_shape[:-2]) == 1:", "if b_rank <= 1:",
     "a 2-D weight no longer folds A's leading dims into M", OPS_TESTS),
    ("einsum-batch", "ops/matrix.py", "steps.append((i, Gemm(size(kept_l & kept_r),",
     "steps.append((i, Gemm(1,", "Einsum's batch labels dropped from its geometry", OPS_TESTS),
    ("attention-heads", "ops/attention.py",
     "h = heads if heads > 0 and qk_dim % heads == 0 and v_dim % heads == 0 else 1", "h = 1",
     "attention as one GEMM over all heads", OPS_TESTS),
    ("sigmoid-3", "ops/elementwise.py", '"Sigmoid": 4,', '"Sigmoid": 3,', "Sigmoid priced at 3 FLOPs",
     OPS_TESTS),
    ("fused-act", "ops/elementwise.py", "return FLOPS_PER_ELEMENT.get(name, 1) if name else 0",
     "return 1 if name else 0", "a fused activation priced at 1 FLOP", OPS_TESTS),
    ("loop-once", "ops/control.py", "return _work(body.total.scaled(trips), [(\"body\", body, trips)], [note])",
     "return _work(body.total, [(\"body\", body, trips)], [note])", "a Loop's body counted once", OPS_TESTS),
    ("gqa-total", "ops/attention.py", "return (ctx.shape(3, rank=4)[2] if ctx.has(3) else 0) + new_tokens",
     "return ctx.shape(3, rank=4)[2] if ctx.has(3) else 0", "GQA's key length without the new tokens",
     [*OPS_TESTS, "tests/test_llm.py"]),
    # -- memory
    ("view-buffer", "memory.py", 'view = n.domain == "" and n.op_type in VIEW_OPS', "view = False",
     "views given their own buffer in peak memory", MEMORY_TESTS),
    ("outputs-die", "memory.py", "end[root[o]] = n", "end[root[o]] = end.get(root[o], 0)",
     "graph outputs freed after their last reader", MEMORY_TESTS),
    # -- fusion legality
    ("convbn-reader", "fusion/chains.py", "    if readers != [bn]:", "    if False:",
     "ConvBn folding without the only-reader check", FUSION_TESTS),
    ("convbn-const", "fusion/chains.py", "        if t and not ctx.constant(t):", "        if False:",
     "ConvBn folding with statistics known only at run time", FUSION_TESTS),
    ("bias-const", "fusion/chains.py",
     '    if not ctx.const_input(node):\n        return "no constant operand: a sum',
     '    if False:\n        return "no constant operand: a sum', "a residual Add taken as a bias", FUSION_TESTS),
    ("bias-broadcast", "fusion/chains.py", "return None if grown == own else", "return None if True else",
     "a growing constant taken as a bias", FUSION_TESTS),
    ("transpose-perm", "fusion/chains.py",
     "if rank >= 2 and perm[:-2] == list(range(rank - 2)) and perm[-2:] == [rank - 1, rank - 2]:",
     "if rank >= 2:", "any Transpose folded into a MatMul operand", FUSION_TESTS),
    ("epilogue-reduce", "fusion/kinds.py", "if nxt is None or ctx.group_kind(part, nxt) > BROADCAST:",
     "if nxt is None or ctx.group_kind(part, nxt) > REDUCTION:", "epilogues swallow reductions",
     FUSION_TESTS),
    ("output-middle", "fusion/context.py", "                if t in self.outputs:\n                    return None",
     "                if False:\n                    return None",
     "fusion across a tensor that is a graph output", FUSION_TESTS),
    ("clip-bounds", "fusion/chains.py", 'if n.op_type != "Clip" or len(n.inputs) == 1 or ctx.const_input(node):',
     "if True:", "a Clip with run-time bounds fused", FUSION_TESTS),
    # -- hardware: mapping and backends
    ("gpu-small-m", "hardware/backends.py", "tile_m = GPU_TILE_M_MIN if g.m <= GPU_TILE_M_MIN else GPU_TILE_M",
     "tile_m = GPU_TILE_M", "a one-row product priced as a 128-row tile", HW_TESTS),
    ("gpu-waves", "hardware/backends.py", "waves = ceil(blocks / self.units)\n        block_flops",
     "waves = max(blocks // self.units, 1)\n        block_flops", "GPU waves not rounded up", HW_TESTS),
    ("tpu-folds", "hardware/backends.py", "return ceil(folds / self.units) * self.fold_cycles(g.m), self.units",
     "return max(folds // self.units, 1) * self.fold_cycles(g.m), self.units", "TPU folds rounded down",
     HW_TESTS),
    ("tpu-fill", "hardware/backends.py", "return 2 * self.rows + self.cols + m - 2",
     "return self.rows + self.cols + m - 2", "TPU weight load not counted", HW_TESTS),
    ("split-k", "hardware/backends.py", "split = max(1, min(self.units // tiles, g.k // GPU_SPLIT_K_MIN))",
     "split = 1", "no split-K for short grids", HW_TESTS),
    ("cpu-share", "hardware/backends.py", "share = ceil(blocks / units) / blocks", "share = 1 / units",
     "CPU blocks split as if divisible", HW_TESTS),
    ("vector-waves", "hardware/backends.py", "waves = ceil(blocks / self.units)\n        per_unit",
     "waves = blocks / self.units\n        per_unit", "elementwise waves fractional", HW_TESTS),
    ("roofline-sum", "hardware/mapping.py", "return max(self.compute_s, self.memory_s) + self.overhead_s",
     "return self.compute_s + self.memory_s + self.overhead_s", "the roofline's max turned into a sum",
     HW_TESTS),
    ("spill-once", "hardware/mapping.py", "spill = 2 * internal if", "spill = internal if",
     "spills counted once instead of twice", HW_TESTS),
    ("energy-static", "hardware/mapping.py", "energy_static_j=spec.idle_w * latency",
     "energy_static_j=spec.idle_w * compute_s", "idle energy over compute time only", HW_TESTS),
    ("energy-dram", "hardware/mapping.py", "energy_dram_j=dram * spec.j_per_dram_byte",
     "energy_dram_j=(dram - spill) * spec.j_per_dram_byte", "spilled bytes cost no energy", HW_TESTS),
    ("loglog-linear", "hardware/backends.py",
     "return float(np.exp(np.interp(np.log(max(x, 1.0)), xs, ys)))",
     "return float(np.interp(x, [p[0] for p in points], [p[1] for p in points]))",
     "calibration interpolation linear instead of log-log", HW_TESTS),
    ("nearest-weights", "hardware/backends.py", "w = 1.0 / d[order]", "w = d[order]",
     "GEMM rates weighted towards the farther point", HW_TESTS),
    ("vector-rate", "hardware/rates.py", 'vector = spec.vector_ops_per_s["fp32"]', "vector = matrix",
     "non-matrix work at the matrix peak", HW_TESTS),
    ("per-inference", "hardware/mapping.py", '"energy_per_inference_j": self.energy["total_j"] / self.batch,',
     '"energy_per_inference_j": self.energy["total_j"],', "energy per batch labelled per inference",
     HW_TESTS),
    ("auto-calibrated", "hardware/rates.py", "    if spec.calibration:\n        return CALIBRATED_PRECISION\n",
     "", "a calibrated spec predicting a precision it never measured", HW_TESTS),
    # -- findings
    ("memory-threshold", "findings.py", "MEMORY_BOUND_SHARE = 0.3", "MEMORY_BOUND_SHARE = 0.5",
     "the memory-bound threshold moved", FINDINGS_TESTS),
    ("overhead-threshold", "findings.py", "OVERHEAD_SHARE = 0.25", "OVERHEAD_SHARE = 0.3",
     "the overhead threshold moved", FINDINGS_TESTS),
    ("idle-strict", "findings.py", '_idle(w.s) / w.s.units_allocated["total"] >= IDLE_SHARE',
     '_idle(w.s) / w.s.units_allocated["total"] > IDLE_SHARE', "idle units exactly at the threshold not reported",
     FINDINGS_TESTS),
    ("util-strict", "findings.py", "w.s.compute_utilization < TARGET_UTILIZATION",
     "w.s.compute_utilization <= TARGET_UTILIZATION", "exactly half the peak reported as low", FINDINGS_TESTS),
    ("ridge-strict", "findings.py", "w.s.arithmetic_intensity < w.s.ridge_point",
     "w.s.arithmetic_intensity <= w.s.ridge_point", "on the ridge called below it", FINDINGS_TESTS),
    ("same-peak", "findings.py", 'if v["peak_ops_per_s"] > s.rates.peak_ops_per_s:',
     'if v["peak_ops_per_s"] >= s.rates.peak_ops_per_s:', "an equal peak said to rise", FINDINGS_TESTS),
    # -- gates
    ("gate-gt", "gates.py", '">": operator.gt', '">": operator.ge', "a > gate evaluated as >=", GATES_TESTS),
    ("gate-le", "gates.py", '"<=": operator.le', '"<=": operator.lt', "a <= gate evaluated as <",
     GATES_TESTS),
    ("gate-ne", "gates.py", '"!=": operator.ne', '"!=": operator.eq', "!= read as ==", GATES_TESTS),
    # -- re-batching and recurrent geometry
    ("rnn-parallel", "ops/matrix.py", "gemm = Gemm(dirs, batch, gates * hidden, x[2] + hidden, True, serial=seq)",
     "gemm = Gemm(dirs * seq, batch, gates * hidden, x[2] + hidden, True)", "recurrent steps run side by side",
     OPS_TESTS),
    ("rebatch-axis", "rebatch.py", "            return 1\n    return 0", "            return 0\n    return 0",
     "a sequence-first recurrent input re-batched on the sequence", ["tests/test_every_model.py"]),
    ("rebatch-slice", "rebatch.py", 'if node.op_type == "Slice" and 0 in _slice_axes(node, consts):',
     "if False:", "fixed rows of the batch still taken to carry it", ["tests/test_every_model.py"]),
    ("rebatch-outermost", "rebatch.py", "data is not None and not outermost and", "data is not None and",
     "a target's only 1 taken for the batch where the input keeps it outermost", ["tests/test_every_model.py"]),
]


def _workspace(tmp: str) -> None:
    """A checkout-shaped folder: the package and tests copied (the copy is what gets mutated and imported),
    the data they read linked."""
    for d in ("onnx_hwutil", "tests"):
        shutil.copytree(os.path.join(ROOT, d), os.path.join(tmp, d),
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp)
    for d in ("hwspecs", "models", "scripts", "docs"):
        os.symlink(os.path.join(ROOT, d), os.path.join(tmp, d))


def _run(mutant, timeout: int) -> dict:
    mid, rel, find, replace, why, tests = mutant
    with tempfile.TemporaryDirectory(prefix=f"mut-{mid}-") as tmp:
        _workspace(tmp)
        path = os.path.join(tmp, "onnx_hwutil", rel)
        with open(path, encoding="utf-8") as f:
            src = f.read()
        if src.count(find) != 1:
            return {"id": mid, "why": why, "outcome": "stale", "detail": f"found {src.count(find)} times"}
        if replace is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(src.replace(find, replace))
        env = dict(os.environ, PYTHONPATH=tmp + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONDONTWRITEBYTECODE="1")
        t0 = time.time()
        try:
            r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                               cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout)
            lines = r.stdout.strip().splitlines()
            first = next((x for x in lines if x.startswith(("FAILED", "ERROR"))), lines[-1] if lines else "")
            killed, tail = r.returncode != 0, first
        except subprocess.TimeoutExpired:
            killed, tail = True, f"timed out after {timeout} s"
        return {"id": mid, "why": why, "outcome": "killed" if killed else "survived", "detail": tail,
                "seconds": round(time.time() - t0, 1)}


def _import_check() -> None:
    """The copy must win over the installed package, or every mutant would 'survive'."""
    with tempfile.TemporaryDirectory() as tmp:
        _workspace(tmp)
        env = dict(os.environ, PYTHONPATH=tmp)
        out = subprocess.run([sys.executable, "-c", "import onnx_hwutil; print(onnx_hwutil.__file__)"],
                             env=env, capture_output=True, text=True, cwd=tmp).stdout.strip()
        if not out.startswith(tmp):
            sys.exit(f"mutation_score: the copy is not imported first ({out}); cannot score")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated mutant ids")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    _import_check()
    chosen = [m for m in MUTANTS if not args.only or m[0] in args.only.split(",")]
    baseline = _run(("baseline", "errors.py", "class HwUtilError", None, "no change",
                     sorted({t for m in chosen for t in m[5]})), args.timeout)
    if baseline["outcome"] != "survived":
        sys.exit(f"mutation_score: the unmutated tests fail ({baseline['detail']}); fix them first")
    with ThreadPoolExecutor(args.jobs) as ex:
        results = list(ex.map(lambda m: _run(m, args.timeout), chosen))
    for r in results:
        print(f"{r['outcome']:9s} {r['id']:18s} {r['why']}  [{r.get('seconds', '')} s] {r['detail'][:80]}")
    counted = [r for r in results if r["outcome"] != "stale"]
    killed = sum(r["outcome"] == "killed" for r in counted)
    score = killed / len(counted) if counted else 0.0
    print(f"mutation score: {killed}/{len(counted)} killed ({100 * score:.1f}%), "
          f"{len(results) - len(counted)} stale")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"killed": killed, "counted": len(counted), "score": score, "results": results}, f,
                      indent=1)
    return 0 if score >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())

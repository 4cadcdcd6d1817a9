"""`llm` predictions against published LLM inference measurements (docs/validation.md, section 6).

Builds graph-only Llama decoders at the published models' dims with scripts/build_llama.py (plain ops, as an
Optimum export writes them; weights never written) and sets each prediction beside a measurement a public
source reports, with the same model dims, chip, precision, batch and lengths. Every source is named in its
row. Run from the repo root (about a minute on 2 cores)::

    python scripts/validate_llm.py [--out DIR] [--markdown]

What the rows cannot match, by construction: the runtimes measured (gpt-fast with torch.compile, vLLM,
TensorRT-LLM) use CUDA graphs and their own fused kernels, and GPU clocks under load; we model the exported
graph under our `aggressive` fusion preset. The A100 of the gpt-fast rows was power-limited to 330 W.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import tempfile
from dataclasses import dataclass, replace

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnx_hwutil.llm import Query, study  # noqa: E402


def _builder():
    spec = importlib.util.spec_from_file_location("build_llama", ROOT / "scripts" / "build_llama.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


bl = _builder()
# The published models' config.json values (hidden_size, num_hidden_layers, num_attention_heads,
# num_key_value_heads, intermediate_size, vocab_size); rotary details do not change any count.
MODELS = {
    "Llama-2-7B": replace(bl.LLAMA_1B, hidden=4096, layers=32, heads=32, kv_heads=32, head_dim=128,
                          intermediate=11008, vocab=32000, max_pos=4096),
    "Llama-3-8B": replace(bl.LLAMA_1B, hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128,
                          intermediate=14336, vocab=128256, max_pos=8192),
    "Llama-2-70B": replace(bl.LLAMA_1B, hidden=8192, layers=80, heads=64, kv_heads=8, head_dim=128,
                           intermediate=28672, vocab=32000, max_pos=4096),
}
GPT_FAST = "pytorch-labs/gpt-fast README.md, Benchmarks (A100-80GB power-limited to 330 W, batch 1, prompt ~5, 200 new)"


@dataclass(frozen=True)
class Published:
    model: str
    hw: str
    what: str  # "tokens_per_s" (generated tokens / whole generation), "tpot_ms", "ttft_ms" or "e2e_ms"
    value: float
    batch: int
    prompt: int
    generate: int
    source: str
    weights: str = "model"
    precision: str = "bf16"
    devices: int = 1


ROWS = [
    Published("Llama-2-7B", "a100-sxm4", "tokens_per_s", 104.9, 1, 5, 200, GPT_FAST),
    Published("Llama-2-7B", "a100-sxm4", "tokens_per_s", 155.58, 1, 5, 200, GPT_FAST + ", int8 weights", "int8"),
    Published("Llama-2-7B", "a100-sxm4", "tokens_per_s", 196.80, 1, 5, 200, GPT_FAST + ", int4 g32", "int4"),
    Published("Llama-2-7B", "a100-sxm4", "tokens_per_s", 168.84, 1, 5, 200, GPT_FAST + ", TP2", devices=2),
    Published("Llama-2-7B", "a100-sxm4", "tokens_per_s", 254.02, 1, 5, 200, GPT_FAST + ", TP4", devices=4),
    Published("Llama-2-7B", "a100-sxm4", "tokens_per_s", 328.43, 1, 5, 200, GPT_FAST + ", TP8", devices=8),
    Published("Llama-2-70B", "a100-sxm4", "tokens_per_s", 21.32, 1, 5, 200, GPT_FAST + ", TP2", devices=2),
    Published("Llama-2-70B", "a100-sxm4", "tokens_per_s", 62.50, 1, 5, 200, GPT_FAST + ", TP8", devices=8),
    Published("Llama-3-8B", "a100-sxm4", "tokens_per_s", 95.64, 1, 5, 200,
              "pytorch/ao torchao/quantization/README.md, Benchmarks (A100, batch 1, bf16)"),
    Published("Llama-3-8B", "h100-sxm5", "tpot_ms", 7.56, 10, 137, 187,
              "LambdaLabsML/vllm-benchmark results/prompt_10/1xH100-80GB-SXM (vLLM 0.6, 10 prompts at once, "
              "1369 input / 1867 output tokens in all): median TPOT"),
    Published("Llama-3-8B", "a100-sxm4", "tpot_ms", 12.01, 10, 137, 187,
              "LambdaLabsML/vllm-benchmark results/prompt_10/1xA100-80GB-SXM: median TPOT"),
    Published("Llama-3-8B", "h100-sxm5", "e2e_ms", 997.5, 8, 32, 128,
              "vLLM nightly latency benchmark (buildkite vllm/performance-benchmark build 9555; "
              ".buildkite/nightly-benchmarks/tests/latency-tests.json: batch 8, input 32, output 128)"),
    Published("Llama-3-8B", "h200-sxm", "e2e_ms", 833.4, 8, 32, 128, "same benchmark, build 9515 (H200)"),
    Published("Llama-3-8B", "a100-sxm4", "e2e_ms", 1579.3, 8, 32, 128, "same benchmark, build 9523 (A100)"),
    Published("Llama-2-7B", "a100-sxm4", "ttft_ms", 16, 1, 128, 1,
              "NVIDIA/TensorRT-LLM docs/source/performance.md (v0.5), Low Latency: LLaMA 7B FP16, input 128"),
    Published("Llama-2-7B", "a100-sxm4", "ttft_ms", 133, 1, 2048, 1, "same table: input 2048"),
    Published("Llama-2-7B", "h100-sxm5", "ttft_ms", 7, 1, 128, 1,
              "same table: LLaMA 7B FP8 on H100, input 128", "fp8", "fp8"),
    Published("Llama-2-7B", "h100-sxm5", "ttft_ms", 36, 1, 2048, 1, "same table: FP8, input 2048", "fp8", "fp8"),
]


def predict(path: str, r: Published) -> float:
    d = study(path, Query((r.hw,), (r.batch,), (r.prompt,), r.prompt, r.generate, r.weights, "model",
                          r.precision, "aggressive", r.devices))
    s = d["summary"][0]
    if r.what == "tokens_per_s":  # generated tokens over the whole generation, prefill included (gpt-fast)
        return r.generate * r.batch / s["e2e_s"] / r.batch
    return {"tpot_ms": s["tpot_s"], "ttft_ms": s["ttft_s"], "e2e_ms": s["e2e_s"]}[r.what] * 1e3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=None, help="where to keep the built graphs")
    ap.add_argument("--markdown", action="store_true", help="print the table for docs/validation.md")
    args = ap.parse_args(argv)
    out = args.out or pathlib.Path(tempfile.mkdtemp(prefix="llm_graphs_"))
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, cfg in MODELS.items():
        p = out / f"{name}.onnx"
        if not p.exists():
            p.write_bytes(bl.build_plain(cfg).SerializeToString())
        paths[name] = str(p)
    lines = ["| model | chip | precision, weights, devices | batch | prompt / new | metric | published | "
             "predicted | predicted / published | source |", "|" + "---|" * 10]
    ratios = []
    for r in ROWS:
        got = predict(paths[r.model], r)
        ratio = got / r.value
        ratios.append(ratio)
        lines.append(f"| {r.model} | {r.hw} | {r.precision}, {r.weights}, {r.devices} | {r.batch} | "
                     f"{r.prompt} / {r.generate} | {r.what} | {r.value:g} | {got:.4g} | {ratio:.2f}x | "
                     f"{r.source} |")
        if not args.markdown:
            print(f"{r.model:12} {r.hw:10} {r.precision:5} w={r.weights:5} tp={r.devices} b={r.batch:<3} "
                  f"{r.what:13} published {r.value:<8g} predicted {got:<9.4g} {ratio:.2f}x", flush=True)
    inside = sum(0.67 <= x <= 1.5 for x in ratios)
    print(f"\n{inside} of {len(ratios)} rows within 0.67x-1.5x; ratios "
          f"{min(ratios):.2f}x to {max(ratios):.2f}x (median {sorted(ratios)[len(ratios) // 2]:.2f}x)")
    if args.markdown:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

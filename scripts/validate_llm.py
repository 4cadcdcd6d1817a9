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
    "Llama-3.1-70B": replace(bl.LLAMA_1B, hidden=8192, layers=80, heads=64, kv_heads=8, head_dim=128,
                             intermediate=28672, vocab=128256, max_pos=8192),
    "Llama-3.1-405B": replace(bl.LLAMA_1B, hidden=16384, layers=126, heads=128, kv_heads=8, head_dim=128,
                              intermediate=53248, vocab=128256, max_pos=8192),
    "Llama-3.2-3B": replace(bl.LLAMA_1B, hidden=3072, layers=28, heads=24, kv_heads=8, head_dim=128,
                            intermediate=8192, vocab=128256, max_pos=8192),
}
# Llama-3.1-8B has Llama-3-8B's dims; Llama-2-13B is not built (no row needs it)
MODELS["Llama-3.1-8B"] = MODELS["Llama-3-8B"]
INF2 = ("aws-neuron/aws-neuron-sdk general/benchmarks/inf2/latency_data_decoder.csv (Neuron 2.18, "
        "inf2.48xlarge: 24 NeuronCores = 12 chips, TP 24, FP16 with BF16 matmuls, batch 1), P50")
GAUDI = ("Intel Gaudi model performance, 'LLM for Throughput with Intel Gaudi 3' (Gaudi SW 1.18.0, "
         "HLS-Gaudi3, fp8, batch as listed): tokens/sec")
GPT_FAST = ("pytorch-labs/gpt-fast README.md, Benchmarks (A100-80GB power-limited to 330 W, batch 1, "
            "prompt ~5, 200 new)")


@dataclass(frozen=True)
class Published:
    model: str
    hw: str
    # "tokens_per_s": generated tokens / the whole generation, per sequence; "total_tokens_per_s": the same
    # for the whole batch; "decode_tokens_per_s": 1 / time per output token (llama.cpp's and Ollama's
    # "eval rate", prompt excluded); "tpot_ms", "ttft_ms", "e2e_ms"
    what: str
    value: float
    batch: int
    prompt: int
    generate: int
    source: str
    weights: str = "model"
    precision: str = "bf16"
    devices: int = 1
    kv: str = "model"


ROWS = [
    Published("Llama-2-7B", "a100-sxm4", "tokens_per_s", 104.9, 1, 5, 200, GPT_FAST),
    Published("Llama-2-7B", "a100-sxm4", "tokens_per_s", 155.58, 1, 5, 200, GPT_FAST + ", int8", "int8"),
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
    Published("Llama-2-7B", "h100-sxm5", "ttft_ms", 36, 1, 2048, 1, "same table: FP8, input 2048", "fp8",
              "fp8"),
    # The catalog's chips with an LLM measurement and no ResNet-50/BERT one (issue 19)
    Published("Llama-2-7B", "inferentia2", "tpot_ms", 6.47, 1, 128, 3968, INF2, devices=12),
    Published("Llama-2-7B", "inferentia2", "ttft_ms", 27.64, 1, 128, 3968, INF2, devices=12),
    Published("Llama-2-70B", "inferentia2", "tpot_ms", 32.90, 1, 128, 128, INF2, devices=12),
    Published("Llama-2-70B", "inferentia2", "ttft_ms", 76.60, 1, 128, 128, INF2, devices=12),
    Published("Llama-3.1-70B", "mi300x", "e2e_ms", 17236, 1, 128, 2048,
              "AMD ROCm performance results (amd.com/en/developer/resources/rocm-hub/dev-ai/"
              "performance-results.html), Latency Measurements: Llama 3.1 70B FP8 (FP8 KV), 8 x MI300X, "
              "vLLM 0.9.1",
              "fp8", "fp8", devices=8, kv="fp8"),
    Published("Llama-3.1-405B", "mi300x", "e2e_ms", 3530, 1, 128, 128,
              "Oracle blog 'Serving Llama 3.1 405B with AMD MI300X GPUs', Latency measurements: FP8, "
              "8 x MI300X, vLLM benchmark_latency, batch 1", "fp8", "fp8", devices=8),
    Published("Llama-3.1-405B", "mi300x", "e2e_ms", 3974, 8, 128, 128, "same table: batch 8", "fp8", "fp8",
              devices=8),
    Published("Llama-3.1-8B", "gaudi3", "total_tokens_per_s", 24310, 1536, 128, 128, GAUDI, "fp8", "fp8"),
    Published("Llama-3.1-8B", "gaudi3", "total_tokens_per_s", 2652, 256, 2048, 128, GAUDI, "fp8", "fp8"),
    Published("Llama-2-7B", "gaudi3", "total_tokens_per_s", 19810, 1536, 128, 128, GAUDI, "fp8", "fp8"),
    Published("Llama-3.2-3B", "raspberry-pi-5", "decode_tokens_per_s", 4.61, 1, 16, 256,
              "geerlingguy/ai-benchmarks README: Ollama llama3.2:3b (Q4_K_M, ~4.9 bits a weight) on a Pi 5 "
              "8GB, eval rate", "int4", "int8"),
    Published("Llama-3.1-8B", "raspberry-pi-5", "decode_tokens_per_s", 2.05, 1, 16, 256,
              "geerlingguy/ai-benchmarks issue #7: Ollama llama3.1:8b on a Pi 5 16GB, no tweaks", "int4",
              "int8"),
]


def predict(path: str, r: Published) -> float:
    d = study(path, Query((r.hw,), (r.batch,), (r.prompt,), r.prompt, r.generate, r.weights, r.kv,
                          r.precision, "aggressive", r.devices))
    s = d["summary"][0]
    if r.what == "tokens_per_s":  # generated tokens over the whole generation, prefill included (gpt-fast)
        return r.generate / s["e2e_s"]
    if r.what == "total_tokens_per_s":
        return r.batch * r.generate / s["e2e_s"]
    if r.what == "decode_tokens_per_s":
        return 1 / s["tpot_s"]
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

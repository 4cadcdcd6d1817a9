"""The table of `onnx-hwutil validate`: predicted beside measured."""

from __future__ import annotations

from tabulate import tabulate

from ..validate import Validation


def render(v: Validation, top: int = 12) -> str:
    level = "a default session (ORT_ENABLE_ALL)" if v.level == "all" else "ORT_ENABLE_EXTENDED"
    head = (f"{v.model} on {v.hardware}, {v.threads} thread(s), fp32, onnxruntime at {level}, median of "
            f"{v.runs} runs: "
            f"predicted {v.predicted_latency_s * 1e3:.2f} ms, measured {v.measured_latency_s * 1e3:.2f} ms, "
            f"error {100 * v.relative_error:+.1f}%  (kernel time mapped: {100 * v.coverage:.0f}%)")
    rows = sorted(v.subgraphs, key=lambda r: -r["measured_s"])[:top]
    table = tabulate([(r["id"], r["label"][:36], f"{r['predicted_s'] * 1e3:.3f}",
                       f"{r['measured_s'] * 1e3:.3f}",
                       f"{100 * (r['predicted_s'] - r['measured_s']) / r['measured_s']:+.0f}%"
                       if r["measured_s"] else "") for r in rows],
                     headers=["id", "kernel", "predicted ms", "measured ms", "error"], tablefmt="simple",
                     disable_numparse=True)
    return head + "\n\n" + table

"""Measure the bundled models on an NVIDIA GPU with PyTorch, for docs/validation.md.

Runs on a machine with a GPU, torch, torchvision and transformers (never needed by the tool or its tests):

    python scripts/gpu_check.py [--out results.json] [--batches 1,8,32] [--iters 50]

The same architectures as models/*.onnx, with random weights, in eval mode at fp16, timed two ways with
CUDA events (median of --iters after warm-up): eager (one launch per op, BatchNorm not folded) and replayed
as a CUDA graph (launch overhead gone), which is closest to what our `runtime` preset and 5 us per-kernel
overhead describe. Prints one line per point and writes JSON; compare with
`onnx-hwutil analyze models/NAME.onnx --hw h100-sxm5 --precision fp16 --batch ...`.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch


def build(name: str):
    import torchvision

    if name == "bert_base":
        from transformers import BertConfig, BertModel

        model = BertModel(BertConfig(), add_pooling_layer=False)

        def inputs(b):
            ids = torch.randint(0, 30522, (b, 128), device="cuda")
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        return model, inputs
    model = getattr(torchvision.models, name)(weights=None)

    def images(b):
        return {"x": torch.randn(b, 3, 224, 224, device="cuda", dtype=torch.float16)}

    return model, images


def time_ms(fn, iters: int) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measure(name: str, batches: list[int], iters: int) -> list[dict]:
    model, make = build(name)
    model = model.cuda().half().eval()
    points = []
    for b in batches:
        kw = make(b)
        with torch.inference_mode():
            eager = time_ms(lambda kw=kw: model(**kw), iters)
            static = {k: v.clone() for k, v in kw.items()}
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    model(**static)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                model(**static)
            replay = time_ms(graph.replay, iters)
        points.append({"model": name, "batch": b, "precision": "fp16", "eager_ms": eager,
                       "cuda_graph_ms": replay})
        print(f"{name:14s} b{b:<3d} eager {eager:8.3f} ms  graph {replay:8.3f} ms", flush=True)
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,vit_b_16,bert_base")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    props = torch.cuda.get_device_properties(0)
    results = {"device": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
               "points": []}
    print(f"{props.name}, {props.multi_processor_count} SMs, torch {torch.__version__}", flush=True)
    for name in args.models.split(","):
        results["points"] += measure(name, [int(x) for x in args.batches.split(",")], args.iters)
        torch.cuda.empty_cache()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

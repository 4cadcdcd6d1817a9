"""Our predictions beside published measurements, at the same model, batch and precision.

    python scripts/validate_published.py [--markdown]

Each entry names its source. MLPerf numbers are tuned upper bounds (TensorRT/oneDNN kernels, large batches,
fused graphs); our model is a static roofline over discrete units, uncalibrated on these chips, so the ratio
says how far a peak-based analysis lands from a tuned deployment, not an error bar of a fitted model.
"""

from __future__ import annotations

import argparse
import os

from tabulate import tabulate

from onnx_hwutil.analysis import Analyzer, Point

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MLPERF = "MLCommons inference_results"
NEURON = "aws-neuron/aws-neuron-sdk about-neuron/benchmarks/trn1"

# (label, model, hardware, batch, precision, metric, published value, source, caveat)
PUBLISHED = [
    ("H100 SXM, ResNet-50, Offline", "resnet50", "h100-sxm5", 256, "int8", "throughput", 88_714.3,
     f"{MLPERF}_v4.0 closed/NVIDIA DGX-H100_H100-SXM-80GBx1_TRT resnet50 Offline", "TensorRT INT8"),
    ("A100 SXM, ResNet-50, Offline", "resnet50", "a100-sxm4", 256, "int8", "throughput", 42_379.3,
     f"{MLPERF}_v3.0 closed/NVIDIA DGX-A100_A100-SXM-80GBx1_TRT resnet50 Offline", "TensorRT INT8"),
    ("H200 SXM (1 of 8), ResNet-50, Offline", "resnet50", "h200-sxm", 256, "int8", "throughput", 756_960 / 8,
     f"{MLPERF}_v4.1 closed/NVIDIA/results/H200-SXM-141GBx8_TRT resnet50 Offline, divided by 8",
     "TensorRT INT8; 8-GPU system"),
    ("L40S (1 of 4), ResNet-50, Offline", "resnet50", "l40s", 256, "int8", "throughput", 180_613 / 4,
     f"{MLPERF}_v4.1 closed/Dell/results/R760xa_L40Sx4_TRT resnet50 Offline, divided by 4",
     "TensorRT INT8; 4-GPU system"),
    ("L4, ResNet-50, Offline", "resnet50", "l4", 256, "int8", "throughput", 12_881.7,
     f"{MLPERF}_v3.1 closed/NVIDIA/results/L4x1_TRT resnet50 Offline", "TensorRT INT8"),
    ("T4, ResNet-50, Offline", "resnet50", "t4", 256, "int8", "throughput", 6_035.57,
     f"{MLPERF}_v0.7 closed/NVIDIA/results/T4x1_TRT resnet50 Offline", "TensorRT INT8, 2020 software"),
    ("H100 PCIe, ResNet-50, Offline", "resnet50", "h100-pcie", 256, "int8", "throughput", 56_635,
     f"{MLPERF}_v3.0 closed/NVIDIA/results/H100-PCIe-80GBx1_TRT resnet50 Offline", "TensorRT INT8"),
    ("Xeon 6980P (1 of 2 sockets), ResNet-50, Offline", "resnet50", "xeon-6980p", 256, "int8", "throughput",
     45_617.3 / 2, f"{MLPERF}_v4.1 closed/Intel/results/1-node-2S-GNR-PyTorch resnet50 Offline, halved",
     "MRDIMM-8800 (ours DDR5-6400); preview"),
    ("RTX 4090, ResNet-50, Offline", "resnet50", "rtx-4090", 256, "int8", "throughput", 45_772.1,
     f"{MLPERF}_v3.1 closed/CTuning/results/"
     "amd_zen4_workstation-nvidia_original-gpu-tensorrt-vdefault-default_config resnet50 offline"
     " (mlperf_log_detail.txt result_samples_per_second)", "TensorRT 8.6 INT8; edge, 1 GPU"),
    ("RTX 4090 (1 of 2), ResNet-50, Offline", "resnet50", "rtx-4090", 256, "int8", "throughput", 88_476.4 / 2,
     f"{MLPERF}_v5.1 closed/GATEOverflow/results/rtx4090x2-nvidia-gpu-TensorRT-default_config"
     " resnet50 offline, divided by 2", "TensorRT INT8; edge, 2-GPU system"),
    ("A100 SXM, ResNet-50, SingleStream p90", "resnet50", "a100-sxm4", 1, "int8", "latency_ms", 0.457,
     f"{MLPERF}_v3.0 closed/NVIDIA DGX-A100_A100-SXM-80GBx1_TRT resnet50 SingleStream", "TensorRT INT8"),
    ("Jetson AGX Orin, ResNet-50, SingleStream p90", "resnet50", "jetson-orin-agx", 1, "int8", "latency_ms",
     0.640, f"{MLPERF}_v3.1 closed/NVIDIA Orin edge resnet50 SingleStream", "GPU only assumed"),
    ("RTX 4090, ResNet-50, SingleStream p90", "resnet50", "rtx-4090", 1, "int8", "latency_ms", 0.221487,
     f"{MLPERF}_v3.1 closed/CTuning/results/"
     "amd_zen4_workstation-nvidia_original-gpu-tensorrt-vdefault-default_config resnet50 singlestream",
     "TensorRT 8.6 INT8"),
    ("Xeon 8480+ (1 of 2 sockets), ResNet-50, Offline", "resnet50", "xeon-8490h", 256, "int8", "throughput",
     20_565.5 / 2, f"{MLPERF}_v3.1 closed/Intel 1-node-2S-SPR-PyTorch-INT8 resnet50 Offline, halved",
     "8480+ has 56 cores, ours 60"),
    ("A100 40GB, BERT-base s128, b1, FP16", "bert_base", "a100-sxm4-40gb", 1, "fp16", "latency_ms", 0.64,
     "NVIDIA/TensorRT demo/BERT/README.md (TRT 8.5.1), A100 40GB table", "TensorRT FP16"),
    ("A100 40GB, BERT-base s128, b32, FP16", "bert_base", "a100-sxm4-40gb", 32, "fp16", "latency_ms", 4.06,
     "NVIDIA/TensorRT demo/BERT/README.md (TRT 8.5.1), A100 40GB table", "TensorRT FP16"),
    ("A100 40GB, BERT-base s128, b128, INT8", "bert_base", "a100-sxm4-40gb", 128, "int8", "latency_ms", 8.22,
     "NVIDIA/TensorRT demo/BERT/README.md (TRT 8.5.1), A100 40GB table", "TensorRT INT8"),
    ("Trainium1 (2 NeuronCores x b16), BERT-base s128, throughput", "bert_base", "trainium1", 32, "bf16",
     "throughput", 3_421.56625089,
     f"{NEURON}/throughput_data_encoder.csv bert-base-uncased trn1.2xlarge (Neuron 2.27.0, PyTorch 2.9),"
     " batch 16, Data Parallel", "FP32 model, matmuls autocast to BF16; 2 cores x b16 = our b32"),
    ("Trainium1 (2 NeuronCores x b1), BERT-base s128, throughput", "bert_base", "trainium1", 2, "bf16",
     "throughput", 2_085.45272427,
     f"{NEURON}/latency_data_encoder.csv bert-base-uncased trn1.2xlarge (Neuron 2.26.0, PyTorch 2.8),"
     " batch 1, Data Parallel", "FP32 model, matmuls autocast to BF16; 2 cores x b1 = our b2"),
    ("TPU v4 chip, ResNet-50 training -> x3 forward", "resnet50", "tpu-v4", 256, "bf16", "throughput",
     3_450 * 3, "MLCommons training_results_v1.0 Google tpu-v4-128 resnet, img/s per chip from the log x3",
     "training, derived: rough"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print a GitHub table")
    ap.add_argument("--fusion", default="auto", help="fusion preset for our predictions (auto: each chip's)")
    args = ap.parse_args()
    a = Analyzer()
    rows = []
    for label, model, hw, batch, prec, metric, value, source, caveat in PUBLISHED:
        # Every source ran a fusing compiler (TensorRT, XLA, IPEX/oneDNN): the `aggressive` preset.
        s = a.run(Point(os.path.join(ROOT, "models", f"{model}.onnx"), hw, batch, prec, args.fusion))
        ours = s.throughput_per_s if metric == "throughput" else s.latency_s * 1e3
        unit = ("seq/s" if model.startswith("bert") else "img/s") if metric == "throughput" else "ms"
        rows.append((label, batch, prec, f"{value:,.3g} {unit}", f"{ours:,.3g} {unit}", f"{ours / value:.2f}",
                     source, caveat))
    print(tabulate(rows, headers=["measurement", "batch", "precision", "published", "predicted",
                                  "predicted / published", "source", "caveat"],
                   tablefmt="github" if args.markdown else "simple", disable_numparse=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

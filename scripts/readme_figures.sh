#!/usr/bin/env bash
# Regenerates the figures the README shows and the example report in docs/example-report/
# (Markdown, JSON and PNG are committed; the SVGs and the self-contained HTML are not, to keep the
# repository small: rerun this to get them).
set -euo pipefail
cd "$(dirname "$0")/.."
onnx-hwutil analyze models/resnet50.onnx --hw h100-sxm5 --plot docs/img -o /dev/null
mv docs/img/roofline_h100-sxm5_bf16_b1.png docs/img/roofline_resnet50_h100-sxm5.png
mv docs/img/roofline_h100-sxm5_bf16_b1.svg docs/img/roofline_resnet50_h100-sxm5.svg
onnx-hwutil sweep models/resnet50.onnx --batch 1,2,4,8,16,32,64 --plot docs/img -o /dev/null
mv docs/img/batch_sweep.png docs/img/batch_sweep_resnet50.png
mv docs/img/batch_sweep.svg docs/img/batch_sweep_resnet50.svg
onnx-hwutil report models/resnet18.onnx models/resnet50.onnx -o docs/example-report

#!/usr/bin/env bash
# The installed package, not the checkout: build a wheel, install it into a fresh virtual environment, and
# run it from a folder outside the checkout, so bundled chips must come from the package's own data.
# Dependencies come from the interpreter that runs this script (--system-site-packages); the package
# itself only from the wheel.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
quiet() { "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 1; }; }
quiet python3 -m pip wheel -q --no-deps -w "$work/dist" "$repo"
quiet python3 -m venv --system-site-packages "$work/venv"
quiet "$work/venv/bin/python" -m pip install -q --no-deps "$work"/dist/*.whl
cd "$work"
where="$("$work/venv/bin/python" -c 'import onnx_hwutil, os; print(os.path.dirname(onnx_hwutil.__file__))')"
case "$where" in "$work/venv/"*) ;; *) echo "check_wheel: imported $where, not the wheel" >&2; exit 1;; esac
"$work/venv/bin/onnx-hwutil" hw list | grep -q h100-sxm5
"$work/venv/bin/python" -c 'import importlib.resources as r; assert r.files("onnx_hwutil").joinpath("schemas/analyze.schema.json").is_file()' 
"$work/venv/bin/onnx-hwutil" compare "$repo/models/resnet18.onnx" "$repo/models/resnet50.onnx" >/dev/null
echo "check_wheel: the wheel's own specs serve hw list and compare"

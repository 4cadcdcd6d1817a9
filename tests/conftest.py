import os
import pathlib

import pytest
from hypothesis import settings

# CI runs the same examples every time (a red build names a real regression, not a new random draw);
# locally hypothesis explores as usual.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
BUNDLED = ["resnet18", "resnet50", "mobilenet_v2", "vit_b_16", "bert_base"]


def model_path(name: str) -> str:
    return os.fspath(MODELS / f"{name}.onnx")


@pytest.fixture(scope="session")
def bundled():
    from onnx_hwutil.profile import Bindings, bind

    cache = {}

    def get(name: str, batch: int = 1):
        key = (name, batch)
        if key not in cache:
            cache[key] = bind(model_path(name), Bindings(batch=batch))
        return cache[key]

    return get


def ort_kernels(path, tmp_path) -> tuple[int, int]:
    """(ours under `runtime`, onnxruntime's at ORT_ENABLE_ALL) kernel counts for the model at `path`,
    counted as scripts/compare_fusion_ort.py counts them (layout Transposes left out on our side)."""
    import onnx_hwutil
    from onnx_hwutil.fusion import fuse
    from onnx_hwutil.fusion.ort_graph import count_kernels, optimized_graph

    ours = sum(1 for k in fuse(onnx_hwutil.profile(path), "runtime").kernels if k.label != "Transpose")
    theirs, _ = count_kernels(optimized_graph(path, str(tmp_path)))
    return ours, sum(theirs.values())

"""onnx-hwutil: how well an ONNX model will use a given piece of hardware, and why.

    >>> import onnx_hwutil
    >>> p = onnx_hwutil.profile("models/resnet50.onnx", batch=1)
    >>> p.totals.macs
    4089184256
    >>> [round(s.latency_s * 1e3, 3) for s in onnx_hwutil.analyze("models/resnet50.onnx", ["h100-sxm5"], [1])]
    [0.507]
"""

import os

# onnxruntime writes a telemetry database under the user's home cache folder as it is imported; a static
# analyzer writes nothing the user did not ask for. Read at onnxruntime's import, so set before any of ours.
if not os.environ.get("ORT_DISABLE_TELEMETRY"):  # unset or empty; a user's explicit 0 stands
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"

from .analysis import analyze
from .errors import HwUtilError
from .profile import Profile, profile

__all__ = ["HwUtilError", "Profile", "analyze", "profile"]
__version__ = "0.1.0"

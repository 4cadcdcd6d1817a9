"""onnx-hwutil: how well an ONNX model will use a given piece of hardware, and why.

    >>> import onnx_hwutil
    >>> p = onnx_hwutil.profile("models/resnet50.onnx", batch=1)
    >>> p.totals.macs
    4089184256
"""

from .errors import HwUtilError
from .profile import Profile, profile

__all__ = ["HwUtilError", "Profile", "profile"]
__version__ = "0.1.0"

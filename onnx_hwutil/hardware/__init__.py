"""Hardware: specs as data (hwspecs/*.yaml, one schema), behaviour per kind of chip."""

from .catalog import bundled_specs, load_spec
from .spec import HardwareSpec

__all__ = ["HardwareSpec", "bundled_specs", "load_spec"]

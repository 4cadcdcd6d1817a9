"""Hardware: specs as data (hwspecs/*.yaml, one schema), behaviour per kind of chip."""

from .spec import HardwareSpec, bundled_specs, load_spec

__all__ = ["HardwareSpec", "bundled_specs", "load_spec"]

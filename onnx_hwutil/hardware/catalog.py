"""Finding and loading hardware specs: the bundled chips by name, `host`, or a user's YAML file by path.

Kept apart from `spec` (the schema and its parser), which `host` builds on: loading reaches both, and
neither reaches back.
"""

from __future__ import annotations

import os

import yaml

from ..errors import HwUtilError
from ..limits import MAX_SPEC_BYTES
from .host import host_spec
from .spec import HardwareSpec, parse

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A wheel carries the specs as package data; a source checkout (and an editable install) has them beside
# the package.
HWSPEC_DIR = next((d for d in (os.path.join(_PACKAGE, "hwspecs"), os.path.join(os.path.dirname(_PACKAGE),
                                                                                 "hwspecs"))
                   if os.path.isdir(d)), os.path.join(_PACKAGE, "hwspecs"))


def load_spec(name_or_path: str) -> HardwareSpec:
    """A bundled chip by name (`h100-sxm5`), `host` (this machine), or a user's YAML file by path."""
    if name_or_path == "host" and not os.path.exists(name_or_path):
        return host_spec()
    path = name_or_path
    if not os.path.exists(path):
        path = os.path.join(HWSPEC_DIR, f"{name_or_path}.yaml")
        if not os.path.exists(path):
            raise HwUtilError(f"unknown hardware {name_or_path!r}; known: {', '.join(known_specs())} "
                              "(or give a path to a spec YAML)")
    if not os.path.isfile(path):  # a FIFO or a device would block the read forever
        raise HwUtilError(f"{path}: not a regular file")
    if os.path.getsize(path) > MAX_SPEC_BYTES:
        raise HwUtilError(f"{path}: {os.path.getsize(path):,} bytes, more than a hardware spec holds "
                          f"(at most {MAX_SPEC_BYTES:,})")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f.read(MAX_SPEC_BYTES + 1))
    except (OSError, UnicodeDecodeError) as e:
        raise HwUtilError(f"{path}: cannot read: {e}") from None
    except yaml.YAMLError as e:
        raise HwUtilError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    return parse(data, path)


def bundled_specs() -> list[str]:
    if not os.path.isdir(HWSPEC_DIR):
        return []
    return sorted(f[:-5] for f in os.listdir(HWSPEC_DIR) if f.endswith(".yaml"))


def known_specs() -> list[str]:
    """What `--hw` accepts by name: the bundled chips and `host`."""
    return [*bundled_specs(), "host"]

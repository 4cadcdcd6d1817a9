"""Human-readable numbers: SI prefixes for counts, binary prefixes for bytes.

Below findings and report, which both print numbers: a lower layer never reaches up for a helper."""

import re

from .errors import HwUtilError


def si(x: float, unit: str = "", digits: int = 3) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.{digits}g} {prefix}{unit}".rstrip()
    return f"{x:.{digits}g} {unit}".rstrip()


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def ms(seconds: float, digits: int = 3) -> str:
    return f"{seconds * 1e3:.{digits}f} ms"


def size(n: float) -> str:
    for factor, prefix in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= factor:
            return f"{n / factor:.2f} {prefix}"
    return f"{int(n)} B"


def not_costed(c: dict) -> str:
    """The share of nodes left out of the counts, and the MACs they do at least: '-' when none."""
    if not c.get("uncosted_nodes"):
        return "-"
    macs = c["uncosted_macs_at_least"]
    return (f"{c['uncosted_nodes']}/{c['nodes']} nodes ({pct(c['uncosted_node_share'])})"
            + (f", >= {si(macs)} MACs ({pct(c['uncosted_mac_share_at_least'])})" if macs else ""))


_BYTE_UNITS = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20,
               "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str, flag: str) -> float:
    """'80GB' (decimal, as vendors print memory), '64GiB', '8e10' -> bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]{1,3})?)\s*([kmgt]i?b|b)?\s*", text.lower())
    if not m:
        raise HwUtilError(f"{flag} {text!r}: expected a size such as 80GB, 64GiB or 8e10 (bytes)")
    return float(m.group(1)) * _BYTE_UNITS[m.group(2) or ""]

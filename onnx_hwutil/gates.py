"""CI gates: `--fail-if "latency_ms>5"` conditions over analyze's results; a failed one exits 1.

A condition is METRIC OP NUMBER with OP one of < <= > >= == !=. METRIC is a key of an analyze JSON entry
(latency_s, throughput_per_s, compute_utilization, memory_bandwidth_utilization, energy_per_inference_j, ...)
or one of the conveniences latency_ms, energy_per_inference_mj, energy_per_batch_mj, units_mean,
uncosted_nodes, uncosted_node_share and uncosted_mac_share (a lower bound), or a count of findings:
`findings` (all of them) or
`finding_RULE` (one rule's, e.g. finding_memory_bound). Every entry (hardware x batch x precision) is tested.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from .errors import HwUtilError
from .findings import RULES

_OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
        ">": operator.gt}
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|==|!=|<|>)\s*([-+0-9.eE]+)\s*$")
_DERIVED = {"latency_ms": lambda d: d["latency_s"] * 1e3,
            "energy_per_inference_mj": lambda d: d["energy_per_inference_j"] * 1e3,
            "energy_per_batch_mj": lambda d: d["energy_per_batch_j"] * 1e3,
            "units_mean": lambda d: d["units_allocated"]["mean"],
            "findings": lambda d: len(d["findings"]),
            "uncosted_nodes": lambda d: d["coverage"]["uncosted_nodes"],
            "uncosted_node_share": lambda d: d["coverage"]["uncosted_node_share"],
            "uncosted_mac_share": lambda d: d["coverage"]["uncosted_mac_share_at_least"]}
_DERIVED |= {f"finding_{r}": (lambda d, r=r: sum(f["rule"] == r for f in d["findings"])) for r in RULES}


@dataclass(frozen=True)
class Gate:
    text: str
    metric: str
    op: str
    value: float

    def value_of(self, entry: dict) -> float | None:
        return _DERIVED[self.metric](entry) if self.metric in _DERIVED else entry.get(self.metric)

    def fails(self, entry: dict) -> bool:
        """The condition says when to fail: `latency_ms>5` fails an entry slower than 5 ms. A metric with
        no value (the intensity of a model with no DRAM traffic) satisfies no condition."""
        v = self.value_of(entry)
        return v is not None and _OPS[self.op](v, self.value)


def parse_gate(text: str, example: dict) -> Gate:
    m = _CONDITION.match(text)
    if not m:
        raise HwUtilError(f"--fail-if {text!r}: expected METRIC OP NUMBER, for example latency_ms>5")
    metric, op, number = m.groups()
    # the numbers an analyze entry holds, and the conveniences
    numbers = [k for k, v in example.items()
               if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))]
    numeric = sorted(numbers + list(_DERIVED))
    if metric not in numeric:
        raise HwUtilError(f"--fail-if {text!r}: unknown metric {metric!r}; metrics: {', '.join(numeric)}")
    if metric.startswith("finding") and "findings" not in example:
        raise HwUtilError(f"--fail-if {text!r}: needs findings, which --no-findings turned off")
    try:
        return Gate(text, metric, op, float(number))
    except ValueError:
        raise HwUtilError(f"--fail-if {text!r}: {number!r} is not a number") from None


def failures(gates: list[Gate], entries: list[dict]) -> list[str]:
    out = []
    for e in entries:
        for g in gates:
            if g.fails(e):
                out.append(f"{g.text} on {e['hardware']} {e['precision']} batch {e['batch']}: "
                           f"{g.metric} = {g.value_of(e):.6g}")
    return out

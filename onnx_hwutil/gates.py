"""CI gates: `--fail-if "latency_ms>5"` conditions over analyze's results; a failed one exits 1.

A condition is METRIC OP NUMBER with OP one of < <= > >= == !=. METRIC is a key of an analyze JSON entry
(latency_s, throughput_per_s, compute_utilization, memory_bandwidth_utilization, energy_per_inference_j, ...)
or one of the conveniences latency_ms, energy_per_inference_mj, energy_per_batch_mj, units_mean,
uncosted_nodes, uncosted_node_share and uncosted_mac_share (a lower bound), or a count of findings:
`findings` (all of them) or
`finding_RULE` (one rule's, e.g. finding_memory_bound). Every entry (hardware x batch x precision) is tested.

A NUMBER ending in % is relative to a baseline (`analyze --baseline OLD.json`, the JSON an earlier analyze
wrote): `latency_ms>+5%` fails an entry more than 5% slower than the same chip, batch, precision and preset in
the baseline; `dram_bytes>+0%` fails any growth; `compute_utilization<-10%` a drop of more than 10%.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from .errors import HwUtilError
from .findings import RULES

_OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
        ">": operator.gt}
_CONDITION = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|==|!=|<|>)\s*([-+]?[0-9.eE]+)\s*(%?)\s*$")
_KEY = ("hardware", "precision", "batch", "fusion")  # what makes two analyze entries the same point
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
    relative: bool = False  # value is a percentage of the baseline's value

    def value_of(self, entry: dict) -> float | None:
        return _DERIVED[self.metric](entry) if self.metric in _DERIVED else entry.get(self.metric)

    def threshold(self, old: dict | None) -> float | None:
        if not self.relative:
            return self.value
        base = self.baseline_value(old)
        return None if base is None else base * (1 + self.value / 100)

    def baseline_value(self, old: dict | None) -> float | None:
        """The metric in a baseline entry; a baseline that lacks it or holds no finite number for it is
        one for another kind of run, an input error."""
        if old is None:
            return None
        try:
            v = self.value_of(old)
        except (KeyError, TypeError, IndexError):
            raise HwUtilError(f"--fail-if {self.text!r}: the baseline has no {self.metric} for "
                              f"{old.get('hardware')} batch {old.get('batch')} (written with --no-findings?)"
                              ) from None
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"),
                                                                                     float("-inf")):
            raise HwUtilError(f"--baseline: {self.metric} = {v!r} for {old.get('hardware')} batch "
                              f"{old.get('batch')} is not a finite number")
        return v

    def fails(self, entry: dict, old: dict | None = None) -> bool:
        """The condition says when to fail: `latency_ms>5` fails an entry slower than 5 ms. A metric with
        no value (the intensity of a model with no DRAM traffic) satisfies no condition."""
        v, t = self.value_of(entry), self.threshold(old)
        return v is not None and t is not None and _OPS[self.op](v, t)


def parse_gate(text: str, example: dict, baseline: bool = False) -> Gate:
    m = _CONDITION.match(text)
    if not m:
        raise HwUtilError(f"--fail-if {text!r}: expected METRIC OP NUMBER, for example latency_ms>5 or "
                          "latency_ms>+5% (with --baseline)")
    metric, op, number, percent = m.groups()
    if percent and not baseline:
        raise HwUtilError(f"--fail-if {text!r}: a relative gate needs --baseline OLD.json to compare with")
    # the numbers an analyze entry holds, and the conveniences
    numbers = [k for k, v in example.items()
               if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))]
    numeric = sorted(numbers + list(_DERIVED))
    if metric not in numeric:
        raise HwUtilError(f"--fail-if {text!r}: unknown metric {metric!r}; metrics: {', '.join(numeric)}")
    if metric.startswith("finding") and "findings" not in example:
        raise HwUtilError(f"--fail-if {text!r}: needs findings, which --no-findings turned off")
    try:
        return Gate(text, metric, op, float(number), bool(percent))
    except ValueError:
        raise HwUtilError(f"--fail-if {text!r}: {number!r} is not a number") from None


def _key(e: dict) -> tuple:
    return tuple(repr(e.get(k)) for k in _KEY)  # repr: a malformed entry (a list for a batch) still hashes


def match_baseline(entries: list[dict], baseline: object, source: str) -> list[dict]:
    """The baseline entry for each entry of this run: the same chip, precision, batch and preset, from a
    JSON written by the same layout version. Anything else is a baseline for another run: an error."""
    if not isinstance(baseline, list) or not all(isinstance(b, dict) for b in baseline):
        raise HwUtilError(f"--baseline {source}: not the JSON of `onnx-hwutil analyze --format json`")
    schema = entries[0].get("schema") if entries else None
    old = [b.get("schema") for b in baseline]
    if any(s != schema for s in old):
        raise HwUtilError(f"--baseline {source}: written as {old[0] or 'an unversioned layout'}, this run is "
                          f"{schema}; regenerate the baseline")
    by_key = {_key(b): b for b in baseline}
    here = [_key(e) for e in entries]
    if set(here) != set(by_key):
        def fmt(keys):
            return ", ".join(" ".join(x.strip("'") for x in (h, p, f"batch {b}", f))
                             for h, p, b, f in sorted(keys, key=str)) or "nothing"
        raise HwUtilError(f"--baseline {source}: it holds {fmt(by_key)}; this run is {fmt(here)}; run "
                          "with the same --hw, --batch, --precision and --fusion")
    return [by_key[k] for k in here]


def failures(gates: list[Gate], entries: list[dict], baseline: list[dict] | None = None) -> list[str]:
    out = []
    for i, e in enumerate(entries):
        old = baseline[i] if baseline else None
        for g in gates:
            if g.fails(e, old):
                v = g.value_of(e)
                was = ""
                if g.relative:
                    b = g.baseline_value(old)
                    change = f"{100 * (v - b) / b:+.1f}%" if b else "from 0"
                    was = f" (baseline {b:.6g}, {change})"
                out.append(f"{g.text} on {e['hardware']} {e['precision']} batch {e['batch']}: "
                           f"{g.metric} = {v:.6g}{was}")
    return out

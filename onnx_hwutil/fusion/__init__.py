"""Fusion: the graph rewritten, as a partition, into the kernels a runtime would launch.

Presets are lists of passes (manager.py); a pass manager runs the list to a fixpoint on a copy of the
partition and checks the partition's invariants after every pass (contract.py). `explain` says, for one
node, which rule took it or why each rule that could have did not.
"""

from __future__ import annotations

from .context import Context, FusionPass, Merge, PassResult, Rejection, Rule, Step
from .contract import InvariantViolation
from .explain import Explanation, explain
from .fused import FusedGraph, Subgraph
from .manager import (
    AUTO,
    CHOICES,
    MAX_ROUNDS,
    PASSES,
    PRESETS,
    STRENGTH,
    for_chip,
    fuse,
    resolve_passes,
    run_passes,
    what_ifs,
)
from .partition import Partition

__all__ = ["AUTO", "CHOICES", "MAX_ROUNDS", "PASSES", "PRESETS", "STRENGTH", "Context", "Explanation",
           "FusedGraph", "FusionPass", "InvariantViolation", "Merge", "Partition", "PassResult", "Rejection",
           "Rule", "Step", "Subgraph", "explain", "for_chip", "fuse", "resolve_passes", "run_passes",
           "what_ifs"]

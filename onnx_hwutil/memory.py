"""Peak memory: weights plus the largest set of activations alive at once along the execution order.

A tensor is alive from the step that produces it (graph inputs: from the start) to the last step that
reads it (graph outputs: to the end). Outputs of shape-only ops (Reshape, Squeeze...) are views of their
input, as in every runtime, so they extend its life instead of adding a buffer.
"""

from __future__ import annotations

from collections.abc import Mapping

from .dtypes import tensor_nbytes
from .graph import VIEW_OPS, Graph
from .ops import GraphCosts


def activation_buffers(graph: Graph, costs: GraphCosts, precision: str,
                       stored: Mapping[str, float] | None = None) -> tuple[dict[str, int], dict[str, str]]:
    """(buffer root -> bytes, tensor -> buffer root) for every non-constant tensor of the graph."""
    root: dict[str, str] = {}
    size: dict[str, int] = {}

    def add(name: str) -> None:
        t = graph.tensor(name)
        if t.const:
            return
        root[name] = name
        size[name] = tensor_nbytes(t, precision, stored) if t.static else 0

    for name in graph.inputs:
        add(name)
    for n in graph.nodes:
        view = n.domain == "" and n.op_type in VIEW_OPS
        for i, o in enumerate(n.outputs):
            if not o:
                continue
            src = n.inputs[0] if view and i == 0 and n.inputs and n.inputs[0] in root else None
            if src is not None:
                root[o] = root[src]
            else:
                add(o)
    return size, root


def live_activation_bytes(graph: Graph, costs: GraphCosts, precision: str,
                          stored: Mapping[str, float] | None = None) -> tuple[list[int], int]:
    """(bytes of activations alive at each step, the graph's inputs first, then each node's; total bytes of
    all activation buffers). The peak is the largest of the former."""
    size, root = activation_buffers(graph, costs, precision, stored)
    n = len(graph.nodes)
    start: dict[str, int] = dict.fromkeys(graph.inputs, 0)
    end: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for o in node.outputs:
            if o in root and root[o] == o:
                start[o] = i
                end.setdefault(o, i)  # an output nobody reads still exists while its producer runs
        for t in graph.reads(node):
            if t in root:
                r = root[t]
                end[r] = max(end.get(r, i), i)
    for o in graph.outputs:
        if o in root:
            end[root[o]] = n
    alloc = [0] * (n + 1)
    free = [0] * (n + 1)
    for r, b in size.items():
        alloc[start.get(r, 0)] += b
        free[end.get(r, start.get(r, 0))] += b
    live = 0
    at = [0] * (n + 1)
    for i in range(n + 1):
        live += alloc[i]
        at[i] = live
        live -= free[i]
    return at, sum(size.values())

"""Pausing Python's cyclic garbage collector around the stages that build large graphs.

Binding, costing and mapping a model allocate millions of objects that live until the command ends (a
100k-node graph's tensors, nodes, costs and kernels), and every full collection walks all of them again:
about a fifth of a large `analyze` went to collections that freed nothing. What those stages throw away is
freed by reference counting; whatever cyclic garbage they leave is collected once the collector runs again
after the stage. Results do not depend on it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Run the block with the cyclic collector off; as it was afterwards (nested uses are no-ops)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

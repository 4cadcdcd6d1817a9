"""Sweeps: the cross product of models x hardware x batch x precision x fusion, each stage computed once.

Points that share a model and batch share its shape inference, those that share a precision its costs,
those that share a fusion preset its fused graph; only the mapping runs per chip (see `analysis`). A point
that fails (a precision a chip lacks, say) is reported with its reason, and the sweep goes on.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from .analysis import Analyzer, Point
from .errors import HwUtilError


def points(models, hardware, batches, precisions, fusions) -> list[Point]:
    return [Point(os.fspath(m), hw, b, p, f)
            for m, b, p, f, hw in itertools.product(models, batches, precisions, fusions, hardware)]


def _run_group(group: list[Point]) -> list[dict]:
    """One worker's share: points of one model and batch, so its caches are reused."""
    a = Analyzer()
    out = []
    for p in group:
        row = {"model": p.model, "hardware": p.hardware, "batch": p.batch, "asked_precision": p.precision,
               "fusion": p.fusion}
        try:
            row |= a.run(p).to_dict(per_subgraph=False) | {"ok": True}
        except HwUtilError as e:
            row |= {"ok": False, "error": str(e)}
        out.append(row)
    return out


def sweep(pts: list[Point], jobs: int = 1, progress: Callable[[int], None] | None = None) -> list[dict]:
    """Results in the order of `pts`; with jobs > 1, (model, batch) groups run in worker processes."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(pts):
        groups.setdefault((p.model, p.batch), []).append(i)
    results: list[dict | None] = [None] * len(pts)
    step = progress or (lambda n: None)
    if jobs <= 1:
        for idx in groups.values():
            for i, row in zip(idx, _run_group([pts[i] for i in idx]), strict=True):
                results[i] = row
            step(len(idx))
    else:
        with ProcessPoolExecutor(jobs) as ex:
            futures = {ex.submit(_run_group, [pts[i] for i in idx]): idx for idx in groups.values()}
            for fut, idx in futures.items():
                for i, row in zip(idx, fut.result(), strict=True):
                    results[i] = row
                step(len(idx))
    return [r for r in results if r is not None]

"""Independent pieces of one command on several cores, in workers forked from this process.

Each finding of each analyzed point is independent of the others, and some take as long as the analysis
before them (a batch search, fusion and precision what-ifs). A forked worker starts with everything the parent
has computed (the loaded model, every bound batch and fused graph in the Analyzer's caches) at no cost, so
the work is never shipped, only the results (pickled). What a worker computes stays its own: work two
workers both need is done twice. A worker that dies has its items done again here, so a result never
depends on how many workers ran.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# What the workers run: set before they fork, so they inherit it instead of unpickling it.
_TASK: tuple[Callable, Sequence] | None = None


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def map_forked(fn: Callable[[T], R], items: Sequence[T], jobs: int | None = None) -> list[R]:
    """[fn(x) for x in items] in `jobs` forked workers (default: cpus()), each taking the next item as it
    finishes one: list the longest items first. An exception `fn` raises in a worker is raised here."""
    global _TASK
    jobs = min(jobs or cpus(), len(items))
    if jobs < 2 or "fork" not in multiprocessing.get_all_start_methods() or _TASK is not None:
        return [fn(x) for x in items]  # one core, no fork (Windows, macOS's default), or inside a worker
    _TASK = (fn, items)
    results: dict[int, R] = {}
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_item, i) for i in range(len(items))]
            for i, f in enumerate(futures):
                try:
                    results[i] = f.result()
                except BrokenProcessPool:
                    break  # a worker died: what is missing is done below
    finally:
        _TASK = None
    return [results[i] if i in results else fn(items[i]) for i in range(len(items))]


def _item(i: int):
    fn, items = _TASK
    return fn(items[i])


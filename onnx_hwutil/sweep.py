"""Sweeps: the cross product of models x hardware x batch x precision x fusion, each stage computed once.

Points that share a model and batch share its shape inference, those that share a precision its costs,
those that share a fusion preset its fused graph; only the mapping runs per chip (see `analysis`). A point
that fails (a precision a chip lacks, say) is reported with its reason, and the sweep goes on.

Chunks of points run here, in local worker processes, or on a dask.distributed cluster; each chunk is the
same pure function of its points wherever it runs, so the three give identical rows.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from functools import partial

from .analysis import Analyzer, Point
from .bindings import Bindings
from .dtypes import check_precision
from .errors import HwUtilError
from .fusion import resolve_passes
from .hardware import load_spec
from .limits import WORKERS_PER_CORE


def points(models, hardware, batches, precisions, fusions) -> list[Point]:
    """The cross product, duplicates dropped. What is wrong for every point (a missing model file, an
    unknown chip, precision or preset) is an input error now, not hundreds of failed rows later."""
    models, hardware, batches, precisions, fusions = (list(dict.fromkeys(x)) for x in
                                                      (models, hardware, batches, precisions, fusions))
    for m in models:
        if not os.path.isfile(m):
            raise HwUtilError(f"{m}: no such file")
    for hw in hardware:
        load_spec(hw)
    for p in precisions:
        if p not in ("auto", "model"):
            check_precision(p)
    for f in fusions:
        resolve_passes(f)
    return [Point(os.fspath(m), hw, b, p, f)
            for m, b, p, f, hw in itertools.product(models, batches, precisions, fusions, hardware)]


def run_points(pts: list[Point], a: Analyzer | None = None, bindings: Bindings | None = None) -> list[dict]:
    """Analyze each point with one Analyzer (so its caches are shared): a row per point, failed or not."""
    b = bindings or Bindings()
    a = a or Analyzer(b.shapes, b.dims, scoped=True)
    out = []
    for p in pts:
        row = {"model": p.model, "hardware": p.hardware, "batch": p.batch, "asked_precision": p.precision,
               "fusion": p.fusion}
        try:
            row |= a.run(p).to_dict(per_subgraph=False) | {"ok": True}
        except HwUtilError as e:
            row |= {"precision": None, "ok": False, "error": str(e)}
        out.append(row)
    return out


def _portable(p: Point) -> Point:
    """Absolute paths for what names a local file, so a worker on another host (with the same shared file
    system) or another working directory opens the same files."""
    hw = os.path.abspath(p.hardware) if os.path.isfile(p.hardware) else p.hardware
    return replace(p, model=os.path.abspath(p.model), hardware=hw)


WORKER_WAIT_S = 30


def check_scheduler(address: str) -> None:
    """A malformed address fails here, in one line, not inside a half-built Client."""
    try:
        from distributed.comm import parse_address
        from distributed.comm.addressing import parse_host_port
        from distributed.comm.registry import backends
    except ImportError:
        raise HwUtilError("--scheduler needs dask.distributed: pip install 'onnx-hwutil[dask]'") from None

    try:
        scheme, loc = parse_address(address, strict=True)
        if scheme not in backends:
            raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(sorted(backends))}")
        if scheme != "inproc":
            parse_host_port(loc)
    except ValueError as e:
        raise HwUtilError(f"--scheduler {address!r}: {e} (expected e.g. tcp://host:8786)") from None


def _on_dask(address: str, chunks: list[list[Point]], bindings: Bindings | None = None):
    """Run chunks on a dask.distributed cluster; yields (chunk index, rows) as they finish."""
    check_scheduler(address)
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError, TypeError) as e:  # TypeError: tls/ucx without their setup
        raise HwUtilError(f"--scheduler {address}: cannot connect ({e})") from None
    except (MemoryError, OverflowError):
        # Dask's wire format starts with frame lengths; a peer that is not Dask sends anything, and the
        # client tries to allocate what those bytes say (exabytes).
        raise HwUtilError(f"--scheduler {address}: the peer did not answer as a Dask scheduler (its first "
                          "bytes announced an impossible message size)") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except TimeoutError:
            raise HwUtilError(f"--scheduler {address}: no worker joined in {WORKER_WAIT_S} s") from None
        futures = client.map(partial(run_points, bindings=bindings),
                             [[_portable(p) for p in c] for c in chunks], pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            yield index[fut.key], fut.result()


def _local(jobs: int, chunks: list[list[Point]], bindings: Bindings | None = None):
    # More workers than chunks idle; more than a few per core only compete for the cores.
    jobs = min(jobs, len(chunks), WORKERS_PER_CORE * (os.cpu_count() or 1))
    if jobs <= 1:
        for i, c in enumerate(chunks):
            yield i, run_points(c, bindings=bindings)
        return
    with ProcessPoolExecutor(jobs) as ex:
        futures = {ex.submit(run_points, c, None, bindings): i for i, c in enumerate(chunks)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _as_given(row: dict, p: Point) -> None:
    """Paths as the user wrote them, wherever the row was computed (a worker sees absolute ones)."""
    shipped = _portable(p)
    row["model"] = p.model
    if not row["ok"]:
        row["hardware"] = p.hardware
        row["error"] = row["error"].replace(shipped.model, p.model).replace(shipped.hardware, p.hardware)


def sweep(pts: list[Point], jobs: int = 1, progress: Callable[[int], None] | None = None,
          scheduler: str | None = None, bindings: Bindings | None = None) -> list[dict]:
    """Results in the order of `pts`. Points of one (model, batch) form a chunk that shares its caches; with
    jobs > 1 chunks run in worker processes, with `scheduler` (a dask.distributed address) on its cluster."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(pts):
        groups.setdefault((p.model, p.batch), []).append(i)
    idx = list(groups.values())
    chunks = [[pts[i] for i in g] for g in idx]
    results: list[dict | None] = [None] * len(pts)
    done = _on_dask(scheduler, chunks, bindings) if scheduler else _local(jobs, chunks, bindings)
    for c, rows in done:
        for i, row in zip(idx[c], rows, strict=True):
            _as_given(row, pts[i])
            results[i] = row
        if progress:
            progress(len(rows))
    return [r for r in results if r is not None]

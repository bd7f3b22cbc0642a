"""``optout.apply_opt_outs``: the whole tool (validate, classify, write, hash, manifest, record).

Also a profile: where the time went, per step (timers around the library's own functions; the
input hashes run on a thread beside the engine, so they overlap the other steps).
"""

from __future__ import annotations

import functools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.core import Context

NAME = "apply_api"
TITLE = "optout.apply_opt_outs (Python API, default engine)"
ORDER = 20
GROUP = "release"
ENGINE: str | None = None  # the default


def _timed(spent: dict[str, float], step: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with lock:
                spent[step] += time.perf_counter() - t0

    return wrapper


def profiled_apply(ctx: Context, engine: str | None) -> dict[str, Any]:
    """Run ``apply_opt_outs`` once with timers around each step; return seconds, rows, profile."""
    from optout.release import make, manifest
    from optout.release.engines import DEFAULT_ENGINE

    name = engine or DEFAULT_ENGINE
    spent: dict[str, float] = defaultdict(float)
    main = threading.main_thread()

    def hashing(path: Path) -> str:
        name = threading.current_thread().name
        if name.startswith("optout-sha256-out"):
            step = "hash outputs (beside the next write)"
        elif threading.current_thread() is main:
            step = "hash outputs"
        else:
            step = "hash inputs (beside the engine)"
        t0 = time.perf_counter()
        try:
            return manifest.sha256_file(path)
        finally:
            spent[step] += time.perf_counter() - t0

    real_get = make.get_engine

    def get_engine(*args: Any, **kwargs: Any) -> Any:
        eng = real_get(*args, **kwargs)
        eng.classify = _timed(spent, "classify (read key columns, rules, counts)", eng.classify)  # type: ignore[method-assign]
        eng.write = _timed(spent, "write (read all, filter, write)", eng.write)  # type: ignore[method-assign]
        eng.finish_counts = _timed(  # type: ignore[method-assign]
            spent, "people counts: the wait after the writes (counted beside them)", eng.finish_counts
        )
        return eng

    patches = {
        (make, "_load_allow_list"): _timed(spent, "read the cleaned list", make._load_allow_list),
        (make, "make_plan"): _timed(spent, "plan (open and sniff tables)", make.make_plan),
        (make, "sha256_file"): hashing,
        (make, "get_engine"): get_engine,
        (make, "_ready_store"): _timed(
            spent, "metadata store: open, settle (beside the engine's classification)", make._ready_store
        ),
        (make, "_record_preparing"): _timed(spent, "metadata store: record", make._record_preparing),
        (manifest.StagedRelease, "commit"): _timed(spent, "fsync and rename", manifest.StagedRelease.commit),
    }
    saved = {k: getattr(*k) for k in patches}
    for (obj, attr), fn in patches.items():
        setattr(obj, attr, fn)
    try:
        t0 = time.perf_counter()
        report = make.apply_opt_outs(
            list(ctx.tables.values()),
            out_dir=Path(ctx.work_dir) / "release",
            cleaned_list=ctx.allow_path,
            checked_at=ctx.checked_at,
            links=ctx.links,
            unmatched="fail",
            engine=name,
        )
        seconds = time.perf_counter() - t0
    finally:
        for (obj, attr), fn in saved.items():
            setattr(obj, attr, fn)
    accounted = sum(v for k, v in spent.items() if "beside" not in k)
    profile = {k: round(v, 3) for k, v in spent.items()}
    profile["other (manifest, report, checks)"] = round(max(seconds - accounted, 0.0), 3)
    return {
        "seconds": seconds,
        "engine": name,
        "rows_out": {t.name: t.rows_out for t in report.tables},
        "people": {t.name: {"kept": t.people_kept, "removed": t.people_removed} for t in report.tables},
        "profile": profile,
    }


def run(ctx: Context) -> dict[str, Any]:
    return profiled_apply(ctx, ENGINE)

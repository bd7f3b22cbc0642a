"""What the generative apply tests share: one metadata store for every example (making one runs
the migrations, too slow to repeat per example), small CSV files written as a tool would, and the
check that every engine releases what the reference engine releases."""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optout.release import apply_opt_outs
from optout.store import Store

_STORE: list[Store] = []


def shared_store() -> Store:
    """One SQLite metadata store for this test process, made on first use."""
    if not _STORE:
        d = tempfile.mkdtemp(prefix="optout-gen-store-")
        _STORE.append(Store(f"sqlite:///{Path(d) / 'store.db'}"))
    return _STORE[0]


def write_csv(path: Path, header: list[str], rows: list[Any]) -> Path:
    """A UTF-8 CSV with LF line ends: the header, then the rows."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def assert_engines_agree(
    tables: Sequence[Path], root: Path, engines: Sequence[str], read: Callable[[Path], Any], **options: Any
) -> None:
    """Apply ``tables`` with each engine (into ``root / "out-<engine>"``, one shared store) and
    assert that its outputs, as ``read`` gives them, and its report's tables are the reference
    engine's."""
    results = {}
    for engine in engines:
        out = root / f"out-{engine}"
        rep = apply_opt_outs(tables, out_dir=out, engine=engine, store=shared_store(), **options)
        results[engine] = (rep.to_dict()["tables"], {p.name: read(out / p.name) for p in tables})
    for engine in engines:
        assert results[engine][1] == results["reference"][1], engine
        assert results[engine][0] == results["reference"][0], engine

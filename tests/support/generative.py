"""What the generative apply tests share: one metadata store for every example (making one runs
the migrations, too slow to repeat per example) and small CSV files written as a tool would."""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any

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

"""The one interface every engine implements, and the row classification they all share.

Each row of each table gets exactly one *status* (why it stays or goes). The rules, in order:

1. a table with an NHS-number column classifies the row by its own number:
   - number missing/invalid (``optout.nhs_number.Reason``), 001 §8.2:
     ``release`` -> KEPT_UNDER_REASON; ``trace`` -> the number from the trace index, or
     REMOVED_UNTRACED when there is none (or it is invalid, or the id maps to two numbers);
     ``withhold`` / ``fail`` -> REMOVED_INVALID (``fail`` stops before anything is written);
   - a valid number not in the submitted cohort (when known) -> REMOVED_NOT_IN_COHORT (a process
     error: the number was never checked);
   - a valid number on the cleaned list -> KEPT; otherwise REMOVED_NOT_ON_LIST (with a cohort:
     submitted but not returned, i.e. opted out).
2. a linked table (``child.col=parent.col``), 001 §8.1 whole-record removal: the row goes out only
   when every parent row with that key goes out and they belong to one person; otherwise
   REMOVED_WITH_PARENT, or REMOVED_ORPHAN when no parent row has the key (fail closed). A linked
   table with its own NHS column must pass both tests.

Engines: ``reference`` (pure Python, small data, the executable spec), ``duckdb`` (streaming) and
``spark`` (PySpark, local or a cluster; writes each table as a folder of parts, see ``outputs``).
A hypothesis test asserts they agree on random tables, lists and links.
"""

from __future__ import annotations

import codecs
import enum
import errno
import hashlib
import io
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optout.errors import OptoutError, OutputError
from optout.release.plan import ReleasePlan

__all__ = [
    "PROBLEM_ROWS_SHOWN",
    "Engine",
    "HashingFile",
    "Lists",
    "Status",
    "TableCounts",
    "output_error",
    "reencode",
]

PROBLEM_ROWS_SHOWN = 20  # row numbers of problem rows listed per table


class Status(enum.IntEnum):
    KEPT = 0
    KEPT_UNDER_REASON = 1
    KEPT_WITH_PARENT = 2
    REMOVED_NOT_ON_LIST = 10
    REMOVED_NOT_IN_COHORT = 11
    REMOVED_INVALID = 12
    REMOVED_UNTRACED = 13
    REMOVED_WITH_PARENT = 14
    REMOVED_ORPHAN = 15

    @property
    def kept(self) -> bool:
        return self.value < 10

    def label(self, *, cohort_known: bool) -> str:
        if self is Status.REMOVED_NOT_ON_LIST:
            return "opted_out" if cohort_known else "not_on_cleaned_list"
        return _LABELS[self]


_LABELS = {
    Status.KEPT: "on_cleaned_list",
    Status.KEPT_UNDER_REASON: "released_under_reason",
    Status.KEPT_WITH_PARENT: "linked_to_kept_row",
    Status.REMOVED_NOT_IN_COHORT: "not_in_cohort",
    Status.REMOVED_INVALID: "invalid_nhs_number",
    Status.REMOVED_UNTRACED: "untraced",
    Status.REMOVED_WITH_PARENT: "linked_to_removed_row",
    Status.REMOVED_ORPHAN: "orphan",
}

KEPT_CODES = tuple(int(s) for s in Status if s.kept)


@dataclass
class Lists:
    """What the rows are checked against (sorted unique int64 arrays)."""

    allow: np.ndarray
    cohort: np.ndarray | None = None


@dataclass
class TableCounts:
    """What an engine found in one table. Never holds a number or any other row value."""

    rows_in: int = 0
    rows_out: int = 0
    # status -> [rows, distinct people]
    by_status: dict[Status, list[int]] = field(default_factory=dict)
    # NHS-number reason label -> rows (missing, wrong length, ...), before any tracing
    invalid: dict[str, int] = field(default_factory=dict)
    problem_rows: list[int] = field(default_factory=list)  # 1-based data rows, first few
    traced: int = 0  # rows whose number came from the trace index (then classified)
    people_kept: int = 0
    people_removed: int = 0


ProgressFn = Callable[[str, str], None]


class Engine(ABC):
    """Classify every table first (nothing written), then write each table's kept rows."""

    name: str = "?"

    def __init__(self, *, memory_limit: str | None = None, temp_dir: Path | None = None) -> None:
        self.memory_limit = memory_limit
        self.temp_dir = temp_dir
        # how the engine ran (e.g. Spark: allow-list broadcast or joined); in the report and the
        # manifest. Never a value from a row or a list.
        self.details: dict[str, Any] = {}
        self._written_sha256: dict[Path, str] = {}

    @classmethod
    def needs_temp_dir(cls, plan: Any) -> bool:
        """Does classifying ``plan`` write anything to ``temp_dir``? When not, ``apply`` may
        classify before the release's staging folder (the home of ``temp_dir``) exists, while the
        metadata store is opened beside it. By default: yes."""
        return True

    @abstractmethod
    def classify(
        self, plan: ReleasePlan, lists: Lists, progress: ProgressFn | None = None
    ) -> dict[str, TableCounts]:
        """Count every table's rows by status, in plan order (parents first)."""

    @abstractmethod
    def write(self, table: str, out_path: Path) -> int:
        """Write the kept rows of ``table`` (after ``classify``); return the rows written."""

    def finish_counts(self) -> None:  # noqa: B027 - optional hook
        """Complete the distinct-people figures of the counts ``classify`` returned.

        An engine may count people on a thread while it writes (the Polars engine does): until
        this returns, ``TableCounts.by_status`` people, ``people_kept`` and ``people_removed``
        may still be zero. Rows per status, reasons and ``rows_out`` are final at once. Raises
        what that counting raised. By default the counts are complete already."""

    def outputs(self, table: str, out_path: Path, rows: int) -> list[tuple[Path, int]]:
        """The files ``write`` made for ``table`` and each one's rows, for the manifest.

        One file (``out_path``) by default. A distributed engine writes ``out_path`` as a folder
        of parts and lists every part (each gets its own SHA-256 and row count)."""
        return [(out_path, rows)]

    def written_sha256(self, part: Path) -> str | None:
        """The SHA-256 of an output file, taken as it was written (``HashingFile``); None: the
        caller hashes the file."""
        return self._written_sha256.get(part)

    def input_identity(self, source: Any) -> dict[str, Any] | None:
        """What identifies an input the driver cannot read as files (Spark: a URI, a catalog
        table), for the manifest, after checking it did not change since ``classify``. None: the
        input is local files, hashed by the caller."""
        return None

    def tables_written(self) -> list[dict[str, Any]]:
        """Catalog tables written instead of files (name, rows, content hash), for the manifest."""
        return []

    def staged_tables(self) -> Any:
        """Tables written under temporary names, handed to the caller to publish with the release
        folder (``publish()``), or drop (``discard()``); then ``close()``. None: no table."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- writing, shared


class HashingFile(io.RawIOBase):
    """An output file opened for a writer that hashes every byte on its way to the file, so the
    manifest's SHA-256 needs no second read (at 50 M rows that read took half a second after the
    last table was written).

    It also sends what it has written to the disk as it goes (``fdatasync`` on a thread every
    ``SYNC_EVERY`` bytes), so the release's ``fsync`` before it is renamed into place finds
    little left to do (it took 0.2 s for the 0.5 GB of a 50 M-row table, all at the end).

    Not seekable: a writer that streams (Polars' and PyArrow's Parquet and CSV writers) only
    appends. Should one seek anyway, the file is still written as asked and ``sha256()`` returns
    None, so the caller hashes the finished file instead."""

    SYNC_EVERY = 64 << 20

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = path.open("wb")
        self._hash = hashlib.sha256()
        self._written = 0
        self._unsynced = 0
        self._syncing: Any = None
        self._in_order = True

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = self._file.write(view)  # a buffered file writes everything or raises
        if n != len(view):
            self._in_order = False
        self._hash.update(view)
        self._written += len(view)
        self._unsynced += len(view)
        if self._unsynced >= self.SYNC_EVERY and (self._syncing is None or self._syncing.done()):
            self._file.flush()
            self._syncing = _syncer().submit(os.fdatasync, self._file.fileno())
            self._unsynced = 0
        return len(view)

    def tell(self) -> int:
        return self._written if self._in_order else self._file.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._in_order = False  # the bytes may no longer be in the order they were hashed
        return self._file.seek(offset, whence)

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        if not self.closed:
            try:
                if self._syncing is not None:  # its error, if any, the release's fsync reports
                    self._syncing.exception()
                self._file.close()
            finally:
                super().close()

    def sha256(self) -> str | None:
        """The file's SHA-256 once closed; None when the writer did not simply append."""
        if not self.closed or not self._in_order:
            return None
        return self._hash.hexdigest()


_SYNCER: Any = None


def _syncer() -> Any:
    """The one thread that sends written output to the disk behind the writers."""
    global _SYNCER
    if _SYNCER is None:
        from concurrent.futures import ThreadPoolExecutor

        _SYNCER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-sync")
    return _SYNCER


_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def output_error(exc: BaseException, path: Path) -> OptoutError:
    """A write failure as an OutputError (disk full, size limit, permissions)."""
    text = str(exc)
    err = getattr(exc, "errno", None)
    if err in _FULL or "No space left" in text or "File too large" in text or "quota" in text.lower():
        return OutputError(
            f"the disk is full (or a file size limit was reached) while writing {path.name}",
            hint="free some space or choose another --out folder; nothing was left half-written",
        )
    if err in (errno.EACCES, errno.EPERM, errno.EROFS) or "Permission denied" in text or "Read-only" in text:
        return OutputError(
            f"not allowed to write {path.name}",
            hint="choose an --out folder your account may write to",
        )
    return OutputError(
        f"could not write {path.name} ({exc.__class__.__name__})",
        hint="check the --out folder is writable and has free space",
    )


def reencode(raw: Path, out_path: Path, encoding: str) -> None:
    """An engine wrote UTF-8 to ``raw``: give ``out_path`` its source encoding (Latin-1, or UTF-8
    with BOM), then remove ``raw``."""
    try:
        with raw.open("rb") as fin, out_path.open("wb") as fout:
            if encoding == "utf-8-sig":
                fout.write(codecs.BOM_UTF8)
                shutil.copyfileobj(fin, fout, 1 << 20)
            else:
                dec = codecs.getincrementaldecoder("utf-8")()
                for block in iter(lambda: fin.read(1 << 20), b""):
                    fout.write(dec.decode(block).encode(encoding))
                fout.write(dec.decode(b"", final=True).encode(encoding))
        os.unlink(raw)
    except OSError as exc:
        raise output_error(exc, out_path) from None
    except UnicodeEncodeError:  # pragma: no cover - the values came from a file in that encoding
        raise OutputError(
            f"{out_path.name} could not be written back as {encoding}",
            hint="run again with another --engine and report it",
        ) from None

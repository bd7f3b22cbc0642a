"""The Polars engine: streams each table twice, once for its key columns and once to copy it.

**Classify** reads only the columns the rules need (the NHS number, the trace key, the link keys),
in chunks, through Polars' streaming reader. A number is looked up in the allow-list as it is
read (one hash set, built once per table); a row whose number is on the list needs nothing else
(only valid numbers are on it). Only the few rows that are not (opted out, invalid, odd
spellings) go through the full NHS-number rules (``optout.nhs_number.parse_array``, the same
code the reference engine's ``parse`` is tested against) and get a reason. One query returns
per-row columns (the verdict as one bit, the row's category, the person or parent row behind it
per status, the pending rows' own columns) that NumPy takes slice by slice: rows per status
are counted from them, and people exactly, by the prefix of their number (``_PeopleSets``), on a
thread of their own beside the next pass and the writes (``_Later``; ``finish_counts``).
Long Parquet tables are classified in slices of rows.

**Write** is then one streaming copy, ``scan -> filter(kept) -> sink``, which keeps the source's
row order, its Parquet schema and codec (checked on a probe; a type Polars would change is written
through PyArrow instead), or its CSV dialect: delimiter, quote, line ends, BOM and encoding (a
Latin-1 file goes through a UTF-8 copy in the private spill folder).

Links (001 §8.1): a parent's keys are summarised for its children. When the keys are integers
that rise row by row (a surrogate key), or text keys that are all such integers written as
``str(int)`` writes them (every CSV's ``id`` column), the summary is tiny: the first and last key,
the keys of the removed rows, and, for a leaf child's people counts, a second read of the
parent's NHS column beside a bit per status per parent row; otherwise one entry per distinct key
in memory.

CSV: Polars pads a row with too few fields with nulls instead of refusing it, so when the last
column holds any null the file is checked row by row with DuckDB's strict reader (and every
reading error is reported as DuckDB reports it, row number included, never a value).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

# Polars' allocator (jemalloc) is left as it comes. Telling it to give freed pages back at once
# (dirty_decay_ms:0) saved ~0.05 GB of peak memory at 50 M rows but made every write fault in
# fresh pages: the 50 M-row copy took 9.3 s instead of 6.5 s.
import polars as pl
import pyarrow as pa

from optout import atomic
from optout.dat import sorted_unique
from optout.errors import InputError, Location, OptoutError
from optout.nhs_number import Reason, parse_array
from optout.release.engines.base import (
    PROBLEM_ROWS_SHOWN,
    Engine,
    HashingFile,
    Lists,
    ProgressFn,
    Status,
    TableCounts,
    output_error,
    reencode,
)
from optout.release.plan import Link, PlannedTable, ReleasePlan
from optout.tables import TableSource

__all__ = ["PolarsEngine"]

# Polars' Parquet reader reads ahead many row groups (a large file's groups are often 1 M rows).
# Two are enough to keep 2 cores busy: the 50 M-row copy peaks at 0.78 GB instead of 0.92 GB,
# in the same time (and 10 M rows as fast). Read when a scan starts, so setting it here is in
# time; a value in the environment is kept.
PREFETCH_ENV = "POLARS_ROW_GROUP_PREFETCH_SIZE"
os.environ.setdefault(PREFETCH_ENV, "2")

_LOW = 1_000_000_000  # the smallest 10-digit number
_HIGH = 10_000_000_000
_INT_TYPES = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32)
_CODECS = {
    "SNAPPY": "snappy",
    "GZIP": "gzip",
    "ZSTD": "zstd",
    "BROTLI": "brotli",
    "LZ4": "lz4",
    "LZ4_RAW": "lz4",
    "UNCOMPRESSED": "uncompressed",
}
_NONE = -1  # "no person" in int64 person arrays (NHS numbers are never negative)


# --------------------------------------------------------------------------- helpers


def _is_int(dtype: Any) -> bool:
    return any(dtype == t for t in _INT_TYPES)


def _sorted_isin(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``x in sorted_values`` elementwise (for the small arrays the slow path looks up)."""
    if sorted_values.size == 0 or x.size == 0:
        return np.zeros(x.shape, dtype=bool)
    pos = np.searchsorted(sorted_values, x)
    pos[pos == sorted_values.size] = 0
    return np.asarray(sorted_values[pos] == x)


def _series(values: np.ndarray, dtype: Any) -> pl.Series:
    """A Series of a NumPy integer array, zero-copy through Arrow's C data interface. Polars' own
    ways in load a module on first use: from NumPy ``numpy.ma`` (0.02 s), from a PyArrow array
    ``pyarrow.compute`` (0.03 s), each once a run."""
    x = np.ascontiguousarray(values)
    arrow = pa.Array.from_buffers(pa.from_numpy_dtype(x.dtype), x.size, [None, pa.py_buffer(x)])
    return pl.Series(_CArray(arrow)).cast(dtype)


class _CArray:
    """An Arrow array seen only through the C data interface (``__arrow_c_array__``)."""

    def __init__(self, array: pa.Array) -> None:
        self._array = array

    def __arrow_c_array__(self, requested_schema: Any = None) -> Any:
        return self._array.__arrow_c_array__(requested_schema)


def _python_key(value: Any) -> str | None:
    """The reference engine's rule: link and trace keys are compared as text; '' is no key."""
    if value is None:
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text or None


def _text_keys(s: pl.Series) -> pl.Series:
    """A key column as text, exactly as the reference engine spells each value ('' -> null)."""
    if s.dtype == pl.String:
        out = s
    elif _is_int(s.dtype) or s.dtype == pl.UInt64 or s.dtype == pl.Boolean:
        out = s.cast(pl.String)  # str(int) and "true"/"false", as the reference writes them
    else:  # any other type: the reference's own rule, once per distinct value
        uniq = s.drop_nulls().unique()
        texts = [_python_key(v) for v in uniq.to_arrow().to_pylist()]
        out = s.replace_strict(uniq, pl.Series(texts, dtype=pl.String), default=None, return_dtype=pl.String)
    return out.replace("", None)


def _canonical(text_key: pl.Expr) -> pl.Expr:
    """A text key as Int64 when it is an integer written as ``str(int)`` writes it (no sign but
    '-', no leading zeros or spaces), else null. Two such keys are equal as text exactly when they
    are equal as numbers."""
    # Polars casts text of the form [+-]?[0-9]+ (and nothing else: no spaces, no other digits)
    # to an integer; of those, str(int) writes no '+', and no leading zero unless the key is 0
    # (so neither '-0'). Cheaper than writing each number back (a test holds it to that).
    n = text_key.cast(pl.Int64, strict=False)
    odd = text_key.str.starts_with("+") | text_key.str.starts_with("-0") | text_key.str.starts_with("0")
    return pl.when(odd.not_() | (text_key == "0")).then(n)


def _give_back_memory() -> None:
    """Return the C heap's free pages to the system (glibc keeps them; Polars' own allocator
    cannot reuse them for the write that follows). A no-op elsewhere."""
    if _TRIM is not None:
        _TRIM(0)


def _malloc_trim() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim() if sys.platform.startswith("linux") else None


def _numbers(raw: pl.Series, chi: bool, cand: pl.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``parse_array`` of a column: (normalised numbers, 0 where invalid; reason codes).

    ``cand``: the fast candidate of each row (``PolarsEngine._candidate``). Text that is ten ASCII
    digits reading as at least 10**9 is checked as that integer: the text rules find the same, and
    the common case then needs neither the text rules' time nor their library (pyarrow.compute,
    0.03 s to load)."""
    if _is_int(raw.dtype) or raw.dtype == pl.UInt64:
        nulls = raw.is_null().to_numpy()
        vals, reasons = parse_array(raw.fill_null(0).to_numpy(), chi=chi)
        reasons[nulls] = Reason.MISSING
        return np.where(nulls, 0, vals), reasons
    if cand is not None and raw.dtype == pl.String and raw.len():
        fast = cand.is_not_null().to_numpy()
        if fast.all():
            return parse_array(cand.to_numpy(), chi=chi)
        if fast.any():
            vals = np.zeros(raw.len(), dtype=np.int64)
            reasons = np.zeros(raw.len(), dtype=np.uint8)
            vals[fast], reasons[fast] = parse_array(cand.filter(fast).to_numpy(), chi=chi)
            slow = ~fast
            vals[slow], reasons[slow] = parse_array(raw.filter(slow).to_arrow(), chi=chi)
            return vals, reasons
    return parse_array(raw.to_arrow(), chi=chi)


def _distinct(parts: list[pl.Series]) -> int:
    if not parts:
        return 0
    return int(pl.concat(parts).n_unique()) if len(parts) > 1 else int(parts[0].n_unique())


_PENDING = 255  # the category of a row whose number is not on the list as read


class _PeopleSets:
    """Exact distinct people per status, without a hash set of people.

    Every person is a valid number, and a valid number's last digit is its check digit, so
    ``number // 10`` names it: a person is a prefix, held as its offset from the allow-list's
    least (``prefix``; the people the pass keeps by number are on the list, so in its span).

    Each status holds its people as one sorted array of offsets without repeats: an addition
    (a column of rows, each person several times) is sorted and made unique, then merged in (a
    sort of two sorted runs, about 0.02 s for 2 M people). Sorting costs half of what storing
    every row at random into a map over the span does (a map of 100 MB for the bench's numbers,
    a bit map of 39 MB for real ones, whose span is 309 M prefixes: three times as slow), and it
    takes memory by the people, not by the span. When a status holds more than ``HELD_MAX``
    people (the national scale, where merging again and again would cost more), it moves to a
    map with a byte per prefix of the span, or a bit when that would take more than
    ``BYTES_MAX`` bytes; at most ``MAPS`` maps at once. People outside the span (a few removed
    ones) are kept as numbers."""

    BYTES_MAX = 1 << 27
    MAPS = 2
    HELD_MAX = 1 << 24  # people held sorted per status (64 MB) before a map takes over

    def __init__(self, allow: np.ndarray, later: Callable[[Callable[[], None]], None] | None = None) -> None:
        self.lo, self.hi = (int(allow[0]), int(allow[-1])) if allow.size else (0, -1)
        self._later = later  # additions handed to the counting thread (``_Later``), else done now
        self.base = self.lo // 10
        self.span = max(self.hi // 10 - self.base + 1, 0)
        self._held: dict[int, np.ndarray] = {}  # sorted offsets without repeats (uint32)
        self._maps: dict[int, np.ndarray] = {}
        self._out: dict[int, list[np.ndarray]] = {}  # numbers outside the span

    @property
    def nobody(self) -> int:
        """The offset that stands for no person (one past the span): not counted."""
        return self.span

    def prefix(self, person: pl.Expr) -> pl.Expr:
        """A person's prefix offset (UInt32), null when there is none or it is outside the span."""
        return pl.when(person.is_between(self.lo, self.hi)).then(self.offset(person))

    def offset(self, person: pl.Expr) -> pl.Expr:
        """``prefix`` for a person known to be in the span (on the allow-list): no range test."""
        # not strict: Polars may compute it for every row, outside a ``when``
        return (person // 10 - self.base).cast(pl.UInt32, strict=False)

    @property
    def _bits(self) -> bool:
        return self.span > self.BYTES_MAX

    def add_prefixes(self, code: int, q: np.ndarray) -> None:
        """Add people by prefix offset (each in ``[0, span)``, or ``nobody``; repeats allowed).
        With a counting thread, the addition is made there, in the order given (``count`` only
        after it has run)."""
        if not q.size:
            return
        if self._later is not None:
            self._later(partial(self._add_prefixes, code, q))
        else:
            self._add_prefixes(code, q)

    def _add_prefixes(self, code: int, q: np.ndarray) -> None:
        u = sorted_unique(q, np.uint32)
        m = self._maps.get(code)
        if m is None:
            held = self._held.get(code)
            if held is not None:
                u = sorted_unique(np.concatenate((held, u)), np.uint32)
            if u.size <= self.HELD_MAX or len(self._maps) >= self.MAPS:
                self._held[code] = u
                return
            self._held.pop(code, None)
            places = self.span + 1  # and a place for nobody
            m = self._maps[code] = np.zeros((places + 7) // 8 if self._bits else places, dtype=np.uint8)
        if self._bits:
            # the bits of one byte ORed together (its prefixes are neighbours in ``u``), then a
            # store per byte: each byte once, so no store overwrites another's bit
            idx = u >> 3
            bit = np.left_shift(np.uint8(1), (u & 7).astype(np.uint8))
            if idx.size > 1:
                starts = np.flatnonzero(np.concatenate(([True], idx[1:] != idx[:-1])))
                idx, bit = idx[starts], np.bitwise_or.reduceat(bit, starts)
            m[idx] |= bit
        else:
            m[u] = 1

    def add(self, code: int, persons: np.ndarray) -> None:
        """Add people by number (valid numbers; repeats allowed)."""
        persons = np.asarray(persons, dtype=np.int64)
        inside = (persons >= self.lo) & (persons <= self.hi)
        self.add_prefixes(code, persons[inside] // 10 - self.base)
        if not inside.all():
            self._out.setdefault(code, []).append(persons[~inside])

    def count(self, code: int) -> int:
        n = _distinct([pl.Series(a, dtype=pl.Int64) for a in self._out.get(code, [])])
        held = self._held.get(code)
        if held is not None:  # sorted: nobody, the greatest offset, comes last
            return n + held.size - int(held.size > 0 and int(held[-1]) == self.nobody)
        m = self._maps.get(code)
        if m is None:
            return n
        if self._bits:
            nobody = int((m[self.nobody >> 3] >> (self.nobody & 7)) & 1)
            return n - nobody + int(np.bitwise_count(m).sum())
        return n - int(m[self.nobody] != 0) + int(np.count_nonzero(m))


class _Later:
    """The people counts' NumPy work (sorting people, marking parent rows, counting), run on one
    thread in the order it was handed over, beside Polars' next pass or the writes.

    That work uses one core: done in line it left the other idle after each table's pass (0.1 s
    per 10 M rows). Only the counts of people wait for it (``wait``, before the report); the
    verdicts, the rows per status and the children's key summaries do not. At most ``AHEAD``
    pieces wait in the queue (each holds a column of a slice): handing over another then waits
    for the oldest, so memory stays bounded as before. A piece's error is raised where it is
    waited for."""

    AHEAD = 3

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._queue: deque[Future[None]] = deque()
        self._lock = threading.Lock()

    def __call__(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-people")
            self._queue.append(self._pool.submit(work))
            while len(self._queue) > self.AHEAD:
                self._queue.popleft().result()

    def wait(self) -> None:
        """Until everything handed over has run; raises the first error."""
        with self._lock:
            try:
                while self._queue:
                    self._queue[0].result()
                    self._queue.popleft()
            except BaseException:
                for f in self._queue:
                    f.cancel()
                self._queue.clear()
                raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.wait()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _flag_rows(flags: np.ndarray, rows: np.ndarray, bit: np.uint8) -> None:
    flags[rows] |= bit


def _fill_people(counts: TableCounts, people: Callable[[], dict[int, int]]) -> None:
    """Distinct people per status into ``counts`` (its rows per status are already there)."""
    found = people()
    for st, pair in counts.by_status.items():
        pair[1] = int(found.get(int(st), 0))
        if st.kept:
            counts.people_kept += pair[1]
        else:
            counts.people_removed += pair[1]


def _counts_of(sets: _PeopleSets, codes: list[int]) -> dict[int, int]:
    return {code: sets.count(code) for code in codes}


def _counted(sets: Callable[[], _PeopleSets], codes: list[int]) -> dict[int, int]:
    return _counts_of(sets(), codes)


def _people_behind(
    flags: np.ndarray,
    bits: dict[int, np.uint8],
    orow: np.ndarray,
    opers: np.ndarray,
    allow: np.ndarray,
    held: np.ndarray | None,
) -> _PeopleSets:
    """The people behind a parent's flagged rows (``PolarsEngine._people_of_rows``) that need no
    read: those of its rows settled apart, and (``held``) those of the others."""
    sets = _PeopleSets(allow)
    for code, bit in bits.items():
        hit = (flags[orow] & bit) != 0 if orow.size else np.zeros(0, dtype=bool)
        sets.add(code, opers[hit & (opers >= 0)])
    flags[orow] = 0  # their person is the settled one, not the number as read
    if held is not None:
        for code, bit in bits.items():
            sets.add_prefixes(code, held[(flags & bit) != 0])
    return sets


# --------------------------------------------------------------------------- link key summaries

SLICE_ROWS = 10_000_000  # rows classified in one pass (Parquet): ~0.4 GB of key columns at most
# A parent table of up to this many rows keeps the person of each row (4 bytes a row: 128 MB at
# most) for its children's people counts; a longer one is read again for them (its number column
# once more: 0.25 s for 10 M Parquet rows, 0.7 s for 10 M CSV rows).
PEOPLE_ROWS_MAX = 1 << 25
_KEPT_CODES = [int(s) for s in Status if s.kept]


@dataclass
class _DenseKeys:
    """A parent whose integer keys are its row numbers plus a constant (a surrogate key with no
    gaps): row ``r`` holds key ``first + r``. No per-key table: the keys of the rows that are not
    kept, and the people behind a key from a second read of the parent (``_people_of_rows``)."""

    first: int
    rows: int
    bad: np.ndarray  # keys of the rows that are not kept (repeats allowed)

    def exprs(self, key: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr | None]:
        """(has a parent row, a parent row is not kept, the parent's person) for a child key."""
        present = key.is_between(self.first, self.first + self.rows - 1).fill_null(False)
        bad = key.is_in(_series(self.bad, pl.Int64).implode()).fill_null(False)
        return present, bad, None


@dataclass
class _KeyTable:
    """Any other keys: one row per distinct key (all its rows kept and one person; the person)."""

    table: pl.DataFrame  # k, ok, person (null: none)

    def joined(self, scan: pl.LazyFrame, key: pl.Expr) -> pl.LazyFrame:
        """``scan`` with each row's key looked up (a left join in row order; one hash table shared
        by every query of the pass, where ``replace_strict`` built one per expression and query:
        some 2-3 s each on 10 M text keys). Read with :meth:`exprs`."""
        summary = self.table.lazy().select(
            pl.col("k").alias("__kt_k"), pl.col("ok").alias("__kt_ok"), pl.col("person").alias("__kt_p")
        )
        return scan.with_columns(key.alias("__kt_k")).join(
            summary, on="__kt_k", how="left", maintain_order="left"
        )

    def exprs(self, key: pl.Expr) -> tuple[pl.Expr, pl.Expr, pl.Expr | None]:
        """(present, not kept, person) of the rows of a frame made by :meth:`joined`."""
        ok = pl.col("__kt_ok")
        return ok.is_not_null(), ok.not_().fill_null(False), pl.col("__kt_p")


def _key_table(parts: list[pl.DataFrame], kind: str) -> _KeyTable:
    """Merge per-key partial summaries (k, kept, pmin, pmax) into a key table."""
    key_type = pl.Int64 if kind == "int" else pl.String
    empty = pl.DataFrame(schema={"k": key_type, "kept": pl.Boolean, "pmin": pl.Int64, "pmax": pl.Int64})
    merged = (
        pl.concat([p.cast({"k": key_type, "pmin": pl.Int64, "pmax": pl.Int64}) for p in parts] or [empty])
        .group_by("k")
        .agg(pl.col("kept").all(), pl.col("pmin").min(), pl.col("pmax").max())
    )
    # 001 §8.1: a key goes with its parent rows only when all of them are kept and one person's
    table = merged.select(
        "k",
        (pl.col("kept") & (pl.col("pmin").is_null() | (pl.col("pmin") == pl.col("pmax")))).alias("ok"),
        pl.col("pmin").alias("person"),
    )
    return _KeyTable(table=table)


# --------------------------------------------------------------------------- the engine


@dataclass
class _Table:
    """What classification leaves for writing and for the children."""

    keep: pl.Series  # Boolean per row (bit-packed)
    rows_out: int
    cand: pl.Expr | None = None  # the fast candidate: the person of every row not overridden
    override_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    override_persons: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    # the person behind each row kept by its number as read (``_PeopleSets`` offset; ``nobody``
    # elsewhere), held for a parent whose children count people by parent row (see PEOPLE_ROWS_MAX)
    people_rows: np.ndarray | None = None


class PolarsEngine(Engine):
    name = "polars"

    def __init__(self, *, memory_limit: str | None = None, temp_dir: Path | None = None) -> None:
        super().__init__(memory_limit=memory_limit, temp_dir=temp_dir)
        self._plan: ReleasePlan | None = None
        self._tables: dict[str, _Table] = {}
        self._sources: dict[str, TableSource] = {}
        self._keys: dict[tuple[str, str], _DenseKeys | _KeyTable] = {}
        self._utf8: dict[Path, Path] = {}
        self._exact_parquet: dict[Path, bool] = {}
        self._probes: dict[Path, Future[bool]] = {}
        self._options: dict[Path, dict[str, Any]] = {}
        self._allow = pl.Series("allow", [], dtype=pl.Int64)
        self._allow_np = np.empty(0, dtype=np.int64)
        self._cohort_np: np.ndarray | None = None
        self._trace: pl.DataFrame | None = None
        self._later = _Later()

    @classmethod
    def needs_temp_dir(cls, plan: Any) -> bool:
        """Only a Latin-1 CSV needs one (its UTF-8 copy): a table or the trace index."""
        sources = [t.source for t in plan.tables]
        if plan.trace is not None:
            sources.append(plan.trace.source)
        return any(src.encoding == "latin-1" for src in sources)

    def finish_counts(self) -> None:
        self._later.wait()

    def close(self) -> None:
        self._later.close()
        for p in self._utf8.values():
            with contextlib.suppress(OSError):
                p.unlink()
        self._utf8.clear()

    # ------------------------------------------------------------------ reading

    def _utf8_path(self, src: TableSource) -> Path:
        """A Latin-1 CSV as UTF-8 (Polars reads UTF-8 only), in the private spill folder."""
        if src.encoding != "latin-1":
            return src.path
        if src.path not in self._utf8:
            # never beside the source: without a spill folder, this process's private one
            folder = self.temp_dir or atomic.spill_dir()
            out = Path(folder) / f".utf8-{len(self._utf8)}-{src.path.name}"
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as fout, src.path.open("rb") as fin:
                for block in iter(lambda: fin.read(1 << 20), b""):
                    fout.write(block.decode("latin-1").encode("utf-8"))
            self._utf8[src.path] = out
        return self._utf8[src.path]

    def _scan(self, src: TableSource, *, row_index: str | None = None) -> pl.LazyFrame:
        if src.format == "parquet":
            return pl.scan_parquet(src.path, row_index_name=row_index)
        return pl.scan_csv(
            self._utf8_path(src),
            has_header=True,
            separator=src.delimiter or ",",
            quote_char=src.quote or '"',
            infer_schema=False,
            new_columns=list(src.columns),
            encoding="utf8",
            row_index_name=row_index,
            raise_if_empty=False,
        )

    def _schema(self, src: TableSource) -> dict[str, Any]:
        return dict(self._scan(src).collect_schema())

    def _duckdb_error(self, src: TableSource) -> InputError | None:
        """DuckDB's strict reader over the file: its error, translated (row number, no value)."""
        import duckdb

        from optout.tables import connect, translate_duckdb_error

        con = connect(memory_limit="256MB", temp_dir=self.temp_dir)
        try:
            con.execute(f"SELECT count(*) FROM {src.scan_sql()}").fetchone()
        except duckdb.Error as exc:
            return translate_duckdb_error(exc, src.path)
        finally:
            con.close()
        return None

    def _reading_error(self, src: TableSource, exc: BaseException) -> InputError:
        """A reading error as DuckDB's strict reader reports it, or a plain one."""
        return self._duckdb_error(src) or InputError(
            f"{src.path.name} could not be read ({exc.__class__.__name__})",
            where=Location(file=src.path),
            hint="check the file's delimiter, quoting and encoding (--delimiter, --quote, --encoding)",
        )

    # ------------------------------------------------------------------ classification

    def classify(
        self, plan: ReleasePlan, lists: Lists, progress: ProgressFn | None = None
    ) -> dict[str, TableCounts]:
        self._plan = plan
        self._start_probes(plan)
        self._allow_np = np.asarray(lists.allow, dtype=np.int64)
        self._allow = _series(self._allow_np, pl.Int64).alias("allow")
        self._cohort_np = None if lists.cohort is None else np.asarray(lists.cohort, dtype=np.int64)
        if plan.trace is not None:
            self._trace = self._trace_map(plan)
        out: dict[str, TableCounts] = {}
        for t in plan.tables:
            if progress:
                progress(t.name, "checking")
            self._sources[t.name] = t.source
            out[t.name] = self._classify_table(t, plan)
            _give_back_memory()
        # only the verdicts are needed to write: let the rest go before the writes need memory
        for info in self._tables.values():
            info.override_rows = info.override_persons = np.empty(0, dtype=np.int64)
            info.cand = None
            info.people_rows = None
        self._keys.clear()
        self._allow = pl.Series("allow", [], dtype=pl.Int64)
        self._allow_np = np.empty(0, dtype=np.int64)
        self._trace = None
        _give_back_memory()
        return out

    def _collect(self, queries: list[pl.LazyFrame], src: TableSource) -> list[pl.DataFrame]:
        """Run the queries together: one streaming pass over the table (its scan is shared)."""
        try:
            return pl.collect_all(queries, engine="streaming")
        except (pl.exceptions.PolarsError, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, pl.exceptions.PolarsError):
                raise InputError(
                    f"cannot read {src.path.name}: {exc.strerror or exc.__class__.__name__}",
                    where=Location(file=src.path),
                    hint="check the path and that your account may read the file",
                ) from None
            raise self._reading_error(src, exc) from None

    def _collect_sliced(
        self,
        queries_of: Any,
        based: Any,
        scan: pl.LazyFrame,
        src: TableSource,
        take: Any = None,
    ) -> dict[str, pl.DataFrame]:
        """``queries_of(based(scan))`` collected in slices of ``SLICE_ROWS`` rows (Parquet; a CSV
        file is read once: a slice of it would be parsed from the top), results put together.

        ``take(name, frame, offset)``: offered each slice's result first (``offset``: the slice's
        first row); True when it used it up (so a large per-row result need not be held whole)."""
        rows = src.num_rows if src.format == "parquet" else None
        if rows is None or rows <= SLICE_ROWS:
            qs = queries_of(based(scan))
            got = dict(zip(qs, self._collect(list(qs.values()), src), strict=True))
            return {name: df for name, df in got.items() if take is None or not take(name, df, 0)}
        parts: dict[str, list[pl.DataFrame]] = {}

        def taken(got: dict[str, pl.DataFrame], offset: int) -> None:
            for name, df in got.items():
                if take is None or not take(name, df, offset):
                    parts.setdefault(name, []).append(df)

        # each slice's results are taken on a thread while Polars reads the next slice (NumPy's
        # work beside Polars'); at most two slices' results are held
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-take") as taker:
            taking: Future[None] | None = None
            for offset in range(0, rows, SLICE_ROWS):
                qs = queries_of(based(scan.slice(offset, SLICE_ROWS)))
                got = dict(zip(qs, self._collect(list(qs.values()), src), strict=True))
                if taking is not None:
                    taking.result()
                taking = taker.submit(taken, got, offset)
                del got
            if taking is not None:
                taking.result()
        return {name: pl.concat(frames) for name, frames in parts.items()}

    def _trace_map(self, plan: ReleasePlan) -> pl.DataFrame:
        """Local id -> number; an id with an invalid entry or two numbers traces to nobody."""
        assert plan.trace is not None
        tr = plan.trace
        (df,) = self._collect([self._scan(tr.source).select(tr.key_column, tr.nhs_column)], tr.source)
        vals, reasons = _numbers(df[tr.nhs_column], False)
        keyed = pl.DataFrame(
            {
                "k": _text_keys(df[tr.key_column]),
                "n": pl.Series(np.where(reasons == 0, vals, _NONE), dtype=pl.Int64),
            }
        )
        return (
            keyed.filter(pl.col("k").is_not_null())
            .group_by("k")
            .agg(
                pl.when((pl.col("n").min() >= 0) & (pl.col("n").n_unique() == 1))
                .then(pl.col("n").min())
                .otherwise(_NONE)
                .alias("n")
            )
        )

    def _candidate(self, t: PlannedTable, dtype: Any) -> pl.Expr | None:
        """The number as Int64 when it can only be valid if it is on the allow-list, else null.

        Integers of the right size (no checksum: only valid numbers are on the list); text of
        exactly ten ASCII digits (ten bytes that parse to at least 10**9 can be nothing else).
        Anything else takes the full rules."""
        assert t.nhs_column is not None
        c = pl.col(t.nhs_column)
        low = 100_000_000 if t.chi else _LOW
        if _is_int(dtype) or dtype == pl.UInt64:
            return pl.when(c.is_between(low, _HIGH - 1)).then(c.cast(pl.Int64, strict=False))
        if dtype == pl.String:
            n = c.cast(pl.Int64, strict=False)
            return pl.when((c.str.len_bytes() == 10) & (n >= _LOW)).then(n)
        return None

    def _key_kind(self, plan: ReleasePlan, link: Link) -> str:
        child = self._schema(plan.table(link.child).source)[link.child_column]
        parent = self._schema(plan.table(link.parent).source)[link.parent_column]
        if _is_int(child) and _is_int(parent):
            return "int"
        # text on both sides (every CSV): compared as text, but summarised as integers when every
        # parent key is an integer written the one way Python writes it (``_canonical``)
        return "digits" if child == pl.String and parent == pl.String else "text"

    def _key_expr(self, src: TableSource, column: str, kind: str) -> pl.Expr:
        """A link key as the reference engine compares it: integers as numbers, else as text."""
        c = pl.col(column)
        if kind == "int":
            return c.cast(pl.Int64)
        dtype = self._schema(src)[column]
        if dtype == pl.String:
            return pl.when(c != "").then(c)
        if _is_int(dtype) or dtype == pl.UInt64 or dtype == pl.Boolean:
            return c.cast(pl.String)
        return c.map_batches(_text_keys, return_dtype=pl.String)

    def _by_number(self, n: np.ndarray, lookup: np.ndarray | None = None) -> np.ndarray:
        """Status of valid numbers: not in the cohort, on the list (kept) or not (opted out).

        ``lookup``: which ones may be on the list (the others are known not to be)."""
        on = np.zeros(n.shape, dtype=bool)
        if lookup is None:
            on = _sorted_isin(self._allow_np, n)
        elif lookup.any():
            on[lookup] = _sorted_isin(self._allow_np, n[lookup])
        st = np.where(on, Status.KEPT, Status.REMOVED_NOT_ON_LIST)
        if self._cohort_np is not None:
            st = np.where(_sorted_isin(self._cohort_np, n), st, Status.REMOVED_NOT_IN_COHORT)
        return st.astype(np.uint8)

    def _dense_ok(self, plan: ReleasePlan, t: PlannedTable, link: Link, kind: str) -> bool:
        """May ``t`` summarise this child link by row numbers (``_DenseKeys``)? Integer keys, a
        number of its own to give the children's people, and a child that needs no person per
        row for children of its own."""
        child = plan.table(link.child)
        return (
            kind in ("int", "digits")
            and t.nhs_column is not None
            and (child.nhs_column is not None or not child.children)
        )

    def _classify_table(self, t: PlannedTable, plan: ReleasePlan) -> TableCounts:
        src = t.source
        schema = self._schema(src)
        nhs = t.nhs_column
        lf = self._scan(src, row_index="__rn")
        cand = self._candidate(t, schema[nhs]) if nhs is not None else None
        # Boolean columns, not a status column built with when/then (a third cheaper in Polars):
        # __on: the number as read is on the list (the row is kept by its own number; the others
        # are "pending", settled after the pass); __present/__bad: its parent key exists / is not
        # kept. The statuses are put together from them in NumPy.
        on: pl.Expr = pl.lit(True)
        person: pl.Expr | None = None
        if nhs is not None:
            on = cand.is_in(self._allow.implode()).fill_null(False) if cand is not None else pl.lit(False)
            person = cand
        parent: _DenseKeys | _KeyTable | None = None
        key: pl.Expr | None = None
        cols = {"__on": on}
        if t.link is not None:
            parent = self._keys[(t.link.parent, t.link.parent_column)]
            kind = self._key_kind(plan, t.link)
            key = self._key_expr(src, t.link.child_column, kind)
            if kind == "digits" and isinstance(parent, _DenseKeys):
                # the parent's keys are all canonical integers: a child key equals one as text
                # exactly when it is canonical too and equal as a number (else: no parent)
                key = _canonical(key)
            present, bad, parent_person = parent.exprs(key)
            cols |= {"__present": present, "__bad": bad}
            if nhs is None:
                person = parent_person

        def based(scan: pl.LazyFrame) -> pl.LazyFrame:
            if isinstance(parent, _KeyTable):
                assert key is not None
                scan = parent.joined(scan, key)
            return scan.with_columns(**cols, __p=person if person is not None else pl.lit(None, pl.Int64))

        base = based(lf)
        c_on, c_present, c_bad = pl.col("__on"), pl.col("__present"), pl.col("__bad")
        # the rows kept as they stand (by their own number, or by their parent) and the others
        if t.link is None:
            groups = {int(Status.KEPT): c_on}
        else:
            kept_code = Status.KEPT if nhs is not None else Status.KEPT_WITH_PARENT
            groups = {
                int(kept_code): c_on & c_present & c_bad.not_(),
                int(Status.REMOVED_WITH_PARENT): c_on & c_present & c_bad,
            }
            if nhs is not None:  # without a number of its own, an orphan has nobody behind it
                groups[int(Status.REMOVED_ORPHAN)] = c_on & c_present.not_()
        # rows per status as they stand (the pending rows are added once settled), and the verdict
        # per row, as a Boolean column (a bit per row): no per-row status array is built
        if t.link is None:
            tally = {int(Status.KEPT if nhs is not None else Status.KEPT_WITH_PARENT): c_on}
            keep_now = c_on
        else:
            tally = {**groups, int(Status.REMOVED_ORPHAN): c_on & c_present.not_()}
            keep_now = groups[int(kept_code)]
        child_keys = {}
        for ch in t.children:
            kind = self._key_kind(plan, ch)
            child_keys[ch.parent_column] = (kind, self._key_expr(src, ch.parent_column, kind))
        dense_parent = isinstance(parent, _DenseKeys) and nhs is None
        not_kept = (c_present.not_() | c_bad) if t.link is not None else pl.lit(False)
        last = src.columns[-1] if src.format == "csv" else None

        def key_summary(b: pl.LazyFrame, k: pl.Expr) -> pl.LazyFrame:
            """Per key: all its rows kept as they stand, and the least and greatest person (the
            pending rows are added once settled)."""
            return (
                b.filter(c_on & k.is_not_null())
                .group_by(k.alias("k"))
                .agg(
                    not_kept.not_().all().alias("kept"),
                    pl.col("__p").min().alias("pmin"),
                    pl.col("__p").max().alias("pmax"),
                )
            )

        # One query gives everything per row the counts need, in columns the pass hands over
        # slice by slice (a query per figure would each redo the look-ups: Polars shares a scan
        # between queries by caching it, which cost more than the work): the verdict, the row's
        # category (which tally it adds to; _PENDING when its number is not on the list as
        # read), the person behind it as a prefix offset (``_PeopleSets``) or, for a dense
        # parent, the parent row it refers to, and the few pending rows' own columns.
        sets = _PeopleSets(self._allow_np, self._later)
        cats = list(tally)
        in_groups = None
        for where in groups.values():
            in_groups = where if in_groups is None else in_groups | where
        assert in_groups is not None
        category: pl.Expr = pl.lit(_PENDING, pl.UInt8)
        for i, where in reversed(list(enumerate(tally.values()))):
            category = pl.when(where).then(pl.lit(i, pl.UInt8)).otherwise(category)
        if dense_parent:
            assert key is not None and isinstance(parent, _DenseKeys)
            ref = (key - parent.first).cast(pl.UInt32, strict=False)  # used only where present
        else:
            # a row in a group is kept by its own number as read, so it is on the list, in the
            # span; a child without a number takes its parent's, which may be outside it
            ref = sets.offset(pl.col("__p")) if nhs is not None else sets.prefix(pl.col("__p"))
        raw: list[str] = []
        if nhs is not None:  # the columns the pending rows are settled from (001 §8.2)
            for c in [nhs, t.trace_key, t.link.child_column if t.link else None, *child_keys]:
                if c is not None and c not in raw:
                    raw.append(c)
        dense_checks = {}
        for c, (kind, k) in child_keys.items():
            if self._dense_ok(plan, t, next(ch for ch in t.children if ch.parent_column == c), kind):
                dense_checks[c] = _canonical(k) if kind == "digits" else k

        # nobody: the place one past the parent's rows, or one past the people's span
        nobody = parent.rows if dense_parent and isinstance(parent, _DenseKeys) else sets.nobody

        def queries_of(b: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
            cols = [keep_now.alias("__keep")]
            for i, where in enumerate(groups.values()):  # a column per status, ``nobody`` elsewhere
                cols.append(pl.when(where).then(ref).fill_null(nobody).cast(pl.UInt32).alias(f"__ref{i}"))
                if nhs is None and not dense_parent:  # a parent's person outside the span
                    outside = where & pl.col("__p").is_not_null() & ref.is_null()
                    cols.append(pl.when(outside).then(pl.col("__p")).alias(f"__out{i}"))
            if t.link is not None:
                cols.append(category.alias("__cat"))
            cols += [pl.when(c_on.not_()).then(pl.col(c)).alias(f"__raw{i}") for i, c in enumerate(raw)]
            for i, ki in enumerate(dense_checks.values()):  # key - row number: one value when dense
                cols.append((ki - pl.col("__rn").cast(pl.Int64)).alias(f"__dense{i}"))
            if last is not None:
                cols.append(pl.col(last).is_null().alias("__short"))
            queries: dict[str, pl.LazyFrame] = {"main": b.select(cols)}
            for c, (_, k) in child_keys.items():
                if c not in dense_checks:
                    # one entry per key, in the same pass (slices are merged by _key_table)
                    queries[f"keys:{c}"] = key_summary(b, k)
                elif t.link is not None:  # the rows not kept as they stand (pending rows: after)
                    queries[f"bad:{c}"] = b.filter(c_on & not_kept).select(dense_checks[c].alias("k"))
            return queries

        # dense parent: the parent rows behind each status, a bit per status in a byte per parent
        # row, set slice by slice (the child's row references are not held)
        refs_bit: dict[int, np.uint8] = {}
        refs_flags: np.ndarray | None = None
        if dense_parent:
            assert isinstance(parent, _DenseKeys)
            refs_bit = {code: np.uint8(1 << i) for i, code in enumerate(groups)}  # at most 8
            refs_flags = np.zeros(parent.rows + 1, dtype=np.uint8)  # and a place for nobody
        by_code = np.zeros(256, dtype=np.int64)
        keeps: list[pl.Series] = []
        # a parent with a number column keeps each row's person for its children (in a group:
        # kept by its number, so on the list and in the span; the others are settled apart)
        people_rows: list[np.ndarray] | None = None
        if t.children and nhs is not None and (src.num_rows or 0) <= PEOPLE_ROWS_MAX:
            people_rows = []
        pending_rows: list[np.ndarray] = []
        pending_raw: list[pl.DataFrame] = []
        # per dense check: the least and greatest (key - row number) of each slice, and its nulls
        dense_span: dict[str, list[tuple[Any, Any, int]]] = {c: [] for c in dense_checks}
        short = 0
        seen = 0

        def take(name: str, df: pl.DataFrame, offset: int) -> bool:
            nonlocal short, seen, people_rows
            if name != "main":
                return False
            seen += df.height
            if seen > PEOPLE_ROWS_MAX:  # a CSV's rows are known only now
                people_rows = None
            keep = df["__keep"]
            keeps.append(keep)
            pending: pl.Series | None = None
            if t.link is None:
                kept = int(keep.sum())
                by_code[cats[0]] += kept
                if nhs is not None and kept < df.height:
                    pending = keep.not_()
            else:
                cat = df["__cat"]
                found = np.bincount(cat.to_numpy(), minlength=256)
                for i, code in enumerate(cats):
                    by_code[code] += int(found[i])
                if nhs is not None and found[_PENDING]:
                    pending = cat == _PENDING
            mine = None
            for i, code in enumerate(groups):
                refs = df[f"__ref{i}"].to_numpy()
                if refs_flags is not None:
                    self._later(partial(_flag_rows, refs_flags, refs, refs_bit[code]))
                else:
                    sets.add_prefixes(code, refs)
                if f"__out{i}" in df.columns:
                    outside = df[f"__out{i}"].drop_nulls()
                    if outside.len():
                        sets.add(code, outside.to_numpy())
                if people_rows is not None:  # a row is in one group at most: the others say nobody
                    mine = refs if mine is None else np.minimum(mine, refs)
            if people_rows is not None and mine is not None:
                people_rows.append(mine.astype(np.uint32, copy=False))
            if pending is not None:
                pending_rows.append(pending.arg_true().cast(pl.Int64).to_numpy() + offset)
                pending_raw.append(
                    df.filter(pending).select(pl.col(f"__raw{i}").alias(c) for i, c in enumerate(raw))
                )
            for i, c in enumerate(dense_checks):
                d = df[f"__dense{i}"]
                dense_span[c].append((d.min(), d.max(), d.null_count()))
            if "__short" in df.columns:
                short += int(df["__short"].sum())
            return True

        got = self._collect_sliced(queries_of, based, lf, src, take)
        rows_in = seen
        if rows_in == 0:
            raise InputError(
                f"{src.path.name} has no rows",
                where=Location(file=src.path),
                hint="a table with no rows usually means the export failed: export it again",
            )
        if short:
            # Polars fills a short row with nulls: DuckDB's strict reader decides
            err = self._duckdb_error(src)
            if err is not None:
                raise err
        keep_s = (pl.concat(keeps) if len(keeps) > 1 else keeps[0]).rename("__keep")
        counts = TableCounts(rows_in=rows_in)
        pend_rows = np.empty(0, dtype=np.int64)
        pend_persons = np.empty(0, dtype=np.int64)
        pend_status = np.empty(0, dtype=np.uint8)
        pend: pl.DataFrame | None = None
        if pending_rows:
            assert nhs is not None
            pend_rows = np.concatenate(pending_rows)
            pend_cols = [
                pl.col("__rn"),
                pl.col(nhs),
                (cand if cand is not None else pl.lit(None, pl.Int64)).alias("__cand"),
            ]
            if t.trace_key is not None:
                pend_cols.append(pl.col(t.trace_key).alias("__tk"))
            if t.link is not None:
                pend_cols += [c_present, c_bad]
            pend_cols += [k.alias(f"__ck_{c}") for c, (_, k) in child_keys.items()]
            rows_of_pend = pl.concat(pending_raw).with_columns(__rn=_series(pend_rows, pl.UInt32))
            pend = based(rows_of_pend.lazy()).select(pend_cols).collect()
            pend_status, pend_persons = self._settle(t, plan, pend, counts)
            settled = np.bincount(pend_status, minlength=256)
            by_code += settled
            kept_late = pend_rows[pend_status < 10]
            if kept_late.size:  # e.g. a number spelt with spaces, traced or released under a reason
                keep_s = keep_s.scatter(kept_late, True)
            if not dense_parent:
                for code in np.flatnonzero(settled):
                    ps = pend_persons[(pend_status == code) & (pend_persons >= 0)]
                    sets.add(int(code), ps)
        # rows per status now; their people on the counting thread, once its additions are made
        for code in np.flatnonzero(by_code):
            counts.by_status[Status(int(code))] = [int(by_code[code]), 0]
        counts.rows_out = int(sum(int(by_code[int(s_)]) for s_ in Status if s_.kept))
        people: Callable[[], dict[int, int]]
        if dense_parent:
            assert t.link is not None
            assert refs_flags is not None
            people = self._people_of_rows(t.link.parent, refs_flags[:-1], refs_bit)
            del refs_flags
        else:
            people = partial(_counts_of, sets, [int(code) for code in np.flatnonzero(by_code)])
        self._later(partial(_fill_people, counts, people))
        # the summaries the children are checked against
        for ch in t.children:
            c = ch.parent_column
            kind, k = child_keys[c]
            pend_keys = pend[f"__ck_{c}"] if pend is not None and pend.height else None
            spans = dense_span.get(c, [])
            ends = {v for lo, hi, _ in spans for v in (lo, hi)}
            if spans and not any(nulls for _, _, nulls in spans) and len(ends) == 1:
                bad_keys = [np.empty(0, dtype=np.int64)]
                if f"bad:{c}" in got:
                    bad_keys.append(got[f"bad:{c}"]["k"].cast(pl.Int64).to_numpy())
                if pend_keys is not None:
                    bad_keys.append(pend_keys.cast(pl.Int64).to_numpy()[pend_status >= 10])
                self._keys[(t.name, c)] = _DenseKeys(
                    first=int(spans[0][0]), rows=rows_in, bad=np.concatenate(bad_keys)
                )
                continue
            done = got.get(f"keys:{c}")
            if done is None:  # integer keys that were not dense after all: a pass of their own
                (done,) = self._collect([key_summary(base, k)], src)
            frames = [done]
            if pend_keys is not None:
                p = pl.Series(pend_persons, dtype=pl.Int64)
                frames.append(
                    pl.DataFrame({"k": pend_keys, "kept": pl.Series(pend_status < 10), "p": p})
                    .filter(pl.col("k").is_not_null())
                    .with_columns(pl.when(pl.col("p") >= 0).then(pl.col("p")).alias("p"))
                    .group_by("k")
                    .agg(
                        pl.col("kept").all(), pl.col("p").min().alias("pmin"), pl.col("p").max().alias("pmax")
                    )
                )
            self._keys[(t.name, c)] = _key_table(frames, kind)
        held = None
        if people_rows:
            held = people_rows[0] if len(people_rows) == 1 else np.concatenate(people_rows)
        self._tables[t.name] = _Table(
            keep=keep_s,
            rows_out=counts.rows_out,
            cand=cand,
            override_rows=pend_rows,
            override_persons=pend_persons,
            people_rows=held,
        )
        return counts

    def _settle(
        self, t: PlannedTable, plan: ReleasePlan, pend: pl.DataFrame, counts: TableCounts
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows whose number was not on the list as read: the full rules (001 §8.2).

        Returns their status and person (-1: none); counts reasons, problem rows, traced rows."""
        assert t.nhs_column is not None
        n = pend.height
        vals, reasons = _numbers(pend[t.nhs_column], t.chi, pend["__cand"])
        status = np.empty(n, dtype=np.uint8)
        person = np.full(n, _NONE, dtype=np.int64)
        bad = reasons != 0
        for code, k in enumerate(np.bincount(reasons, minlength=256)):
            if k and code != Reason.VALID:
                counts.invalid[Reason(code).label] = int(k)
        rn = pend["__rn"].cast(pl.Int64).to_numpy()
        counts.problem_rows = (rn[bad][:PROBLEM_ROWS_SHOWN] + 1).tolist()
        good = ~bad
        person[good] = vals[good]
        # a valid number whose fast candidate was not on the list is not on it (the candidate
        # is the number): only other spellings are looked up again
        recheck = pend["__cand"].is_null().to_numpy()[good]
        status[good] = self._by_number(vals[good], recheck)
        worse = np.flatnonzero(bad)
        if worse.size:
            if plan.unmatched == "release":
                status[worse] = Status.KEPT_UNDER_REASON
            elif t.trace_key is not None and self._trace is not None:
                keys = _text_keys(pend["__tk"].gather(worse))
                found = (
                    pl.DataFrame({"k": keys})
                    .join(self._trace, on="k", how="left", maintain_order="left")["n"]
                    .fill_null(_NONE)
                    .to_numpy()
                )
                traced = found >= 0
                counts.traced += int(traced.sum())
                status[worse] = Status.REMOVED_UNTRACED
                status[worse[traced]] = self._by_number(found[traced])
                person[worse[traced]] = found[traced]
            else:
                status[worse] = Status.REMOVED_INVALID
        if t.link is not None:
            kept_own = status < 10
            present = pend["__present"].to_numpy()
            parent_bad = pend["__bad"].to_numpy()
            status[kept_own & ~present] = Status.REMOVED_ORPHAN
            status[kept_own & present & parent_bad] = Status.REMOVED_WITH_PARENT
        return status, person

    def _people_of_rows(
        self, parent_name: str, flags: np.ndarray, bits: dict[int, np.uint8]
    ) -> Callable[[], dict[int, int]]:
        """Distinct people behind the flagged rows of a parent, per status (``flags``: a byte per
        parent row, ``bits[status]`` set where a child row of that status refers to it; they are
        set on the counting thread). The rows settled apart give their own person; the others
        theirs as held from the parent's pass, or as read again from the parent's numbers in one
        pass, row for row beside the flags (no join).

        Returns the counting: as work for the counting thread when the parent's people are held
        (NumPy only), or done now when the parent is read again (Polars' pass is not run beside
        the writes: its memory would add to theirs)."""
        assert self._plan is not None
        info = self._tables[parent_name]
        orow, opers = info.override_rows, info.override_persons
        behind = partial(_people_behind, flags, bits, orow, opers, self._allow_np, info.people_rows)
        if info.people_rows is not None or info.cand is None:
            return partial(_counted, behind, list(bits))
        self._later.wait()  # every flag set
        sets = behind()
        if flags.any():
            # the parent's numbers, slice by slice beside the flags (no join): a flagged row not
            # settled apart was kept by its number as read, so its person is on the allow-list
            src = self._plan.table(parent_name).source
            marked = pl.DataFrame({"__f": flags}).lazy()
            lf = pl.concat([self._scan(src).select(info.cand.alias("__p")), marked], how="horizontal")

            def queries_of(b: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
                hit = b.filter((pl.col("__f") > 0) & pl.col("__p").is_not_null())
                q = sets.prefix(pl.col("__p")).fill_null(sets.nobody).cast(pl.UInt32)
                return {"refs": hit.select(q.alias("q"), "__f")}

            def take(name: str, df: pl.DataFrame, offset: int) -> bool:
                q, f = df["q"].to_numpy(), df["__f"].to_numpy()
                for code, bit in bits.items():
                    sets.add_prefixes(code, q[(f & bit) != 0])
                return True

            self._collect_sliced(queries_of, lambda b: b, lf, src, take)
        found = _counts_of(sets, list(bits))
        return lambda: found

    # ------------------------------------------------------------------ writing

    def write(self, table: str, out_path: Path) -> int:
        src = self._sources[table]
        info = self._tables[table]
        everything = info.rows_out == info.keep.len()
        lf = self._scan(src)
        if not everything:
            # the verdicts beside the rows, row for row (a positional zip: no join, no row index)
            mask = pl.DataFrame({"__keep": info.keep}).lazy()
            lf = pl.concat([lf, mask], how="horizontal").filter(pl.col("__keep")).drop("__keep")
        try:
            if src.format == "parquet":
                if self._polars_writes_exactly(src, out_path):
                    options = self._parquet_options(src)
                    with HashingFile(out_path) as f:  # hashed on its way out: no second read
                        lf.sink_parquet(cast(IO[bytes], f), **options)
                    self._hashed(out_path, f)
                else:
                    self._write_arrow(src, info.keep.to_numpy(), out_path)
            else:
                self._write_csv(src, lf, out_path)
        except OSError as exc:
            raise output_error(exc, out_path) from None
        except pl.exceptions.PolarsError as exc:
            text = str(exc)
            if "No space" in text or "Permission denied" in text or "File too large" in text:
                raise output_error(OSError(text), out_path) from None
            raise self._reading_error(src, exc) from None
        n = self._rows_written(src, out_path, info)
        if n != info.rows_out:
            raise OptoutError(
                f"internal check failed: {table} wrote {n} rows where {info.rows_out} were expected",
                hint="this is a bug; nothing was released. Run again with --engine reference and report it",
            )
        return n

    def _rows_written(self, src: TableSource, out_path: Path, info: _Table) -> int:
        if src.format == "parquet":
            import pyarrow.parquet as pq

            return int(pq.read_metadata(out_path).num_rows)
        # CSV: count what the writer wrote by reading it back the same way (cheap: one column)
        probe = TableSource(
            name=src.name,
            path=out_path,
            format="csv",
            columns=src.columns,
            encoding="utf-8-sig" if src.bom else ("latin-1" if src.encoding == "latin-1" else "utf-8"),
            delimiter=src.delimiter,
            quote=src.quote,
            newline=src.newline,
        )
        try:
            return int(self._scan(probe).select(pl.len()).collect().item())
        finally:
            if probe.path in self._utf8:
                with contextlib.suppress(OSError):
                    self._utf8.pop(probe.path).unlink()

    def _parquet_options(self, src: TableSource) -> dict[str, Any]:
        """Polars' writer options for this table (its codec, its Arrow schema), read once: the
        probe (on its thread) and the write ask for them."""
        if src.path in self._options:
            return self._options[src.path]
        import pyarrow.parquet as pq

        opts: dict[str, Any] = {"compression": _CODECS.get((src.compression or "SNAPPY").upper(), "snappy")}
        meta = pq.read_metadata(src.path).metadata or {}
        if b"ARROW:schema" in meta:
            # the source's Arrow schema (string, not Polars' large_string): what PyArrow reads back
            opts["metadata"] = {"ARROW:schema": meta[b"ARROW:schema"].decode()}
        self._options[src.path] = opts
        return opts

    def _polars_writes_exactly(self, src: TableSource, out_path: Path) -> bool:
        """Would Polars write this file's schema (Parquet and Arrow) and values unchanged? The
        probe started when classifying began (``_start_probes``), or one now."""
        if src.path not in self._exact_parquet:
            started = self._probes.pop(src.path, None)
            self._exact_parquet[src.path] = started.result() if started is not None else self._probe(src)
        return self._exact_parquet[src.path]

    def _start_probes(self, plan: ReleasePlan) -> None:
        """Probe each Parquet table on a thread while the tables are classified (some 30 ms each:
        PyArrow's reads and Polars' writer on a few rows, beside Polars' pass)."""
        todo = [
            t.source
            for t in plan.tables
            if t.source.format == "parquet" and t.source.path not in self._exact_parquet
        ]
        if not todo:
            return
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optout-probe")
        self._probes = {src.path: pool.submit(self._probe, src) for src in todo}
        pool.shutdown(wait=False)  # what was submitted still runs; the thread ends after it

    def _probe(self, src: TableSource) -> bool:
        """The table's first rows written by Polars, in memory, and read back with PyArrow."""
        import io

        import pyarrow.parquet as pq

        try:
            written = io.BytesIO()
            pl.scan_parquet(src.path).head(256).sink_parquet(written, **self._parquet_options(src))
            a, b = pq.ParquetFile(src.path), pq.ParquetFile(pa.BufferReader(written.getvalue()))
            ok = _parquet_columns(a) == _parquet_columns(b) and b.schema_arrow.equals(
                a.schema_arrow, check_metadata=False
            )
            if ok:
                head = next(a.iter_batches(batch_size=256), None)
                back = b.read()
                ok = head is None or pa.Table.from_batches([head]).equals(back)
        except (pl.exceptions.PolarsError, pa.ArrowException, OSError, ValueError):
            ok = False
        return ok

    def _write_arrow(self, src: TableSource, keep: np.ndarray, out_path: Path) -> None:
        """The PyArrow path: exact schema whatever the types (streams row groups)."""
        import pyarrow.parquet as pq

        f = pq.ParquetFile(src.path)
        codec = (src.compression or "SNAPPY").lower()
        codec = {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)
        offset = 0
        with (
            HashingFile(out_path) as out,
            pq.ParquetWriter(out, f.schema_arrow, compression=codec) as w,
        ):
            for batch in f.iter_batches(batch_size=1 << 17):
                m = keep[offset : offset + batch.num_rows]
                offset += batch.num_rows
                w.write_batch(batch if m.all() else batch.filter(pa.array(m)))
        self._hashed(out_path, out)

    def _hashed(self, out_path: Path, f: HashingFile) -> None:
        digest = f.sha256()
        if digest is not None:
            self._written_sha256[out_path] = digest

    def _write_csv(self, src: TableSource, lf: pl.LazyFrame, out_path: Path) -> None:
        enc = src.encoding or "utf-8"
        raw = out_path if enc in ("utf-8", "utf-8-sig") else out_path.with_name(out_path.name + ".utf8")
        options: dict[str, Any] = {
            "include_bom": enc == "utf-8-sig",
            "separator": src.delimiter or ",",
            "quote_char": src.quote or '"',
            "line_terminator": src.newline or "\n",
            "null_value": "",
            "check_extension": False,
        }
        if raw != out_path:  # a UTF-8 copy first, re-encoded into the output (hashed by the caller)
            lf.sink_csv(raw, **options)
            reencode(raw, out_path, enc)
            return
        with HashingFile(out_path) as f:
            lf.sink_csv(cast(IO[bytes], f), **options)
        self._hashed(out_path, f)


def _parquet_columns(f: Any) -> list[tuple[Any, ...]]:
    """A Parquet file's column schema (path, physical and logical types, levels)."""
    s = f.schema
    out = []
    for i in range(len(s)):
        c = s.column(i)
        out.append(
            (
                c.path,
                c.physical_type,
                str(c.logical_type),
                c.converted_type,
                c.max_definition_level,
                c.max_repetition_level,
                c.length,
                c.precision,
                c.scale,
            )
        )
    return out

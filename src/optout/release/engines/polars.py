"""The Polars engine: streams each table twice, once for its key columns and once to copy it.

**Classify** reads only the columns the rules need (the NHS number, the trace key, the link keys),
in chunks, through Polars' streaming reader. A number is looked up in the allow-list as it is
read (one hash set, built once per table); a row whose number is on the list needs nothing else
(only valid numbers are on it). Only the few rows that are not (opted out, invalid, odd
spellings) go through the full NHS-number rules (``optout.nhs_number.parse_array``, the same
code the reference engine's ``parse`` is tested against) and get a reason. Each row's verdict is
kept as one byte; people are counted with exact distinct counts.

**Write** is then one streaming copy, ``scan -> filter(kept) -> sink``, which keeps the source's
row order, its Parquet schema and codec (checked on a probe; a type Polars would change is written
through PyArrow instead), or its CSV dialect: delimiter, quote, line ends, BOM and encoding (a
Latin-1 file goes through a UTF-8 copy in the private spill folder).

Links (001 §8.1): a parent's keys are summarised for its children. When the keys are integers
that rise row by row (a surrogate key) the summary is tiny: the first and last key, the keys of
the removed rows, and, for a leaf child's people counts, a second read of the parent's NHS
column; otherwise one entry per distinct key in memory.

CSV: Polars pads a row with too few fields with nulls instead of refusing it, so when the last
column holds any null the file is checked row by row with DuckDB's strict reader (and every
reading error is reported as DuckDB reports it, row number included, never a value).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from optout.errors import InputError, Location, OptoutError, OutputError
from optout.nhs_number import Reason, parse_array
from optout.release.engines.base import (
    PROBLEM_ROWS_SHOWN,
    Engine,
    Lists,
    ProgressFn,
    Status,
    TableCounts,
)
from optout.release.plan import Link, PlannedTable, ReleasePlan
from optout.tables import TableSource

__all__ = ["PolarsEngine"]

CHUNK_ROWS = 1 << 22  # rows per classification chunk: 32 MB per integer key column
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


def _numbers(raw: pl.Series, chi: bool) -> tuple[np.ndarray, np.ndarray]:
    """``parse_array`` of a column: (normalised numbers, 0 where invalid; reason codes)."""
    if _is_int(raw.dtype) or raw.dtype == pl.UInt64:
        nulls = raw.is_null().to_numpy()
        vals, reasons = parse_array(raw.fill_null(0).to_numpy(), chi=chi)
        reasons[nulls] = Reason.MISSING
        return np.where(nulls, 0, vals), reasons
    return parse_array(raw.to_arrow(), chi=chi)


def _unique_union(parts: list[pl.Series], new: pl.Series) -> None:
    """Collect distinct values, merging once the pieces add up (bounded by the distinct count)."""
    parts.append(new)
    if len(parts) > 1 and sum(p.len() for p in parts) > 4 * CHUNK_ROWS:
        merged = pl.concat(parts).unique()
        parts.clear()
        parts.append(merged)


def _distinct(parts: list[pl.Series]) -> int:
    if not parts:
        return 0
    return int(pl.concat(parts).n_unique()) if len(parts) > 1 else int(parts[0].n_unique())


# --------------------------------------------------------------------------- link key summaries


@dataclass
class _RisingKeys:
    """A parent's integer keys that rise row by row (unique, no nulls): no per-key table needed.

    Row ``i`` holds key ``keys[i]`` (``first + i`` when dense). ``bad`` are the keys of rows that
    are not kept (sorted). People behind a key come from a second read of the parent (``rescan``).
    """

    first: int = 0
    last: int = 0
    rows: int = 0
    dense: bool = True
    chunks: list[np.ndarray] = field(default_factory=list)  # the keys, kept only when not dense
    bad: list[np.ndarray] = field(default_factory=list)
    broken: bool = False  # a null, a repeat or a fall: not rising after all
    _keys: np.ndarray | None = None
    _bad: np.ndarray | None = None

    def add(self, keys: pl.Series, kept: np.ndarray) -> None:
        if self.broken:
            return
        if keys.null_count() or keys.len() == 0:
            self.broken = keys.len() > 0
            return
        k = keys.cast(pl.Int64).to_numpy()
        if (self.rows and k[0] <= self.last) or (k.size > 1 and not bool((k[1:] > k[:-1]).all())):
            self.broken = True
            return
        if self.rows == 0:
            self.first = int(k[0])
        elif k[0] != self.last + 1:
            self.dense = False
        if self.dense and int(k[-1]) - int(k[0]) + 1 != k.size:
            self.dense = False
        self.chunks.append(k)
        self.last = int(k[-1])
        self.rows += k.size
        if not kept.all():
            self.bad.append(k[~kept])

    def finish(self) -> None:
        self._bad = np.concatenate(self.bad) if self.bad else np.empty(0, dtype=np.int64)
        if self.dense:
            self.chunks.clear()
        else:
            self._keys = np.concatenate(self.chunks) if self.chunks else np.empty(0, dtype=np.int64)
            self.chunks.clear()

    def lookup(self, keys: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(state 0 absent / 1 all kept / 2 not, parent row or -1) per child key."""
        k = keys.cast(pl.Int64, strict=False)
        null = k.is_null().to_numpy()
        v = k.fill_null(0).to_numpy()
        if self.dense:
            row = v - self.first
            present = ~null & (row >= 0) & (row < self.rows)
        else:
            assert self._keys is not None
            row = np.searchsorted(self._keys, v)
            row[row >= self._keys.size] = 0
            present = ~null & (self._keys[row] == v) if self._keys.size else np.zeros(v.shape, dtype=bool)
        assert self._bad is not None
        bad = _sorted_isin(self._bad, v)
        state = np.where(present, np.where(bad, 2, 1), 0).astype(np.uint8)
        return state, np.where(present, row, -1)


@dataclass
class _KeyTable:
    """Any other keys: one row per distinct key (kept, smallest and largest person)."""

    kind: str  # "int" | "text"
    parts: list[pl.DataFrame] = field(default_factory=list)
    table: pl.DataFrame | None = None

    def add(self, keys: pl.Series, kept: np.ndarray, person: np.ndarray) -> None:
        df = pl.DataFrame(
            {
                "k": keys,
                "kept": pl.Series(kept, dtype=pl.Boolean),
                "p": pl.Series(person, dtype=pl.Int64),
            }
        ).filter(pl.col("k").is_not_null())
        if df.height == 0:
            return
        p = pl.when(pl.col("p") >= 0).then(pl.col("p"))
        self.parts.append(
            df.group_by("k").agg(pl.col("kept").all(), p.min().alias("pmin"), p.max().alias("pmax"))
        )
        if len(self.parts) > 8:
            self._merge()

    def _merge(self) -> None:
        if not self.parts:
            return
        self.parts = [
            pl.concat(self.parts)
            .group_by("k")
            .agg(pl.col("kept").all(), pl.col("pmin").min(), pl.col("pmax").max())
        ]

    def finish(self) -> None:
        self._merge()
        schema = {"k": pl.Int64 if self.kind == "int" else pl.String, "kept": pl.Boolean}
        base = (
            self.parts[0]
            if self.parts
            else pl.DataFrame(schema={**schema, "pmin": pl.Int64, "pmax": pl.Int64})
        )
        # all rows kept and at most one person (001 §8.1: whole records, one person's)
        self.table = base.select(
            "k",
            (pl.col("kept") & (pl.col("pmin").is_null() | (pl.col("pmin") == pl.col("pmax")))).alias("ok"),
            pl.col("pmin").fill_null(_NONE).alias("person"),
        )
        self.parts.clear()

    def lookup(self, keys: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(state 0 absent / 1 ok / 2 not, the key's person or -1) per child key."""
        assert self.table is not None
        joined = pl.DataFrame({"k": keys}).join(self.table, on="k", how="left", maintain_order="left")
        ok = joined["ok"]
        state = np.where(ok.is_null().to_numpy(), 0, np.where(ok.fill_null(False).to_numpy(), 1, 2))
        return state.astype(np.uint8), joined["person"].fill_null(_NONE).to_numpy()


# --------------------------------------------------------------------------- the engine


@dataclass
class _Table:
    """What classification leaves for writing and for the children."""

    keep: np.ndarray  # bool per row
    rows_out: int
    # rows that did not take the fast path, and their person (-1 none): with the fast candidate
    # (the number itself) they give every row's person on a second read (``_persons_of_rows``)
    override_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    override_persons: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))


class PolarsEngine(Engine):
    name = "polars"

    def __init__(self, *, memory_limit: str | None = None, temp_dir: Path | None = None) -> None:
        super().__init__(memory_limit=memory_limit, temp_dir=temp_dir)
        self._plan: ReleasePlan | None = None
        self._tables: dict[str, _Table] = {}
        self._sources: dict[str, TableSource] = {}
        self._keys: dict[tuple[str, str], _RisingKeys | _KeyTable] = {}
        self._utf8: dict[Path, Path] = {}
        self._exact_parquet: dict[Path, bool] = {}
        self._allow = pl.Series("allow", [], dtype=pl.Int64)
        self._allow_np = np.empty(0, dtype=np.int64)
        self._cohort_np: np.ndarray | None = None
        self._trace: pl.DataFrame | None = None

    def close(self) -> None:
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
            folder = self.temp_dir or Path(os.path.dirname(src.path))
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

    def _batches(self, lf: pl.LazyFrame, src: TableSource) -> Iterator[pl.DataFrame]:
        try:
            yield from lf.collect_batches(chunk_size=CHUNK_ROWS)
        except (pl.exceptions.PolarsError, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, pl.exceptions.PolarsError):
                raise InputError(
                    f"cannot read {src.path.name}: {exc.strerror or exc.__class__.__name__}",
                    where=Location(file=src.path),
                    hint="check the path and that your account may read the file",
                ) from None
            raise self._reading_error(src, exc) from None

    # ------------------------------------------------------------------ classification

    def classify(
        self, plan: ReleasePlan, lists: Lists, progress: ProgressFn | None = None
    ) -> dict[str, TableCounts]:
        self._plan = plan
        self._allow_np = np.asarray(lists.allow, dtype=np.int64)
        self._allow = pl.Series("allow", self._allow_np, dtype=pl.Int64)
        self._cohort_np = None if lists.cohort is None else np.asarray(lists.cohort, dtype=np.int64)
        if plan.trace is not None:
            self._trace = self._trace_map(plan)
        out: dict[str, TableCounts] = {}
        for t in plan.tables:
            if progress:
                progress(t.name, "checking")
            self._sources[t.name] = t.source
            counts = self._classify_table(t, plan, rising=True)
            if counts is None:  # the keys did not rise after all: again, with a key table
                counts = self._classify_table(t, plan, rising=False)
            assert counts is not None
            out[t.name] = counts
        return out

    def _trace_map(self, plan: ReleasePlan) -> pl.DataFrame:
        """Local id -> number; an id with an invalid entry or two numbers traces to nobody."""
        assert plan.trace is not None
        tr = plan.trace
        frames = []
        for b in self._batches(self._scan(tr.source).select(tr.key_column, tr.nhs_column), tr.source):
            vals, reasons = parse_array(b[tr.nhs_column].to_arrow())
            frames.append(
                pl.DataFrame(
                    {
                        "k": _text_keys(b[tr.key_column]),
                        "n": pl.Series(np.where(reasons == 0, vals, _NONE), dtype=pl.Int64),
                    }
                )
            )
        df = pl.concat(frames) if frames else pl.DataFrame(schema={"k": pl.String, "n": pl.Int64})
        return (
            df.filter(pl.col("k").is_not_null())
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
        return "int" if _is_int(child) and _is_int(parent) else "text"

    @staticmethod
    def _key_values(s: pl.Series, kind: str) -> pl.Series:
        return s.cast(pl.Int64) if kind == "int" else _text_keys(s)

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

    def _classify_table(self, t: PlannedTable, plan: ReleasePlan, *, rising: bool) -> TableCounts | None:
        src = t.source
        schema = self._schema(src)
        cols: list[str] = []
        for c in (t.nhs_column, t.trace_key, t.link.child_column if t.link else None):
            if c is not None and c not in cols:
                cols.append(c)
        kinds = {ch.parent_column: self._key_kind(plan, ch) for ch in t.children}
        for ch in t.children:
            if ch.parent_column not in cols:
                cols.append(ch.parent_column)
        last = src.columns[-1] if src.format == "csv" else None
        if last is not None and last not in cols:
            cols.append(last)
        exprs: list[pl.Expr] = [pl.col(c) for c in cols]
        cand = self._candidate(t, schema[t.nhs_column]) if t.nhs_column is not None else None
        if cand is not None:
            on_list = cand.is_in(self._allow.implode()).fill_null(False)
            exprs += [cand.fill_null(_NONE).alias("__cand"), on_list.alias("__on")]
        lf = self._scan(src).select(exprs)

        # parent side: a summary of each child link's keys
        builders: dict[str, _RisingKeys | _KeyTable] = {}
        for ch in t.children:
            child = plan.table(ch.child)
            leaf_or_own = child.nhs_column is not None or not child.children
            if rising and kinds[ch.parent_column] == "int" and t.nhs_column is not None and leaf_or_own:
                builders[ch.parent_column] = _RisingKeys()
            else:
                builders[ch.parent_column] = _KeyTable(kind=kinds[ch.parent_column])
        parent = self._keys.get((t.link.parent, t.link.parent_column)) if t.link is not None else None
        link_kind = self._key_kind(plan, t.link) if t.link is not None else "text"
        # people: distinct non-null persons per status; a rising parent's rows for a leaf child
        people: dict[int, list[pl.Series]] = {}
        marks: dict[int, list[np.ndarray]] = {}
        counts = TableCounts()
        keep_parts: list[np.ndarray] = []
        over_rows: list[np.ndarray] = []
        over_persons: list[np.ndarray] = []
        problems: list[int] = []
        reason_counts = np.zeros(256, dtype=np.int64)
        status_rows = np.zeros(256, dtype=np.int64)
        offset = 0
        nulls_in_last = 0
        for b in self._batches(lf, src):
            n = b.height
            if n == 0:
                continue
            if last is not None:
                nulls_in_last += b[last].null_count()
            status = np.full(n, Status.KEPT if t.nhs_column else Status.KEPT_WITH_PARENT, dtype=np.uint8)
            person = np.full(n, _NONE, dtype=np.int64)
            if t.nhs_column is not None:
                fast: np.ndarray | None = None
                if cand is not None:
                    on = b["__on"].to_numpy()
                    fast = b["__cand"].to_numpy()
                    person = np.where(on, fast, _NONE)
                    off = np.flatnonzero(~on)
                else:
                    off = np.arange(n)
                if off.size:
                    raw = b[t.nhs_column] if off.size == n else b[t.nhs_column].gather(off)
                    vals, reasons = _numbers(raw, t.chi)
                    bad = reasons != 0
                    reason_counts += np.bincount(reasons, minlength=256)
                    if bad.any() and len(problems) < PROBLEM_ROWS_SHOWN:
                        problems.extend((offset + off[bad][:PROBLEM_ROWS_SHOWN] + 1).tolist())
                    good = off[~bad]
                    person[good] = vals[~bad]
                    # a valid number whose fast candidate was not on the list is not on it (the
                    # candidate is the number): only other spellings are looked up again
                    recheck = np.ones(good.size, dtype=bool) if fast is None else fast[good] < 0
                    status[good] = self._by_number(vals[~bad], recheck)
                    worse = off[bad]
                    if worse.size:
                        if plan.unmatched == "release":
                            status[worse] = Status.KEPT_UNDER_REASON
                        elif t.trace_key is not None and self._trace is not None:
                            keys = _text_keys(b[t.trace_key].gather(worse))
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
                    over_rows.append(offset + off)
                    over_persons.append(person[off].copy())
            parent_row: np.ndarray | None = None
            if t.link is not None:
                assert parent is not None
                kv = self._key_values(b[t.link.child_column], link_kind)
                state, found_p = parent.lookup(kv)
                kept_own = status < 10
                status[kept_own & (state == 0)] = Status.REMOVED_ORPHAN
                status[kept_own & (state == 2)] = Status.REMOVED_WITH_PARENT
                if t.nhs_column is None:
                    if isinstance(parent, _RisingKeys):
                        parent_row = found_p  # the people behind these rows: counted after
                    else:
                        person = found_p
            kept = status < 10
            keep_parts.append(kept)
            status_rows += np.bincount(status, minlength=256)
            for col, builder in builders.items():
                kv = self._key_values(b[col], kinds[col])
                if isinstance(builder, _RisingKeys):
                    builder.add(kv, kept)
                    if builder.broken:
                        return None
                else:
                    builder.add(kv, kept, person)
            for code in np.flatnonzero(np.bincount(status, minlength=256)):
                sel = status == code
                if parent_row is not None:
                    rows = parent_row[sel]
                    marks.setdefault(int(code), []).append(rows[rows >= 0])
                    continue
                ps = person[sel]
                ps = ps[ps >= 0]
                if ps.size:
                    _unique_union(people.setdefault(int(code), []), pl.Series(ps).unique())
            offset += n
        if offset == 0:
            raise InputError(
                f"{src.path.name} has no rows",
                where=Location(file=src.path),
                hint="a table with no rows usually means the export failed: export it again",
            )
        if nulls_in_last:  # Polars fills a short row with nulls: DuckDB's strict reader decides
            err = self._duckdb_error(src)
            if err is not None:
                raise err
        for col, builder in builders.items():
            builder.finish()
            self._keys[(t.name, col)] = builder
        counts.rows_in = offset
        via_rows = self._people_of_rows(t.link, marks) if t.link is not None and marks else {}
        for code in np.flatnonzero(status_rows):
            n_people = via_rows[int(code)] if int(code) in via_rows else _distinct(people.get(int(code), []))
            counts.by_status[Status(int(code))] = [int(status_rows[code]), n_people]
        for st, (_, n_people) in counts.by_status.items():
            if st.kept:
                counts.people_kept += n_people
            else:
                counts.people_removed += n_people
        for code in np.flatnonzero(reason_counts):
            if code != Reason.VALID:
                counts.invalid[Reason(int(code)).label] = int(reason_counts[code])
        counts.problem_rows = problems[:PROBLEM_ROWS_SHOWN]
        keep = np.concatenate(keep_parts) if keep_parts else np.zeros(0, dtype=bool)
        counts.rows_out = int(keep.sum())
        self._tables[t.name] = _Table(
            keep=keep,
            rows_out=counts.rows_out,
            override_rows=np.concatenate(over_rows) if over_rows else np.empty(0, dtype=np.int64),
            override_persons=np.concatenate(over_persons) if over_persons else np.empty(0, dtype=np.int64),
        )
        return counts

    def _people_of_rows(self, link: Link, marks: dict[int, list[np.ndarray]]) -> dict[int, int]:
        """Distinct people behind marked rows of a rising-key parent: read its numbers again."""
        assert self._plan is not None
        parent = self._plan.table(link.parent)
        info = self._tables[link.parent]
        marked: dict[int, np.ndarray] = {}
        for code, parts in marks.items():
            m = np.zeros(info.keep.size, dtype=bool)
            for rows in parts:
                m[rows] = True
            marked[code] = m
        assert parent.nhs_column is not None
        src = parent.source
        cand = self._candidate(parent, self._schema(src)[parent.nhs_column])
        expr = (cand if cand is not None else pl.lit(None, dtype=pl.Int64)).fill_null(_NONE).alias("p")
        found: dict[int, list[pl.Series]] = {code: [] for code in marked}
        offset = 0
        orow, opers = info.override_rows, info.override_persons
        for b in self._batches(self._scan(src).select(expr), src):
            n = b.height
            p = b["p"].to_numpy().copy()
            lo, hi = np.searchsorted(orow, [offset, offset + n])
            p[orow[lo:hi] - offset] = opers[lo:hi]
            for code, m in marked.items():
                sel = p[m[offset : offset + n]]
                sel = sel[sel >= 0]
                if sel.size:
                    _unique_union(found[code], pl.Series(sel).unique())
            offset += n
        return {code: _distinct(parts) for code, parts in found.items()}

    # ------------------------------------------------------------------ writing

    def write(self, table: str, out_path: Path) -> int:
        src = self._sources[table]
        info = self._tables[table]
        keep = info.keep
        seen: list[int] = []
        lock = threading.Lock()

        def kept_rows(idx: pl.Series) -> pl.Series:
            rows = idx.to_numpy()
            with lock:
                seen.append(rows.size)
            return pl.Series(keep[rows], dtype=pl.Boolean)

        everything = bool(keep.all())
        lf = self._scan(src, row_index=None if everything else "__rn")
        if not everything:
            lf = lf.filter(pl.col("__rn").map_batches(kept_rows, return_dtype=pl.Boolean)).drop("__rn")
        try:
            if src.format == "parquet":
                if self._polars_writes_exactly(src, out_path):
                    lf.sink_parquet(out_path, **self._parquet_options(src))
                else:
                    self._write_arrow(src, keep, out_path)
                    seen.append(keep.size)
            else:
                self._write_csv(src, lf, out_path)
        except OSError as exc:
            from optout.release.engines.duckdb import output_error

            raise output_error(exc, out_path) from None
        except pl.exceptions.PolarsError as exc:
            text = str(exc)
            if "No space" in text or "Permission denied" in text or "File too large" in text:
                from optout.release.engines.duckdb import output_error

                raise output_error(OSError(text), out_path) from None
            raise self._reading_error(src, exc) from None
        n = self._rows_written(src, out_path, info)
        if (not everything and sum(seen) != keep.size) or n != info.rows_out:
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
        import pyarrow.parquet as pq

        opts: dict[str, Any] = {"compression": _CODECS.get((src.compression or "SNAPPY").upper(), "snappy")}
        meta = pq.read_metadata(src.path).metadata or {}
        if b"ARROW:schema" in meta:
            # the source's Arrow schema (string, not Polars' large_string): what PyArrow reads back
            opts["metadata"] = {"ARROW:schema": meta[b"ARROW:schema"].decode()}
        return opts

    def _polars_writes_exactly(self, src: TableSource, out_path: Path) -> bool:
        """Would Polars write this file's schema (Parquet and Arrow) and values unchanged? A probe."""
        if src.path in self._exact_parquet:
            return self._exact_parquet[src.path]
        import pyarrow.parquet as pq

        probe = out_path.with_name(f".probe-{out_path.name}")
        try:
            pl.scan_parquet(src.path).head(256).sink_parquet(probe, **self._parquet_options(src))
            a, b = pq.ParquetFile(src.path), pq.ParquetFile(probe)
            ok = _parquet_columns(a) == _parquet_columns(b) and b.schema_arrow.equals(
                a.schema_arrow, check_metadata=False
            )
            if ok:
                head = next(a.iter_batches(batch_size=256), None)
                back = b.read()
                ok = head is None or pa.Table.from_batches([head]).equals(back)
        except (pl.exceptions.PolarsError, pa.ArrowException, OSError, ValueError):
            ok = False
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        self._exact_parquet[src.path] = ok
        return ok

    def _write_arrow(self, src: TableSource, keep: np.ndarray, out_path: Path) -> None:
        """The PyArrow path: exact schema whatever the types (streams row groups)."""
        import pyarrow.parquet as pq

        f = pq.ParquetFile(src.path)
        codec = (src.compression or "SNAPPY").lower()
        codec = {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)
        offset = 0
        with pq.ParquetWriter(out_path, f.schema_arrow, compression=codec) as w:
            for batch in f.iter_batches(batch_size=1 << 17):
                m = keep[offset : offset + batch.num_rows]
                offset += batch.num_rows
                w.write_batch(batch if m.all() else batch.filter(pa.array(m)))

    def _write_csv(self, src: TableSource, lf: pl.LazyFrame, out_path: Path) -> None:
        enc = src.encoding or "utf-8"
        raw = out_path if enc in ("utf-8", "utf-8-sig") else out_path.with_name(out_path.name + ".utf8")
        lf.sink_csv(
            raw,
            include_bom=enc == "utf-8-sig",
            separator=src.delimiter or ",",
            quote_char=src.quote or '"',
            line_terminator=src.newline or "\n",
            null_value="",
            check_extension=False,
        )
        if raw != out_path:
            _reencode(raw, out_path, enc)


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


def _reencode(raw: Path, out_path: Path, encoding: str) -> None:
    """Polars writes UTF-8: give the file back its source encoding (Latin-1)."""
    try:
        with raw.open("rb") as fin, out_path.open("wb") as fout:
            dec = codecs.getincrementaldecoder("utf-8")()
            for block in iter(lambda: fin.read(1 << 20), b""):
                fout.write(dec.decode(block).encode(encoding))
            fout.write(dec.decode(b"", final=True).encode(encoding))
        os.unlink(raw)
    except OSError as exc:
        from optout.release.engines.duckdb import output_error

        raise output_error(exc, out_path) from None
    except UnicodeEncodeError:  # pragma: no cover - the values came from a Latin-1 file
        raise OutputError(
            f"{out_path.name} could not be written back as {encoding}",
            hint="run again with --engine duckdb and report it",
        ) from None

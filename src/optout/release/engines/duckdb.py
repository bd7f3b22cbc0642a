"""The DuckDB engine: streams every table, holding only the allow-list (and a 1-bit-per-row mask).

Per table, one scan classifies every row (reading only the NHS-number, trace and link columns of a
Parquet file) and returns, in one aggregate, the counts per status, the distinct people, and the
row numbers of the removed rows. Those become a bit mask; the output is then one streaming
``COPY (SELECT t.* FROM table t POSITIONAL JOIN mask WHERE keep) TO ...``, which keeps the
source's row order (a hash join would not: DuckDB reorders its output across threads), its
header/schema, CSV dialect and Parquet compression. DuckDB's memory limit is set and it spills
to a temporary folder inside the release's temporary folder.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from optout.errors import OptoutError
from optout.nhs_number import Reason, sql_check_reason, sql_normalised, sql_reason
from optout.release.engines.base import (
    KEPT_CODES,
    PROBLEM_ROWS_SHOWN,
    Engine,
    Lists,
    ProgressFn,
    Status,
    TableCounts,
    output_error,
    reencode,
)
from optout.release.plan import Link, PlannedTable, ReleasePlan
from optout.tables import TableSource, connect, quote_ident, quote_literal, translate_duckdb_error

__all__ = ["DuckDBEngine", "output_error"]

_CODECS = {"SNAPPY", "GZIP", "ZSTD", "BROTLI", "LZ4", "LZ4_RAW", "UNCOMPRESSED"}
# DuckDB's own limit. The process peaks some 0.4-0.7 GB above it (allocator, Arrow results, the
# allow-list): 1GB keeps a 50 M-row release under 1.4 GiB, with no measurable slow-down.
DEFAULT_MEMORY_LIMIT = "1GB"


def _fast_candidate(expr: str, sql_type: str, chi: bool) -> str:
    """The number as BIGINT when it can only be a valid number if it is on the allow-list.

    Integer columns: the value itself when it has the right number of digits (no checksum: the
    allow-list holds only valid numbers). Other types: the full normalisation.
    """
    t = sql_type.upper()
    if "INT" in t and "INTERVAL" not in t:
        low = 100_000_000 if chi else 1_000_000_000
        return f"(CASE WHEN {expr} >= {low} AND {expr} < 10000000000 THEN CAST({expr} AS BIGINT) END)"
    if t == "VARCHAR":  # the common spelling, exactly ten digits; any other goes the full way
        return f"(CASE WHEN regexp_full_match({expr}, '[0-9]{{10}}') THEN CAST({expr} AS BIGINT) END)"
    return sql_normalised(expr, sql_type, chi=chi)


def _fast_is_exact(sql_type: str) -> bool:
    """Does ``_fast_candidate`` find every number on the list (not only the common spelling)?"""
    t = sql_type.upper()
    return t != "VARCHAR"


def _key_expr(column: str) -> str:
    """Link/trace keys are compared as text ('' is no key)."""
    return f"NULLIF(CAST({quote_ident(column)} AS VARCHAR), '')"


_INT_KEY_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}


def _link_key_expr(column: str, plan: ReleasePlan, link: Link) -> str:
    """A link key: as BIGINT when both sides are integer columns, else as text.

    Two integers are equal exactly when their decimal texts are, so comparing them as numbers
    keeps the text rule while hashing and grouping far faster (and never yields '')."""
    types = (
        plan.table(link.child).source.sql_types().get(link.child_column, "VARCHAR").upper(),
        plan.table(link.parent).source.sql_types().get(link.parent_column, "VARCHAR").upper(),
    )
    if all(ty in _INT_KEY_TYPES for ty in types):
        return f"CAST({quote_ident(column)} AS BIGINT)"
    return _key_expr(column)


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, *, memory_limit: str | None = None, temp_dir: Path | None = None) -> None:
        super().__init__(memory_limit=memory_limit, temp_dir=temp_dir)
        self.con: Any = connect(memory_limit=memory_limit or DEFAULT_MEMORY_LIMIT, temp_dir=temp_dir)
        self._plan: ReleasePlan | None = None
        self._masks: dict[str, pa.BooleanArray] = {}
        self._expected: dict[str, int] = {}
        self._sources: dict[str, TableSource] = {}

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.close()

    # ------------------------------------------------------------------ classification

    def _scan(self, src: TableSource) -> tuple[str, str]:
        if src.format == "parquet":
            return f"read_parquet({quote_literal(src.path)}, file_row_number=true)", "file_row_number"
        return src.scan_sql(), "(row_number() OVER () - 1)"

    def _classified_sql(self, t: PlannedTable, plan: ReleasePlan, lists: Lists) -> str:
        src = t.source
        scan, rn = self._scan(src)
        cols = [f"{rn} AS __rn"]
        if t.nhs_column is not None:
            ty = src.sql_types().get(t.nhs_column, "VARCHAR")
            c = quote_ident(t.nhs_column)
            cols.append(f"{c} AS __raw")
            cols.append(f"{_fast_candidate(c, ty, t.chi)} AS __fast")
            full_reason = sql_reason("f.__raw", ty, chi=t.chi)
            full_norm = sql_normalised("f.__raw", ty, chi=t.chi)
        else:
            cols.append("CAST(NULL AS BIGINT) AS __fast")
            full_reason, full_norm = "0", "CAST(NULL AS BIGINT)"
        if t.trace_key is not None:
            cols.append(f"{_key_expr(t.trace_key)} AS __tk")
        if t.link is not None:
            cols.append(f"{_link_key_expr(t.link.child_column, plan, t.link)} AS __lk")
        for i, child in enumerate(t.children):
            cols.append(f"{_link_key_expr(child.parent_column, plan, child)} AS __ck{i}")
        # A number on the allow-list is a valid NHS number, so a row whose (cheaply normalised)
        # number is on the list needs no checksum: the full normalisation and reason (Modulus 11,
        # several divisions per value) run only for the rows that are not, via CASE.
        inner = f"SELECT {', '.join(cols)} FROM {scan}"
        # A fast candidate not on the list needs only the checks after the form (it already has
        # the right form): Modulus 11, then the CHI date, on the column itself, no bound lambdas
        # (which DuckDB evaluates for every row of a vector, not only the rows the CASE selects).
        fast_reason = fast_norm = ""
        if t.nhs_column is not None and not t.chi:
            checked = sql_check_reason("f.__fast")
            fast_reason = f"WHEN f.__fast IS NOT NULL THEN {checked} "
            fast_norm = f"WHEN f.__fast IS NOT NULL THEN (CASE WHEN {checked} = 0 THEN f.__fast END) "
        base = (
            f"SELECT f.*, CASE WHEN al.n IS NOT NULL THEN 0 {fast_reason}ELSE {full_reason} END AS __reason, "
            f"CASE WHEN al.n IS NOT NULL THEN al.n {fast_norm}ELSE {full_norm} END AS __norm, "
            f"al.n IS NOT NULL AS __on_list, al.i AS __pidx "
            f"FROM ({inner}) f LEFT JOIN __allow al ON al.n = f.__fast"
        )
        if t.nhs_column is None:  # no number to look up: no join with the allow-list
            base = (
                "SELECT f.*, 0 AS __reason, CAST(NULL AS BIGINT) AS __norm, false AS __on_list, "
                f"CAST(NULL AS BIGINT) AS __pidx FROM ({inner}) f"
            )
        if t.nhs_column is not None and not _fast_is_exact(src.sql_types().get(t.nhs_column, "VARCHAR")):
            # other spellings (spaces, hyphens, Excel notation) missed the fast path: look the
            # fully normalised number up too, for those rows only
            base = (
                "SELECT g.* REPLACE ((g.__on_list OR a2.n IS NOT NULL) AS __on_list, "
                "coalesce(g.__pidx, a2.i) AS __pidx) "
                f"FROM ({base}) g LEFT JOIN __allow a2 "
                "ON a2.n = (CASE WHEN g.__on_list THEN NULL ELSE g.__norm END)"
            )
        joins = []
        tn = "CAST(NULL AS BIGINT)"
        if t.trace_key is not None:
            joins.append("LEFT JOIN __trace ti ON b.__norm IS NULL AND ti.k = b.__tk")
            tn = "ti.n"
        person = f"coalesce(b.__norm, {tn})"
        pidx = "b.__pidx"
        if t.nhs_column is not None:
            if t.trace_key is not None:  # a traced number is checked against the list too
                joins.append(f"LEFT JOIN __allow a ON b.__norm IS NULL AND a.n = {tn}")
                on_list = "(b.__on_list OR a.n IS NOT NULL)"
                pidx = "coalesce(b.__pidx, a.i)"
            else:
                on_list = "b.__on_list"
            if lists.cohort is not None:
                joins.append(f"LEFT JOIN __cohort co ON co.n = {person}")
            if plan.unmatched == "release":
                unmatched = f"WHEN b.__norm IS NULL THEN {int(Status.KEPT_UNDER_REASON)}"
            elif t.trace_key is not None:
                unmatched = f"WHEN {person} IS NULL THEN {int(Status.REMOVED_UNTRACED)}"
            else:
                unmatched = f"WHEN b.__norm IS NULL THEN {int(Status.REMOVED_INVALID)}"
            cohort = (
                f"WHEN co.n IS NULL THEN {int(Status.REMOVED_NOT_IN_COHORT)}"
                if lists.cohort is not None
                else ""
            )
            own = (
                f"CASE {unmatched} {cohort} WHEN {on_list} THEN {int(Status.KEPT)} "
                f"ELSE {int(Status.REMOVED_NOT_ON_LIST)} END"
            )
        else:
            own = str(int(Status.KEPT_WITH_PARENT))
        status = own
        if t.link is not None:
            joins.append(f"LEFT JOIN {self._keys_name(plan, t.link)} pk ON pk.k = b.__lk")
            status = (
                f"CASE WHEN ({own}) >= 10 THEN ({own}) "
                f"WHEN pk.k IS NULL THEN {int(Status.REMOVED_ORPHAN)} "
                f"WHEN NOT pk.kept THEN {int(Status.REMOVED_WITH_PARENT)} ELSE ({own}) END"
            )
            if t.nhs_column is None:
                person, pidx = "pk.person", "pk.pidx"
        traced = "(b.__norm IS NULL AND ti.n IS NOT NULL)" if t.trace_key is not None else "false"
        extra = "".join(f", b.__ck{i}" for i in range(len(t.children)))
        return (
            f"SELECT b.__rn, b.__reason, {person} AS __person, {pidx} AS __pidx, {status} AS __status, "
            f"{traced} AS __traced{extra} FROM ({base}) b {' '.join(joins)}"
        )

    @staticmethod
    def _keys_name(plan: ReleasePlan, link: Link) -> str:
        kind = "int" if _link_key_expr(link.parent_column, plan, link).startswith("CAST(") else "text"
        return quote_ident(f"__keys_{link.parent}_{link.parent_column}_{kind}")

    def _register(self, name: str, values: np.ndarray) -> None:
        """A sorted number list as a table (n, i): i is the position, for exact distinct counts."""
        arrow = pa.table(
            {"n": pa.array(values, type=pa.int64()), "i": pa.array(np.arange(values.size, dtype=np.int64))}
        )
        self.con.register(f"{name}_arrow", arrow)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT n, i FROM {name}_arrow")
        self.con.unregister(f"{name}_arrow")

    def _register_trace(self, plan: ReleasePlan) -> None:
        assert plan.trace is not None
        tr = plan.trace
        ty = tr.source.sql_types().get(tr.nhs_column, "VARCHAR")
        c = quote_ident(tr.nhs_column)
        sql = (
            "CREATE OR REPLACE TEMP TABLE __trace AS "
            f"SELECT k, CASE WHEN count(*) = count(n) AND count(DISTINCT n) = 1 THEN min(n) END AS n "
            f"FROM (SELECT {_key_expr(tr.key_column)} AS k, {sql_normalised(c, ty)} AS n "
            f"FROM {tr.source.scan_sql()}) WHERE k IS NOT NULL GROUP BY k"
        )
        self._run(sql, tr.source)

    def _arrow(self, sql: str, src: TableSource) -> pa.Table:
        """A query's result as Arrow (large lists stay columnar)."""
        try:
            return self.con.sql(sql).to_arrow_table()
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None
        except duckdb.Error as exc:
            raise translate_duckdb_error(exc, src.path) from None
        except RuntimeError as exc:
            if "interrupt" in str(exc).lower():
                raise KeyboardInterrupt from None
            raise

    def _run(self, sql: str, src: TableSource, *, column: str | None = None) -> Any:
        try:
            return self.con.execute(sql)
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None
        except duckdb.Error as exc:
            raise translate_duckdb_error(exc, src.path, column=column) from None
        except RuntimeError as exc:  # DuckDB reports Ctrl-C during a query as "Query interrupted"
            if "interrupt" in str(exc).lower():
                raise KeyboardInterrupt from None
            raise

    def classify(
        self, plan: ReleasePlan, lists: Lists, progress: ProgressFn | None = None
    ) -> dict[str, TableCounts]:
        self._plan = plan
        self._allow_size = int(lists.allow.size)
        self._register("__allow", lists.allow)
        if lists.cohort is not None:
            self._register("__cohort", lists.cohort)
        if plan.trace is not None:
            self._register_trace(plan)
        out: dict[str, TableCounts] = {}
        kept = ", ".join(str(k) for k in KEPT_CODES)
        for t in plan.tables:
            if progress:
                progress(t.name, "checking")
            src = t.source
            self._sources[t.name] = src
            classified = self._classified_sql(t, plan, lists)
            for i, child in enumerate(t.children):
                self._run(
                    # kept: every row of the key kept, and at most one (non-NULL) person
                    f"CREATE OR REPLACE TEMP TABLE {self._keys_name(plan, child)} AS "
                    f"SELECT __ck{i} AS k, bool_and(__status IN ({kept})) "
                    "AND coalesce(min(__person) = max(__person), true) AS kept,"
                    f" min(__person) AS person, min(__pidx) AS pidx FROM ({classified}) "
                    f"WHERE __ck{i} IS NOT NULL GROUP BY 1",
                    src,
                )
            # People: exact distinct counts. Kept people are all on the allow-list, so a bitmap over
            # its positions counts them (much cheaper than hashing millions of numbers); removed
            # people are counted with DISTINCT over the (few) removed rows only (NULL for the
            # others: much cheaper in DuckDB than a FILTER clause on a DISTINCT aggregate).
            top = max(self._allow_size - 1, 0)
            invalid = ", ".join(
                f"count(*) FILTER (WHERE __reason = {int(r)}) AS r{int(r)}"
                for r in Reason
                if r != Reason.VALID
            )
            stats = self._arrow(
                f"""SELECT __status, count(*) AS n,
                       bit_count(bitstring_agg(__pidx, 0, {top}) FILTER (WHERE __status IN ({kept}))) AS pk,
                       count(DISTINCT CASE WHEN __status NOT IN ({kept}) THEN __person END) AS pr,
                       count(*) FILTER (WHERE __traced) AS traced,
                       list(__rn) FILTER (WHERE __status NOT IN ({kept})) AS removed,
                       min(__rn, {PROBLEM_ROWS_SHOWN}) FILTER (WHERE __reason <> 0) AS problems,
                       {invalid}
                    FROM ({classified}) c GROUP BY __status""",
                src,
            )
            counts = TableCounts()
            removed: list[np.ndarray] = []
            problems: list[int] = []
            reasons = [r for r in Reason if r != Reason.VALID]
            for i in range(stats.num_rows):
                row = {c: stats.column(c)[i] for c in ("__status", "n", "pk", "pr", "traced", "problems")}
                st = Status(int(row["__status"].as_py()))
                n = int(row["n"].as_py())
                people = int((row["pk"] if st.kept else row["pr"]).as_py() or 0)
                counts.rows_in += n
                counts.by_status[st] = [n, people]
                if st.kept:
                    counts.people_kept += people
                else:
                    counts.people_removed += people
                for r in reasons:
                    k = stats.column(f"r{int(r)}")[i].as_py()
                    if k:
                        counts.invalid[r.label] = counts.invalid.get(r.label, 0) + int(k)
                counts.traced += int(row["traced"].as_py() or 0)
                rem = stats.column("removed")[i]
                if rem.is_valid and len(rem):  # row numbers as an Arrow list: no Python ints
                    removed.append(rem.values.to_numpy(zero_copy_only=False).astype(np.int64, copy=False))
                probs = row["problems"].as_py()
                if probs:
                    problems.extend(int(p) for p in probs)
            counts.problem_rows = sorted(p + 1 for p in problems)[:PROBLEM_ROWS_SHOWN]
            rem_idx = np.concatenate(removed) if removed else np.empty(0, dtype=np.int64)
            counts.rows_out = counts.rows_in - int(rem_idx.size)
            self._masks[t.name] = _mask(counts.rows_in, rem_idx)
            self._expected[t.name] = counts.rows_out
            out[t.name] = counts
        return out

    # ------------------------------------------------------------------ writing

    def write(self, table: str, out_path: Path) -> int:
        src = self._sources[table]
        mask_name = f"__mask_{len(self._masks)}_{abs(hash(table))}"
        self.con.register(mask_name, pa.table({"__keep": self._masks[table]}))
        scan = src.scan_sql()
        query = f"SELECT t.* FROM {scan} t POSITIONAL JOIN {mask_name} m WHERE m.__keep"
        raw = out_path
        if src.format == "parquet":
            codec = (src.compression or "SNAPPY").upper()
            codec = codec if codec in _CODECS else "SNAPPY"
            opts = f"FORMAT parquet, COMPRESSION {codec}"
        else:
            post = src.encoding in ("latin-1", "utf-8-sig")
            if post:
                raw = out_path.with_name(out_path.name + ".utf8")
            opts = (
                f"FORMAT csv, HEADER true, DELIMITER {quote_literal(src.delimiter or ',')}, "
                f"QUOTE {quote_literal(src.quote or chr(34))}, ESCAPE {quote_literal(src.quote or chr(34))}, "
                f"NEW_LINE {quote_literal(src.newline or chr(10))}"
            )
        try:
            if src.format == "parquet" and not self._same_parquet_schema(src, out_path):
                n = self._write_arrow(query, src, out_path)
            else:
                n = self.con.execute(f"COPY ({query}) TO {quote_literal(raw)} ({opts})").fetchone()[0]
        except OSError as exc:
            raise output_error(exc, out_path) from None
        except duckdb.InterruptException:
            raise KeyboardInterrupt from None
        except RuntimeError as exc:
            if "interrupt" in str(exc).lower():
                raise KeyboardInterrupt from None
            raise
        except duckdb.Error as exc:
            text = str(exc)
            if str(raw) in text or "No space" in text or "File too large" in text or "write" in text.lower():
                raise output_error(exc, out_path) from None
            raise translate_duckdb_error(exc, src.path) from None
        finally:
            self.con.unregister(mask_name)
        if src.format == "csv" and raw != out_path:
            reencode(raw, out_path, src.encoding or "utf-8")
        if int(n) != self._expected[table]:
            raise OptoutError(
                f"internal check failed: {table} wrote {n} rows where {self._expected[table]} were expected",
                hint="this is a bug; nothing was released. Run again with --engine reference and report it",
            )
        return int(n)

    def _same_parquet_schema(self, src: TableSource, out_path: Path) -> bool:
        """Would DuckDB's own Parquet writer reproduce the source schema exactly?

        (It widens some types, e.g. millisecond timestamps to microseconds.)"""
        import pyarrow.parquet as pq

        probe = out_path.with_name(f".probe-{out_path.name}")
        try:
            self.con.execute(
                f"COPY (SELECT * FROM {src.scan_sql()} LIMIT 0) TO {quote_literal(probe)} (FORMAT parquet)"
            )
            return bool(pq.read_schema(probe).equals(pq.read_schema(src.path), check_metadata=False))
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def _write_arrow(self, query: str, src: TableSource, out_path: Path) -> int:
        """Stream the kept rows through Arrow and write them with the source's exact schema."""
        import pyarrow.parquet as pq

        schema = pq.read_schema(src.path)
        codec = (src.compression or "SNAPPY").lower()
        codec = {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)
        n = 0
        reader = self.con.sql(query).to_arrow_reader(1 << 17)
        with pq.ParquetWriter(out_path, schema, compression=codec) as w:
            for batch in reader:
                w.write_batch(batch if batch.schema.equals(schema) else batch.cast(schema))
                n += batch.num_rows
        return n


def _mask(n: int, removed: np.ndarray) -> pa.BooleanArray:
    """A bit-packed keep mask of ``n`` rows with ``removed`` row indexes cleared."""
    packed = np.full((n + 7) // 8, 0xFF, dtype=np.uint8)
    if removed.size:
        np.bitwise_and.at(packed, removed >> 3, np.invert(np.left_shift(1, removed & 7).astype(np.uint8)))
    return pa.BooleanArray.from_buffers(pa.bool_(), n, [None, pa.py_buffer(packed)])

"""The reference engine: the rules of ``base.py`` written as plainly as possible, row by row.

Pure Python over the whole table in memory: for tests and small extracts only. It is the
executable specification the DuckDB engine is checked against (tests/generative).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from optout.errors import InputError, Location
from optout.nhs_number import parse
from optout.release.engines.base import (
    PROBLEM_ROWS_SHOWN,
    Engine,
    Lists,
    ProgressFn,
    Status,
    TableCounts,
)
from optout.release.plan import PlannedTable, ReleasePlan
from optout.tables import TableSource

__all__ = ["ReferenceEngine"]


def _key(value: Any) -> str | None:
    """Link/trace keys are compared as text; an empty value is no key."""
    if value is None:
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text or None


def _read_rows(src: TableSource) -> tuple[list[str], list[list[Any]]]:
    if src.format == "parquet":
        table = pq.read_table(src.path)
        cols = table.column_names
        data = [table.column(c).to_pylist() for c in cols]
        return cols, [list(r) for r in zip(*data, strict=True)] if data else []
    enc = "utf-8-sig" if src.encoding in ("utf-8", "utf-8-sig") else "latin-1"
    with src.path.open("r", encoding=enc, newline="") as fh:
        reader = csv.reader(fh, delimiter=src.delimiter or ",", quotechar=src.quote or '"', strict=True)
        try:
            header = next(reader)
            rows: list[list[Any]] = []
            for i, r in enumerate(reader, start=1):
                if len(r) != len(header):
                    raise InputError(
                        f"{src.path.name}: a row has {len(r)} fields where the header has {len(header)}",
                        where=Location(file=src.path, row=i, value_class="ragged row"),
                        hint="fix that row",
                    )
                rows.append([v if v != "" else None for v in r])
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InputError(
                f"{src.path.name} could not be parsed ({exc.__class__.__name__})",
                where=Location(file=src.path),
                hint="check the file's delimiter, quoting and encoding",
            ) from None
    return [c.strip() for c in header], rows


class ReferenceEngine(Engine):
    name = "reference"

    def __init__(self, *, memory_limit: str | None = None, temp_dir: Path | None = None) -> None:
        super().__init__(memory_limit=memory_limit, temp_dir=temp_dir)
        self._kept: dict[str, list[int]] = {}
        self._sources: dict[str, TableSource] = {}
        # (table, parent column) -> key -> (all rows kept and one person, that person)
        self._keys: dict[tuple[str, str], dict[str, tuple[bool, int | None]]] = {}

    def classify(
        self, plan: ReleasePlan, lists: Lists, progress: ProgressFn | None = None
    ) -> dict[str, TableCounts]:
        allow = set(lists.allow.tolist())
        cohort = set(lists.cohort.tolist()) if lists.cohort is not None else None
        trace: dict[str, int | None] = {}
        if plan.trace is not None:
            cols, rows = _read_rows(plan.trace.source)
            ki, ni = cols.index(plan.trace.key_column), cols.index(plan.trace.nhs_column)
            seen: dict[str, list[int | None]] = {}
            for r in rows:
                k = _key(r[ki])
                if k is not None:
                    seen.setdefault(k, []).append(parse(r[ni]).value)
            for k, nums in seen.items():
                # fail closed: an id with an invalid entry, or two different numbers, traces to nobody
                ok = all(n is not None for n in nums) and len(set(nums)) == 1
                trace[k] = nums[0] if ok else None
        out: dict[str, TableCounts] = {}
        for t in plan.tables:
            if progress:
                progress(t.name, "checking")
            out[t.name] = self._classify_table(t, plan, allow, cohort, trace)
        return out

    def _classify_table(
        self,
        t: PlannedTable,
        plan: ReleasePlan,
        allow: set[int],
        cohort: set[int] | None,
        trace: dict[str, int | None],
    ) -> TableCounts:
        src = t.source
        self._sources[t.name] = src
        cols, rows = _read_rows(src)
        idx = {c: i for i, c in enumerate(cols)}
        parent_keys = (
            self._keys.get((t.link.parent, t.link.parent_column), {}) if t.link is not None else None
        )
        counts = TableCounts(rows_in=len(rows))
        kept_rows: list[int] = []
        people: dict[Status, set[int]] = {}
        child_keys: dict[str, dict[str, list[tuple[bool, int | None]]]] = {
            ch.parent_column: {} for ch in t.children
        }
        for rn, row in enumerate(rows):
            person: int | None = None
            if t.nhs_column is not None:
                p = parse(row[idx[t.nhs_column]], chi=t.chi)
                person = p.value
                if not p.ok:
                    counts.invalid[p.reason.label] = counts.invalid.get(p.reason.label, 0) + 1
                    if len(counts.problem_rows) < PROBLEM_ROWS_SHOWN:
                        counts.problem_rows.append(rn + 1)
                if p.ok:
                    status = self._by_number(person, allow, cohort)
                elif plan.unmatched == "release":
                    status = Status.KEPT_UNDER_REASON
                elif t.trace_key is not None:
                    person = trace.get(_key(row[idx[t.trace_key]]) or "")
                    if person is None:
                        status = Status.REMOVED_UNTRACED
                    else:
                        counts.traced += 1
                        status = self._by_number(person, allow, cohort)
                else:
                    status = Status.REMOVED_INVALID
            else:
                status = Status.KEPT_WITH_PARENT
            if t.link is not None and status.kept:
                assert parent_keys is not None
                k = _key(row[idx[t.link.child_column]])
                if k is None or k not in parent_keys:
                    status = Status.REMOVED_ORPHAN
                elif not parent_keys[k][0]:
                    status = Status.REMOVED_WITH_PARENT
                if t.nhs_column is None:
                    person = parent_keys[k][1] if k is not None and k in parent_keys else None
            elif t.link is not None and t.nhs_column is None:  # pragma: no cover - own status is kept
                person = None
            entry = counts.by_status.setdefault(status, [0, 0])
            entry[0] += 1
            if person is not None:
                people.setdefault(status, set()).add(person)
            if status.kept:
                kept_rows.append(rn)
            for ch in t.children:
                k = _key(row[idx[ch.parent_column]])
                if k is not None:
                    child_keys[ch.parent_column].setdefault(k, []).append((status.kept, person))
        for st, ppl in people.items():
            counts.by_status[st][1] = len(ppl)
        # table totals: the sum over reasons of each reason's distinct people (as the DuckDB engine)
        counts.people_kept = sum(len(p) for st, p in people.items() if st.kept)
        counts.people_removed = sum(len(p) for st, p in people.items() if not st.kept)
        counts.rows_out = len(kept_rows)
        self._kept[t.name] = kept_rows
        for col, keys in child_keys.items():
            summary: dict[str, tuple[bool, int | None]] = {}
            for k, entries in keys.items():
                persons = {p for _, p in entries if p is not None}
                ok = all(kept for kept, _ in entries) and len(persons) <= 1
                summary[k] = (ok, min(persons) if persons else None)
            self._keys[(t.name, col)] = summary
        return counts

    @staticmethod
    def _by_number(n: int | None, allow: set[int], cohort: set[int] | None) -> Status:
        if n is None:  # pragma: no cover - callers pass valid numbers
            return Status.REMOVED_INVALID
        if cohort is not None and n not in cohort:
            return Status.REMOVED_NOT_IN_COHORT
        return Status.KEPT if n in allow else Status.REMOVED_NOT_ON_LIST

    def write(self, table: str, out_path: Path) -> int:
        src = self._sources[table]
        kept = self._kept[table]
        if src.format == "parquet":
            data = pq.read_table(src.path)
            pq.write_table(data.take(pa.array(kept, type=pa.int64())), out_path)
            return len(kept)
        cols, rows = _read_rows(src)
        buf = io.StringIO()
        w = csv.writer(
            buf,
            delimiter=src.delimiter or ",",
            quotechar=src.quote or '"',
            lineterminator=src.newline or "\n",
        )
        w.writerow(cols)
        for i in kept:
            w.writerow(["" if v is None else v for v in rows[i]])
        enc = src.encoding or "utf-8"
        out_path.write_bytes(buf.getvalue().encode(enc))
        return len(kept)

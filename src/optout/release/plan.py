"""The release plan: which tables, where each one's NHS number is, how tables link, and what to do
with rows whose NHS number is missing or invalid.

Policy 001 §8.1: "the entire record, or records, associated with that individual must be fully
removed from the extract". A person's rows live in several tables, so every table must either
hold the NHS number itself or link (``--link child.col=parent.col``) to a table that does; a
child row goes out only when the parent row(s) it links to go out (fail closed: a child row whose
parent is missing is removed and counted as an orphan).

Policy 001 §8.2 (missing or inaccurate NHS numbers) is an explicit choice, ``unmatched``:

=========  =====================================================================================
fail       stop, nothing written; report counts per table and row numbers (the default)
withhold   remove those rows and count them (the opt-out cannot be checked, so fail closed)
trace      look the NHS number up from a local identifier in a trace index, then apply; rows
           still without a valid number are removed and counted
release    keep those rows, with the reason recorded in the manifest: ``disproportionate-effort``
           (§8.2 table, third row) or ``legally-restricted`` (§8.2: "no attempt should be made to
           re-identify the individual")
=========  =====================================================================================
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from optout.errors import InputError, Location, UsageError
from optout.tables import TableSource, open_table

__all__ = [
    "NHS_COLUMN_NAMES",
    "RELEASE_REASONS",
    "UNMATCHED_CHOICES",
    "Link",
    "PlannedTable",
    "ReleasePlan",
    "TraceIndex",
    "detect_nhs_column",
    "make_plan",
    "parse_link",
]

UNMATCHED_CHOICES = ("fail", "withhold", "trace", "release")
RELEASE_REASONS = ("disproportionate-effort", "legally-restricted")

# Column names taken to hold the NHS number, compared case-insensitively with "_", "-", " " and
# "." removed.
NHS_COLUMN_NAMES = (
    "nhs_number",
    "nhsnumber",
    "nhs_no",
    "nhsno",
    "nhs_num",
    "nhs",
    "nhs_id",
    "patient_nhs_number",
    "patient_nhs_no",
    "person_nhs_number",
    "nhs_number_value",
    "new_nhs_no",
    "nhsnum",
    "chi",
    "chi_number",
    "chi_no",
)
_NORMALISED = {n.replace("_", "") for n in NHS_COLUMN_NAMES}


def _norm_name(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in "_- .")


def detect_nhs_column(source: TableSource) -> str | None:
    """The table's NHS-number column by name; UsageError when more than one could be."""
    found = [c for c in source.columns if _norm_name(c) in _NORMALISED]
    if len(found) > 1:
        raise UsageError(
            f"{source.path.name} has more than one column that could hold the NHS number "
            f"({', '.join(found)})",
            where=Location(file=source.path),
            hint=f"say which with --nhs-column {source.name}=COLUMN",
        )
    return found[0] if found else None


@dataclass(frozen=True)
class Link:
    child: str
    child_column: str
    parent: str
    parent_column: str

    def __str__(self) -> str:
        return f"{self.child}.{self.child_column}={self.parent}.{self.parent_column}"


@dataclass
class TraceIndex:
    """A local identifier -> NHS number lookup (``--trace-index``), for ``--unmatched trace``."""

    source: TableSource
    key_column: str
    nhs_column: str


@dataclass
class PlannedTable:
    source: TableSource
    nhs_column: str | None = None
    chi: bool = False
    link: Link | None = None
    trace_key: str | None = None  # column of this table looked up in the trace index
    children: list[Link] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.name


@dataclass
class ReleasePlan:
    tables: list[PlannedTable]  # parents before children
    unmatched: str = "fail"
    release_reason: str | None = None
    trace: TraceIndex | None = None

    def table(self, name: str) -> PlannedTable:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def links(self) -> list[Link]:
        return [t.link for t in self.tables if t.link is not None]


def _suggest(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _split_table_column(text: str, tables: Sequence[str], what: str) -> tuple[str, str]:
    """ "table.column" where the table name itself may contain dots: longest known table wins."""
    for t in sorted(tables, key=len, reverse=True):
        if text.startswith(t + ".") and len(text) > len(t) + 1:
            return t, text[len(t) + 1 :]
    table = text.split(".", 1)[0]
    if "." not in text:
        raise UsageError(
            f"{what} {text!r} must be written TABLE.COLUMN",
            hint="e.g. --link episodes.patient_id=patients.patient_id",
        )
    raise UsageError(
        f"{what} names table {table!r}, which is not one of the tables given{_suggest(table, tables)}",
        hint=f"tables are named by their file's stem: {', '.join(tables)}",
    )


def parse_link(text: str, tables: Sequence[str]) -> Link:
    if text.count("=") != 1:
        raise UsageError(
            f"link {text!r} must be written child.column=parent.column",
            hint="e.g. --link episodes.patient_id=patients.patient_id",
        )
    left, right = (s.strip() for s in text.split("="))
    child, ccol = _split_table_column(left, tables, "link")
    parent, pcol = _split_table_column(right, tables, "link")
    if child == parent:
        raise UsageError(f"link {text!r} links a table to itself", hint="link a child table to its parent")
    return Link(child, ccol, parent, pcol)


def _parse_assignments(items: Mapping[str, str] | Sequence[str] | None, what: str) -> dict[str, str]:
    if not items:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(
                f"{what} {item!r} must be written TABLE=COLUMN", hint=f"e.g. {what} patients=nhs_no"
            )
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _require_column(source: TableSource, column: str, why: str) -> None:
    if column not in source.columns:
        raise InputError(
            f"{source.path.name} has no column {column!r} ({why}){_suggest(column, source.columns)}",
            where=Location(file=source.path, column=column),
            hint=f"its columns are: {', '.join(source.columns)}",
        )


def _open_trace_index(path: str | Path, **csv_options: str | None) -> TraceIndex:
    src = open_table(path, **csv_options)
    if len(src.columns) != 2:
        raise InputError(
            f"the trace index {src.path.name} must have exactly two columns (a local identifier and "
            f"the NHS number); it has {len(src.columns)}",
            where=Location(file=src.path),
            hint="export just the identifier column and the NHS-number column",
        )
    nhs = detect_nhs_column(src)
    if nhs is None:
        raise InputError(
            f"the trace index {src.path.name} has no NHS-number column (by name)",
            where=Location(file=src.path),
            hint="name its NHS-number column nhs_number",
        )
    key = next(c for c in src.columns if c != nhs)
    return TraceIndex(source=src, key_column=key, nhs_column=nhs)


def make_plan(
    tables: Sequence[str | Path | TableSource],
    *,
    nhs_columns: Mapping[str, str] | Sequence[str] | None = None,
    links: Sequence[str] = (),
    chi_columns: Sequence[str] = (),
    unmatched: str = "fail",
    trace_index: str | Path | None = None,
    trace_keys: Mapping[str, str] | Sequence[str] | None = None,
    release_reason: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    quote: str | None = None,
) -> ReleasePlan:
    """Open every table, find its NHS column or its link, and check the choices fit together.

    A table is a path (a file or a folder of part files) or a :class:`TableSource` already opened
    (the Spark engine opens URIs and catalog tables)."""
    if unmatched not in UNMATCHED_CHOICES:
        raise UsageError(
            f"--unmatched {unmatched!r} is not a choice{_suggest(unmatched, UNMATCHED_CHOICES)}",
            hint=f"choose one of: {', '.join(UNMATCHED_CHOICES)} (001 §8.2)",
        )
    if unmatched == "release":
        if release_reason not in RELEASE_REASONS:
            raise UsageError(
                "--unmatched release needs --reason disproportionate-effort or legally-restricted",
                hint="001 §8.2: rows without a usable NHS number may be released only when tracing "
                "them would be disproportionate, or when identifiers were removed by law",
            )
    elif release_reason is not None:
        raise UsageError(
            "--reason is only for --unmatched release", hint="drop --reason, or add --unmatched release"
        )
    if unmatched == "trace" and trace_index is None:
        raise UsageError(
            "--unmatched trace needs --trace-index FILE", hint="give the local id -> NHS number index"
        )
    if trace_index is not None and unmatched != "trace":
        raise UsageError("--trace-index is only for --unmatched trace", hint="add --unmatched trace")
    if not tables:
        raise UsageError("no tables given", hint="name one or more CSV or Parquet files")
    opts = {"encoding": encoding, "delimiter": delimiter, "quote": quote}
    sources: dict[str, TableSource] = {}
    for p in tables:
        src = p if isinstance(p, TableSource) else open_table(p, **opts)
        if src.name in sources:
            raise UsageError(
                f"two tables are both named {src.name!r} ({sources[src.name].path.name} and {src.path.name})",
                hint="tables are named by their file's stem: rename one file",
            )
        sources[src.name] = src
    names = list(sources)
    nhs_map = _parse_assignments(nhs_columns, "--nhs-column")
    for t, col in nhs_map.items():
        if t not in sources:
            raise UsageError(
                f"--nhs-column names table {t!r}, which is not one of the tables given{_suggest(t, names)}",
                hint=f"tables are named by their file's stem: {', '.join(names)}",
            )
        _require_column(sources[t], col, "given with --nhs-column")
    chi: set[str] = set()
    for item in chi_columns:
        t = item.split("=", 1)[0].strip()
        if t not in sources:
            raise UsageError(
                f"--chi names table {t!r}, which is not one of the tables given{_suggest(t, names)}",
                hint="give --chi TABLE for each table whose NHS-number column holds Scottish CHI numbers",
            )
        chi.add(t)
    planned: dict[str, PlannedTable] = {}
    for name, src in sources.items():
        found = nhs_map.get(name) or detect_nhs_column(src)
        planned[name] = PlannedTable(source=src, nhs_column=found, chi=name in chi)
    for text in links:
        link = parse_link(text, names)
        child, parent = planned[link.child], planned[link.parent]
        _require_column(child.source, link.child_column, f"named in --link {text}")
        _require_column(parent.source, link.parent_column, f"named in --link {text}")
        if child.link is not None:
            raise UsageError(
                f"table {link.child!r} is linked twice ({child.link} and {link})",
                hint="link each child table to one parent; chains (grandchild -> child -> parent) are fine",
            )
        child.link = link
        parent.children.append(link)
    for pt in planned.values():
        if pt.chi and pt.nhs_column is None:
            raise UsageError(
                f"--chi {pt.name}: that table has no NHS-number column",
                hint=f"name it with --nhs-column {pt.name}=COLUMN",
            )
        if pt.nhs_column is None and pt.link is None:
            raise UsageError(
                f"table {pt.name!r} has no NHS-number column and no link to a table that has one, so "
                "the records of people with an opt-out could not be removed from it (001 §8.1)",
                where=Location(file=pt.source.path),
                hint=f"name its NHS-number column with --nhs-column {pt.name}=COLUMN, or link it with "
                f"--link {pt.name}.COLUMN=PARENT.COLUMN; a table with no person data does not belong "
                "in this command",
            )
    ordered = _topological(planned)
    trace: TraceIndex | None = None
    if trace_index is not None:
        trace = _open_trace_index(trace_index, **opts)
        keys = _parse_assignments(trace_keys, "--trace-key")
        for tname, tcol in keys.items():
            if tname not in planned:
                raise UsageError(
                    f"--trace-key names table {tname!r}, which is not one of the tables given"
                    f"{_suggest(tname, names)}",
                    hint=f"tables are: {', '.join(names)}",
                )
            _require_column(planned[tname].source, tcol, "given with --trace-key")
        for pt in ordered:
            if pt.nhs_column is None:
                continue
            key: str | None = keys.get(pt.name)
            if key is None and trace.key_column in pt.source.columns:
                key = trace.key_column
            if key is None:
                raise UsageError(
                    f"table {pt.name!r}: which column holds the local identifier to trace by?",
                    hint=f"give --trace-key {pt.name}=COLUMN (the index's identifier column is "
                    f"{trace.key_column!r})",
                )
            pt.trace_key = key
    elif trace_keys:
        raise UsageError(
            "--trace-key is only for --unmatched trace", hint="add --unmatched trace --trace-index FILE"
        )
    return ReleasePlan(tables=ordered, unmatched=unmatched, release_reason=release_reason, trace=trace)


def _topological(planned: dict[str, PlannedTable]) -> list[PlannedTable]:
    out: list[PlannedTable] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        s = state.get(name, 0)
        if s == 2:
            return
        if s == 1:
            cycle = " -> ".join([*path[path.index(name) :], name])
            raise UsageError(
                f"the links form a loop ({cycle})",
                hint="links go from a child table to its parent; the top table must hold the NHS number",
            )
        state[name] = 1
        t = planned[name]
        if t.link is not None:
            visit(t.link.parent, [*path, name])
        state[name] = 2
        out.append(t)

    for name in planned:
        visit(name, [])
    return out

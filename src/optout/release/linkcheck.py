"""Linkage check: could records in one released file be re-identified through another?

Policy 001 §8.1 (last paragraphs): "If more than one file is to be released to another
organisation without the opt-out having been upheld (as a result of the statements or
exemptions in this policy) care must be taken to ensure that no common identifiers can be used
to re-identify records of individuals." Its example: one file anonymised in line with the ICO
code, a second not confidential but carrying patient identifiers; an identifier present in both
re-identifies the individual.

Two tests, both across *different* files (a file is never compared with itself):

1. **Identifier-like column names** (``shared-identifier``): the same kind of direct identifier
   (NHS number, CHI number, local patient id / hospital number, name, address, email, phone) in
   two or more files; or the quasi-identifier pair date of birth + postcode present in two or
   more files (``shared-quasi-identifiers``).
2. **Overlapping values** (``overlapping-values``): for every pair of high-cardinality columns in
   different files, the number of distinct values they have in common, computed in DuckDB
   (streaming, spills to a temporary folder, never loads a file whole into Python). A column is
   high-cardinality when it has at least ``min_distinct`` distinct non-empty values and at least
   ``min_uniqueness`` distinct values per non-empty row (an identifier repeated on every episode
   of a person still qualifies; a date-of-admission column in a large table does not). A pair is
   reported when the overlap is at least ``min_overlap`` distinct values. Values are compared
   as text after trimming, lower-casing and removing spaces and hyphens; values shorter than
   ``min_length`` characters (ages, scores, short codes: they coincide by chance) are ignored.

The report carries file names, column names and counts only, never a value from the files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from optout import atomic
from optout.errors import InputError, Location, UsageError

__all__ = [
    "DATA_SUFFIXES",
    "IDENTIFIER_KINDS",
    "ColumnStats",
    "Finding",
    "LinkReport",
    "identifier_kind",
    "linkcheck",
]

DATA_SUFFIXES = (".csv", ".parquet", ".pq", ".tsv", ".txt")

# kind -> (label, patterns over the normalised column name: lower case, letters and digits only)
IDENTIFIER_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "nhs-number": ("NHS number", (r"^nhs$", r"nhs(number|no|num|nbr)", r"^nhsn$")),
    "chi-number": ("CHI number", (r"^chi$", r"chi(number|no|num)")),
    "local-patient-id": (
        "local patient identifier",
        (
            r"localpatient(id|identifier|number|no)",
            r"^lpi$",
            r"^mrn$",
            r"medicalrecord(number|no)",
            r"hospital(number|no|id)",
            r"^(patient|person|client|serviceuser|resident)(id|identifier|number|no|ref|reference)$",
            r"^pas(id|number|no)$",
            r"casenote(number|no)",
            r"^(crn|urn|rxn)$",
        ),
    ),
    "name": (
        "name",
        (r"^(fore|sur|first|last|family|given|full|middle)names?$", r"^(patient|person)name$", r"^name$"),
    ),
    "address": ("address", (r"address", r"^addr\d*$", r"^street$")),
    "email": (
        "email address",
        (
            r"^e?mail(address)?$",
            r"^email",
        ),
    ),
    "phone": ("telephone number", (r"(tele)?phone", r"^mobile(number|no)?$", r"^tel(no|number)?$")),
    # quasi-identifiers: reported only when both appear in each of two files
    "date-of-birth": ("date of birth", (r"^dob$", r"dateofbirth", r"birth(date|dt)", r"^dtofbirth$")),
    "postcode": ("postcode", (r"post(al)?code", r"^pcode$", r"^zip(code)?$")),
}
QUASI_KINDS = ("date-of-birth", "postcode")

_COMPILED = {kind: [re.compile(p) for p in pats] for kind, (_label, pats) in IDENTIFIER_KINDS.items()}


def _norm_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def identifier_kind(column: str) -> str | None:
    """The identifier kind a column name suggests (``"nhs-number"``, ...), or None."""
    n = _norm_name(column)
    if not n:
        return None
    for kind, patterns in _COMPILED.items():
        if any(p.search(n) for p in patterns):
            return kind
    return None


@dataclass(frozen=True)
class ColumnStats:
    file: str
    column: str
    non_empty: int
    distinct: int
    high_cardinality: bool
    identifier_kind: str | None


@dataclass(frozen=True)
class Finding:
    kind: str  # shared-identifier | shared-quasi-identifiers | overlapping-values
    message: str
    columns: list[tuple[str, str]]  # (file, column)
    overlap: int | None = None  # distinct values in common (overlapping-values only)
    distinct: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["columns"] = [{"file": f, "column": c} for f, c in self.columns]
        return d


@dataclass
class LinkReport:
    files: list[str]
    columns: list[ColumnStats]
    findings: list[Finding]
    settings: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "optout-linkcheck/1",
            "ok": self.ok,
            "files": self.files,
            "settings": self.settings,
            "findings": [f.to_dict() for f in self.findings],
            "columns": [asdict(c) for c in self.columns],
        }

    def render(self) -> str:
        lines = [f"linkage check over {len(self.files)} file(s): " + ", ".join(self.files)]
        if len(self.files) < 2:
            lines.append("only one file: nothing to compare across files")
        if self.ok:
            lines.append("no common identifiers found (001 §8.1)")
        else:
            lines.append(f"{len(self.findings)} possible link(s) between files (001 §8.1):")
            for f in self.findings:
                lines.append(f"  - [{f.kind}] {f.message}")
        return "\n".join(lines)


def _expand(inputs: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                q
                for q in p.rglob("*")
                if q.is_file() and q.suffix.lower() in DATA_SUFFIXES and not q.name.startswith(".")
            )
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(
                f"no such file or folder: {p.name}",
                where=Location(file=p),
                hint="give the release folder, or the data files in it (CSV or Parquet)",
            )
    seen: set[Path] = set()
    unique = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(p)
    return unique


def _label(paths: Sequence[Path]) -> list[str]:
    """Short, unique display names (the file name, or more of the path when names clash)."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _open(con: Any, path: Path, view: str) -> list[str]:
    import duckdb

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            rel = con.read_parquet(str(path))
        else:
            rel = con.read_csv(str(path), header=True, all_varchar=True)
        rel.create_view(view)
        return [str(c) for c in rel.columns]
    except duckdb.Error as exc:
        kind = "Parquet" if suffix in (".parquet", ".pq") else "CSV"
        raise InputError(
            f"cannot read {path.name} as {kind} for the linkage check ({exc.__class__.__name__})",
            where=Location(file=path),
            hint="check the file is a complete CSV with a header row (UTF-8) or a Parquet file",
        ) from None


def _norm_sql(col: str, min_length: int) -> str:
    v = f"replace(replace(lower(trim(CAST({_quote(col)} AS VARCHAR))), ' ', ''), '-', '')"
    return f"(CASE WHEN length({v}) >= {int(min_length)} THEN {v} END)"


def _materialise(con: Any, path: Path, i: int, cols: list[str], min_length: int) -> None:
    """One pass over the file: its comparable values, normalised, into a temporary table."""
    import duckdb

    select = ", ".join(f"{_norm_sql(c, min_length)} AS c{j}" for j, c in enumerate(cols)) or "1 AS c"
    try:
        con.execute(f"CREATE TEMP TABLE f{i} AS SELECT {select} FROM src{i}")
    except duckdb.Error as exc:
        raise InputError(
            f"cannot read {path.name} for the linkage check ({exc.__class__.__name__})",
            where=Location(file=path),
            hint="check the file is a complete CSV with a header row (UTF-8) or a Parquet file",
        ) from None


def linkcheck(
    inputs: Iterable[str | Path],
    *,
    min_distinct: int = 20,
    min_uniqueness: float = 0.05,
    min_overlap: int = 5,
    min_length: int = 4,
    ignore: Sequence[str] = (),
    memory_limit: str | None = None,
) -> LinkReport:
    """Check files (or folders of CSV/Parquet files) for common identifiers across files.

    ``ignore``: columns to leave out, as ``COLUMN`` (in every file) or ``FILE:COLUMN`` (file
    name as shown in the report), compared without case; e.g. a row counter that coincides with
    another file's numbers by construction. They are listed in the report's settings.
    """
    if min_distinct < 1 or min_overlap < 1 or min_length < 1 or not (0.0 <= min_uniqueness <= 1.0):
        raise UsageError(
            "linkage check thresholds out of range",
            hint="use --min-distinct >= 1, --min-overlap >= 1, --min-length >= 1 and "
            "0 <= --min-uniqueness <= 1",
        )
    paths = _expand(inputs)
    if not paths:
        raise InputError(
            "no data files to check (looked for " + ", ".join(DATA_SUFFIXES) + ")",
            hint="give the release folder, or the data files in it",
        )
    labels = _label(paths)
    settings = {
        "min_distinct": min_distinct,
        "min_uniqueness": min_uniqueness,
        "min_overlap": min_overlap,
        "min_length": min_length,
        "ignore": sorted(ignore),
    }

    import duckdb

    with atomic.private_tempdir("optout-linkcheck-") as tmp:  # 0700; a crash's is swept next run
        con = duckdb.connect(config={"temp_directory": str(tmp)})
        try:
            con.execute("SET enable_progress_bar = false")
            if memory_limit:
                con.execute(f"SET memory_limit = '{memory_limit}'")
            file_columns: list[list[str]] = []
            for i, p in enumerate(paths):
                cols = _open(con, p, f"src{i}")
                _materialise(con, p, i, cols, min_length)
                file_columns.append(cols)
            skip = {i.casefold() for i in ignore}
            ignored = {
                (i, j)
                for i, cols in enumerate(file_columns)
                for j, c in enumerate(cols)
                if c.casefold() in skip or f"{labels[i]}:{c}".casefold() in skip
            }
            stats, high = _column_stats(con, labels, file_columns, min_distinct, min_uniqueness, min_length)
            high = [h for h in high if h not in ignored]
            named = [
                [c for j, c in enumerate(cols) if (i, j) not in ignored]
                for i, cols in enumerate(file_columns)
            ]
            findings = _name_findings(labels, named)
            if len(paths) > 1 and high:
                findings += _overlap_findings(con, labels, file_columns, high, min_overlap, min_length, stats)
        finally:
            con.close()
    return LinkReport(files=labels, columns=stats, findings=findings, settings=settings)


def _column_stats(
    con: Any,
    labels: list[str],
    file_columns: list[list[str]],
    min_distinct: int,
    min_uniqueness: float,
    min_length: int,
) -> tuple[list[ColumnStats], list[tuple[int, int]]]:
    stats: list[ColumnStats] = []
    high: list[tuple[int, int]] = []
    for i, cols in enumerate(file_columns):
        if not cols:
            continue
        parts = [f"count(c{j}), count(DISTINCT c{j})" for j in range(len(cols))]
        row = con.execute(f"SELECT {', '.join(parts)} FROM f{i}").fetchone()
        assert row is not None
        for j, c in enumerate(cols):
            non_empty, distinct = int(row[2 * j]), int(row[2 * j + 1])
            is_high = distinct >= min_distinct and non_empty > 0 and distinct / non_empty >= min_uniqueness
            if is_high:
                high.append((i, j))
            stats.append(ColumnStats(labels[i], c, non_empty, distinct, is_high, identifier_kind(c)))
    return stats, high


def _name_findings(labels: list[str], file_columns: list[list[str]]) -> list[Finding]:
    findings: list[Finding] = []
    by_kind: dict[str, list[tuple[int, str]]] = {}
    for i, cols in enumerate(file_columns):
        for c in cols:
            k = identifier_kind(c)
            if k is not None:
                by_kind.setdefault(k, []).append((i, c))
    for kind, hits in by_kind.items():
        if kind in QUASI_KINDS:
            continue
        files = {i for i, _c in hits}
        if len(files) > 1:
            label = IDENTIFIER_KINDS[kind][0]
            where = ", ".join(f"{labels[i]}:{c}" for i, c in hits)
            findings.append(
                Finding(
                    "shared-identifier",
                    f"{label} column in {len(files)} files ({where})",
                    [(labels[i], c) for i, c in hits],
                )
            )
    quasi_files = [
        i
        for i in range(len(labels))
        if all(any(fi == i for fi, _c in by_kind.get(k, [])) for k in QUASI_KINDS)
    ]
    if len(quasi_files) > 1:
        quasi_cols: list[tuple[str, str]] = [
            (labels[i], c) for k in QUASI_KINDS for i, c in by_kind[k] if i in quasi_files
        ]
        findings.append(
            Finding(
                "shared-quasi-identifiers",
                "date of birth and postcode together in "
                f"{len(quasi_files)} files ({', '.join(labels[i] for i in quasi_files)})",
                quasi_cols,
            )
        )
    return findings


def _overlap_findings(
    con: Any,
    labels: list[str],
    file_columns: list[list[str]],
    high: list[tuple[int, int]],
    min_overlap: int,
    min_length: int,
    stats: list[ColumnStats],
) -> list[Finding]:
    files_with_high = {i for i, _j in high}
    if len(files_with_high) < 2:
        return []
    selects = [
        f"SELECT DISTINCT {i} AS f, {j} AS c, c{j} AS v FROM f{i} WHERE c{j} IS NOT NULL" for i, j in high
    ]
    con.execute(
        "CREATE TEMP TABLE vals AS SELECT * FROM ("
        + " UNION ALL ".join(selects)
        + ") WHERE v IS NOT NULL AND v <> ''"
    )
    rows = con.execute(
        """
        SELECT a.f, a.c, b.f, b.c, count(*) AS n
        FROM vals a JOIN vals b ON a.v = b.v AND a.f < b.f
        GROUP BY a.f, a.c, b.f, b.c
        HAVING count(*) >= ?
        ORDER BY n DESC, a.f, a.c, b.f, b.c
        """,
        [min_overlap],
    ).fetchall()
    distinct = {(s.file, s.column): s.distinct for s in stats}
    out = []
    for fa, ca, fb, cb, n in rows:
        a = (labels[fa], file_columns[fa][ca])
        b = (labels[fb], file_columns[fb][cb])
        da, db = distinct[a], distinct[b]
        share = n / max(1, min(da, db))
        out.append(
            Finding(
                "overlapping-values",
                f"{a[0]}:{a[1]} and {b[0]}:{b[1]} share {n} distinct values "
                f"({share:.0%} of the smaller column's {min(da, db)})",
                [a, b],
                overlap=int(n),
                distinct=[da, db],
            )
        )
    return out

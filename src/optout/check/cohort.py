"""Reading the cohort to check: NHS numbers from a CSV/Parquet column, a plain list, or a ``.dat``.

Every value is normalised and validated (``optout.nhs_number``). Invalid values are *withheld*
— never sent, since one invalid number makes the service reject the whole file — and reported by
class ("bad check digit", "wrong length", ...) and row, never by value. Valid numbers are
de-duplicated and sorted: that is what is sent.

Fail closed: a withheld row's person is not in the cleaned list that comes back, so their records
are withheld from the release too (an invalid NHS number is "inaccurate" in 001 §8.2's sense: fix
it at the source and check again).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from optout.dat import sorted_unique
from optout.digest import sha256_file
from optout.errors import InputError, Location, UsageError
from optout.nhs_number import Reason, parse_array

__all__ = ["Cohort", "InvalidClass", "cohort_from_numbers", "read_cohort"]

MAX_ROWS_SHOWN = 10
_NHS_COLUMN_NAMES = ("nhs_number", "nhsnumber", "nhs_no", "nhsno", "nhs", "nhs_num", "nhs number")
_LIST_SUFFIXES = (".dat", ".lst", ".list")


@dataclass(frozen=True)
class InvalidClass:
    """Rows withheld for one reason: how many, and the first few row numbers (never the values)."""

    reason: str
    count: int
    rows: list[int]  # 1-based data rows (header not counted), at most MAX_ROWS_SHOWN

    def describe(self) -> str:
        shown = ", ".join(str(r) for r in self.rows)
        more = f" and {self.count - len(self.rows)} more" if self.count > len(self.rows) else ""
        noun = "row" if self.count == 1 else "rows"
        return f"{self.reason}: {self.count} {noun} ({noun} {shown}{more})"


@dataclass(frozen=True)
class Cohort:
    """The people to check: sorted unique valid numbers plus what was withheld and why."""

    numbers: np.ndarray  # sorted unique int64: what is sent
    source: str  # file name (for messages)
    column: str | None
    rows: int  # data rows read
    duplicates: int  # valid rows dropped as repeats of an earlier row
    invalid: list[InvalidClass] = field(default_factory=list)
    file_sha256: str | None = None

    @property
    def withheld(self) -> int:
        return sum(c.count for c in self.invalid)

    @property
    def size(self) -> int:
        return int(self.numbers.shape[0])

    def summary(self) -> dict[str, Any]:
        """Counts only (safe for the audit trail and reports)."""
        return {
            "source": self.source,
            "column": self.column,
            "rows": self.rows,
            "valid_unique": self.size,
            "duplicates": self.duplicates,
            "withheld_invalid": self.withheld,
            "invalid_by_class": {c.reason: c.count for c in self.invalid},
        }

    def describe_withheld(self) -> str:
        if not self.invalid:
            return ""
        noun = "row" if self.withheld == 1 else "rows"
        head = (
            f"{self.withheld} {noun} of {self.source} withheld (not sent: one invalid NHS number makes "
            "the service reject the whole file; these people are treated as not cleared):"
        )
        return "\n".join([head, *("  " + c.describe() for c in self.invalid)])

    def require_something_to_send(self) -> None:
        """Empty or 100 % invalid cohorts are refused before anything is sent (exit 3)."""
        if self.size:
            return
        if self.rows == 0:
            raise InputError(
                f"{self.source} holds no NHS numbers: nothing to check",
                where=Location(file=self.source, column=self.column),
                hint="give the cohort file with one NHS number per row (and --column for a table)",
            )
        detail = "; ".join(c.describe() for c in self.invalid)
        raise InputError(
            f"none of the {self.rows} rows of {self.source} holds a valid NHS number, so nothing was "
            f"sent ({detail})",
            where=Location(file=self.source, column=self.column),
            hint="check --column names the NHS number column (use --chi for Scottish CHI numbers); "
            "`optout nhs-number check` shows what is wrong with each row",
        )


def _classify(values: np.ndarray, reasons: np.ndarray) -> tuple[np.ndarray, int, list[InvalidClass]]:
    ok = reasons == 0
    valid = values[ok]
    unique = sorted_unique(valid)
    invalid: list[InvalidClass] = []
    for code in np.flatnonzero(np.bincount(reasons[~ok], minlength=1)).tolist():
        idx = np.flatnonzero(reasons == code)
        invalid.append(
            InvalidClass(
                reason=Reason(int(code)).label,
                count=int(idx.size),
                rows=[int(i) + 1 for i in idx[:MAX_ROWS_SHOWN]],
            )
        )
    return unique.astype(np.int64), int(valid.size - unique.size), invalid


def cohort_from_numbers(values: Any, *, source: str = "cohort", chi: bool = False) -> Cohort:
    """A cohort from values in memory (ints or strings), validated like a file's."""
    arr = values if isinstance(values, (np.ndarray, pa.Array, pa.ChunkedArray)) else pa.array(list(values))
    vals, reasons = parse_array(arr, chi=chi)
    numbers, dups, invalid = _classify(vals, reasons)
    return Cohort(numbers, source, None, int(reasons.shape[0]), dups, invalid)


def _is_plain_list(path: Path, head: bytes) -> bool:
    """A headerless list (``.dat``, or a first line that is already a number)."""
    if path.suffix.lower() in _LIST_SUFFIXES:
        return True
    first = head.lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip().rstrip(b",").replace(b" ", b"")
    return first.isdigit()


def _read_plain_list(path: Path, data: bytes) -> pa.Array:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a final newline is not a row
    for i, line in enumerate(lines, start=1):
        if "," in line.strip().rstrip(","):
            raise InputError(
                f"{path.name} looks like a table (line {i} has more than one field)",
                where=Location(file=path, line=i),
                hint="give a CSV with a header line and --column NAME, or one NHS number per line",
            )
    return pa.array([line.strip().rstrip(",").strip() for line in lines], type=pa.string())


def _choose_column(columns: list[str], column: str | None, path: Path) -> str:
    if column is not None:
        return column
    if len(columns) == 1:
        return columns[0]
    by_key = {c.strip().lower().replace("-", "_"): c for c in columns}
    for name in _NHS_COLUMN_NAMES:
        if name in by_key:
            return by_key[name]
    raise UsageError(
        f"which column of {path.name} holds the NHS numbers?",
        hint=f"give --column NAME, one of: {', '.join(columns)}",
    )


def read_cohort(
    path: str | Path,
    *,
    column: str | None = None,
    chi: bool = False,
    encoding: str | None = None,
    delimiter: str | None = None,
) -> Cohort:
    """Read, normalise and validate a cohort file (CSV/Parquet column, plain list or ``.dat``)."""
    from optout import tables

    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path.name} does not exist" if not path.exists() else f"{path.name} is not a file",
            where=Location(file=path),
            hint="check the cohort file name",
        )
    try:
        with path.open("rb") as fh:
            data_head = fh.read(1 << 16)
    except OSError as exc:
        raise InputError(
            f"cannot read {path.name}: {exc.strerror}",
            where=Location(file=path),
            hint="check your account may read the file",
        ) from None
    file_sha = sha256_file(path)
    is_parquet = data_head[:4] == b"PAR1" or path.suffix.lower() in tables.PARQUET_SUFFIXES
    if not is_parquet and column is None and _is_plain_list(path, data_head):
        arr: pa.Array | pa.ChunkedArray = _read_plain_list(path, path.read_bytes())
        used: str | None = None
    elif not is_parquet and not data_head.strip():
        arr, used = pa.array([], type=pa.string()), None
    else:
        source = tables.open_table(path, encoding=encoding, delimiter=delimiter)
        used = _choose_column(list(source.columns), column, path)
        arr = tables.read_column(source, used)
    vals, reasons = parse_array(arr, chi=chi)
    numbers, dups, invalid = _classify(vals, reasons)
    return Cohort(numbers, path.name, used, int(reasons.shape[0]), dups, invalid, file_sha)

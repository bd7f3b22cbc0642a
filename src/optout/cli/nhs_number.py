"""``optout nhs-number check``: counts of valid and invalid NHS numbers in a column, by reason and
by issuing range, and the row numbers of the problems. Never prints a number."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from optout.errors import InputError, Location, UsageError

ROWS_SHOWN = 50  # row numbers listed per reason class

nhs_app = typer.Typer(
    name="nhs-number",
    help="NHS numbers: check a column before submitting it or applying opt-outs.",
    no_args_is_help=True,
)


def _dat_values(path: Path) -> list[str | None]:
    """A .dat cohort/cleaned list: one number per line, each followed by a comma."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read {path.name}: {exc.strerror}", where=Location(file=path), hint="check the path"
        ) from None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.strip().removesuffix(",") or None for ln in lines]


def check_file(path: Path, *, column: str | None = None, chi: bool = False) -> dict[str, Any]:
    """The summary ``optout nhs-number check`` prints (counts and row numbers only)."""
    import numpy as np

    from optout.nhs_number import Range, Reason, parse_array, range_codes
    from optout.release.plan import detect_nhs_column
    from optout.tables import open_table, read_column

    if path.suffix.lower() == ".dat":
        if column is not None:
            raise UsageError("a .dat file has no columns", hint="leave out --column")
        values = parse_array(np.asarray(_dat_values(path), dtype=object), chi=chi)
        col_name = None
        first_row = 1
    else:
        src = open_table(path)
        if column is None:
            column = detect_nhs_column(src)
            if column is None and len(src.columns) == 1:
                column = src.columns[0]
            if column is None:
                raise UsageError(
                    f"which column of {path.name} holds the NHS number?",
                    hint=f"give --column (one of: {', '.join(src.columns)})",
                )
        values = parse_array(read_column(src, column), chi=chi)
        col_name = column
        first_row = 1
    nums, reasons = values
    total = int(reasons.size)
    valid_mask = reasons == 0
    by_reason: dict[str, dict[str, Any]] = {}
    for code in np.unique(reasons[~valid_mask]):
        idx = np.flatnonzero(reasons == code)
        by_reason[Reason(int(code)).label] = {
            "rows": int(idx.size),
            "row_numbers": [int(i) + first_row for i in idx[:ROWS_SHOWN]],
        }
    valid = nums[valid_mask]
    ranges = range_codes(valid)
    by_range = {Range(int(c)).label: int((ranges == c).sum()) for c in np.unique(ranges)}
    distinct = int(np.unique(valid).size)
    return {
        "file": path.name,
        "column": col_name,
        "chi": chi,
        "rows": total,
        "valid": int(valid_mask.sum()),
        "invalid": total - int(valid_mask.sum()),
        "distinct_valid": distinct,
        "duplicate_rows": int(valid.size) - distinct,
        "invalid_by_reason": by_reason,
        "valid_by_range": by_range,
    }


@nhs_app.command("check")
def check_cmd(
    file: Path = typer.Argument(..., metavar="FILE", help="A CSV, Parquet or .dat file."),
    column: str | None = typer.Option(
        None, "--column", metavar="C", help="The column to check (default: detected by name)."
    ),
    chi: bool = typer.Option(
        False, "--chi", help="The column holds Scottish CHI numbers (restore a lost leading zero)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Check a column of NHS numbers: counts per problem class and per range, and problem rows.

    Exit 0 when every value is a valid NHS number, 3 when some are not. Row numbers count data
    rows from 1 (the header is not counted). The numbers themselves are never printed.
    """
    summary = check_file(file, column=column, chi=chi)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(soft_wrap=True)
        console.print(
            f"{summary['file']}"
            + (f" column {summary['column']!r}" if summary["column"] else "")
            + f": {summary['rows']} rows, {summary['valid']} valid, {summary['invalid']} invalid, "
            f"{summary['duplicate_rows']} repeated valid numbers"
        )
        if summary["invalid_by_reason"]:
            t = Table(title="invalid NHS numbers")
            t.add_column("reason")
            t.add_column("rows", justify="right")
            t.add_column(f"row numbers (first {ROWS_SHOWN})")
            for label, d in summary["invalid_by_reason"].items():
                more = ", ..." if d["rows"] > len(d["row_numbers"]) else ""
                t.add_row(label, str(d["rows"]), ", ".join(map(str, d["row_numbers"])) + more)
            console.print(t)
        if summary["valid_by_range"]:
            r = Table(title="valid NHS numbers by issuing range")
            r.add_column("range")
            r.add_column("rows", justify="right")
            for label, n in summary["valid_by_range"].items():
                r.add_row(label, str(n))
            console.print(r)
    if summary["invalid"]:
        raise SystemExit(3)  # documented: 3 = some values are not valid NHS numbers


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(nhs_app, name="nhs-number")

"""The release report: rows and people kept and removed per table, and why.

Counts only, never a number or any other row value. For a report that leaves the organisation
(``report_for="external"``) every count from 1 to 4 is shown as ``"<5"`` (0 stays 0): small
numbers could let a recipient work out who has opted out (DEVELOPERS.md, security properties).
Row numbers of problem rows are shown only in internal reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["ReleaseReport", "TableReport", "suppress"]

REPORT_FORMAT = "optout-release-report/1"


def suppress(value: int) -> int | str:
    """001-style small-number suppression: 1..4 -> "<5"."""
    return "<5" if 0 < value < 5 else value


def _suppress_tree(obj: Any) -> Any:
    if isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return suppress(obj)
    if isinstance(obj, dict):
        return {k: _suppress_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_suppress_tree(v) for v in obj]
    return obj


@dataclass
class TableReport:
    name: str
    file: str
    format: str
    nhs_column: str | None
    link: str | None
    rows_in: int
    rows_out: int
    people_kept: int
    people_removed: int
    kept: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> {rows, people}
    removed: dict[str, dict[str, int]] = field(default_factory=dict)
    invalid_nhs_numbers: dict[str, int] = field(default_factory=dict)  # reason class -> rows
    problem_rows: list[int] = field(default_factory=list)
    traced_rows: int = 0

    @property
    def rows_removed(self) -> int:
        return self.rows_in - self.rows_out

    def to_dict(self, *, external: bool = False) -> dict[str, Any]:
        counts: dict[str, Any] = {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_removed": self.rows_removed,
            "people_kept": self.people_kept,
            "people_removed": self.people_removed,
            "kept": self.kept,
            "removed": self.removed,
            "invalid_nhs_numbers": self.invalid_nhs_numbers,
            "traced_rows": self.traced_rows,
        }
        out: dict[str, Any] = {
            "name": self.name,
            "file": self.file,
            "format": self.format,
            "nhs_column": self.nhs_column,
            "link": self.link,
        }
        if external:
            out.update(_suppress_tree(counts))
        else:
            out.update(counts)
            out["problem_rows"] = self.problem_rows
        return out


@dataclass
class ReleaseReport:
    """What ``apply_opt_outs`` did (or, with ``dry_run``, would do)."""

    release_id: str
    out_dir: str
    dry_run: bool
    created_at: datetime
    checked_at: datetime
    deadline: datetime
    check_source: str
    cleaned_list: str
    cleaned_list_sha256: str
    unmatched: str
    release_reason: str | None
    engine: str
    tables: list[TableReport]
    report_for: str = "internal"
    manifest_sha256: str | None = None
    cohort_known: bool = False
    # how the engine ran, e.g. spark: {"allow_list": "broadcast", ...}; never a value from a row
    engine_details: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_in(self) -> int:
        return sum(t.rows_in for t in self.tables)

    @property
    def rows_out(self) -> int:
        return sum(t.rows_out for t in self.tables)

    def table(self, name: str) -> TableReport:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_dict(self, *, report_for: str | None = None) -> dict[str, Any]:
        external = (report_for or self.report_for) == "external"
        return {
            "format": REPORT_FORMAT,
            "release_id": self.release_id,
            "out_dir": self.out_dir,
            "dry_run": self.dry_run,
            "report_for": "external" if external else "internal",
            "created_at": self.created_at.isoformat(),
            "checked_at": self.checked_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "check_source": self.check_source,
            "cleaned_list": self.cleaned_list,
            "cleaned_list_sha256": self.cleaned_list_sha256,
            "unmatched": self.unmatched,
            "release_reason": self.release_reason,
            "engine": self.engine,
            **({"engine_details": self.engine_details} if self.engine_details else {}),
            "manifest_sha256": self.manifest_sha256,
            "totals": _suppress_tree({"rows_in": self.rows_in, "rows_out": self.rows_out})
            if external
            else {"rows_in": self.rows_in, "rows_out": self.rows_out},
            "tables": [t.to_dict(external=external) for t in self.tables],
        }

    def to_json(self, *, report_for: str | None = None) -> str:
        return json.dumps(self.to_dict(report_for=report_for), indent=2, sort_keys=False) + "\n"

    def write(self, path: str | Path, *, report_for: str | None = None) -> None:
        from optout.release.manifest import atomic_write_bytes

        atomic_write_bytes(Path(path), self.to_json(report_for=report_for).encode("utf-8"))

    def render(self, console: Any | None = None, *, report_for: str | None = None) -> None:
        """A Rich table per release (stdout by default)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        d = self.to_dict(report_for=report_for)
        title = "optout apply" + (" (dry run: nothing written)" if self.dry_run else f" -> {self.out_dir}")
        tbl = Table(title=title)
        for col in ("table", "rows in", "rows out", "people kept", "people removed"):
            tbl.add_column(col, justify="left" if col == "table" else "right")
        for t in d["tables"]:
            tbl.add_row(
                t["name"],
                str(t["rows_in"]),
                str(t["rows_out"]),
                str(t["people_kept"]),
                str(t["people_removed"]),
            )
        console.print(tbl)
        why = Table(title="why rows stay or go")
        for col in ("table", "outcome", "reason", "rows", "people"):
            why.add_column(col, justify="right" if col in ("rows", "people") else "left")
        for t in d["tables"]:
            for outcome in ("kept", "removed"):
                for reason, c in t[outcome].items():
                    why.add_row(t["name"], outcome, reason, str(c["rows"]), str(c["people"]))
        console.print(why)
        console.print(
            f"checked {d['checked_at']} ({d['check_source']}); disclose by {d['deadline']} (001 §8.4); "
            f"unmatched NHS numbers: {d['unmatched']}"
            + (f" ({d['release_reason']})" if d["release_reason"] else "")
        )
        if self.engine_details.get("allow_list"):  # how a distributed engine ran (spark)
            console.print(
                f"engine {self.engine}: allow-list {self.engine_details['allow_list']}"
                + (f" on {self.engine_details['master']}" if self.engine_details.get("master") else "")
            )
        for t in d["tables"]:
            if t["invalid_nhs_numbers"]:
                classes = ", ".join(f"{k} {v}" for k, v in t["invalid_nhs_numbers"].items())
                rows = t.get("problem_rows")
                extra = f"; first rows: {', '.join(map(str, rows))}" if rows else ""
                console.print(f"{t['name']}: missing/invalid NHS numbers: {classes}{extra}")

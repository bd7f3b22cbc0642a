"""``optout collect``: the registry collection gate (policy 000, CRANE)."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def collect_cmd(
    submission: Path = typer.Argument(..., metavar="SUBMISSION", help="The submission (CSV or Parquet)."),
    profile: str = typer.Option(
        ..., "--profile", metavar="crane|PATH", help="A shipped profile name (crane) or a profile YAML file."
    ),
    cleaned_list: Path = typer.Option(
        ...,
        "--cleaned-list",
        metavar="FILE",
        help="The cleaned list (allow-list) the national check service returned for these children.",
    ),
    out: Path | None = typer.Option(
        None, "--out", metavar="FILE", help="Where to write what the registry may record (.csv or .parquet)."
    ),
    checked_at: str | None = typer.Option(
        None, "--checked-at", metavar="TIME", help="When the cleaned list was checked (if it has no sidecar)."
    ),
    cohort: Path | None = typer.Option(
        None, "--cohort", metavar="FILE", help="The cohort that was submitted for checking (.dat or CSV)."
    ),
    report: Path | None = typer.Option(
        None, "--report", metavar="FILE", help="Where to write the JSON report (default: OUT.report.json)."
    ),
    report_for: str = typer.Option(
        "internal", "--report-for", help="internal (exact counts) or external (counts 1-4 shown as <5)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count outcomes only; write nothing."),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Filter a registry submission: opted out -> nothing; consent No -> registry minimum dataset only.

    Policy 000 (CRANE): a child not on the cleaned list (national data opt-out) has no data
    recorded at all, registry or audit; a child whose consent status is not an explicit Yes keeps
    only the registry minimum dataset collected under s251 (audit fields left blank, so the file
    keeps its columns); consent Yes keeps everything. A row whose NHS number is missing or invalid
    cannot be checked, so nothing of it is kept: the report gives its row number to fix.
    Withdrawal of consent (status 'No') applies from the next submission. Every run is recorded in
    the audit trail (counts only).
    """
    from optout.registry.gate import collect

    rep = collect(
        submission,
        profile=profile,
        out=out,
        cleaned_list=cleaned_list,
        checked_at=checked_at,
        cohort=cohort,
        report_path=report,
        report_for=report_for,
        force=force,
        dry_run=dry_run,
    )
    if as_json:
        typer.echo(json.dumps(rep.to_dict(report_for=report_for), indent=2))
    else:
        typer.echo(rep.describe(report_for=report_for))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("collect")(collect_cmd)

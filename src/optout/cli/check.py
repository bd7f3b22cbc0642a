"""``optout check``: the one-off cleaned list (001 §8, first way of using the check service).

optout check COHORT --out cleaned.dat [--column COL] [--wait 2h | --no-wait]
optout check --collect LOCALID [--wait 10m]
optout check --resume LOCALID [--wait 2h]
optout check --list
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from optout.errors import UsageError


def _echo_result(res: Any, *, as_json: bool) -> None:
    from optout.check.state import iso

    if as_json:
        typer.echo(json.dumps(res.to_dict(), indent=2))
        return
    if res.cohort is not None:
        c = res.cohort
        typer.echo(
            f"cohort {c.source}: {c.rows} rows, {c.size} distinct valid NHS numbers"
            + (f", {c.duplicates} repeats dropped" if c.duplicates else "")
        )
        if c.invalid:
            typer.echo(c.describe_withheld(), err=True)
    if res.state == "collected":
        what = "temporary cache refreshed" if res.mode == "cache" else f"cleaned list written to {res.out}"
        typer.echo(
            f"{res.local_id}: {what}: {res.returned_count} of {res.sent_count} may be released "
            f"(checked {iso(res.checked_at)}; disclose by {iso(res.deadline)}, 001 §8.4)"
        )
        if res.mode == "one-off" and res.out is not None:
            typer.echo(f"next: optout apply TABLE... --cleaned-list {res.out} --out DIR")
    else:
        typer.echo(f"{res.local_id}: sent ({res.sent_count} NHS numbers), state {res.state}")
        typer.echo(f"collect the reply later with: optout check --collect {res.local_id}")
    for w in res.warnings:
        typer.echo(f"warning: {w}", err=True)


def _wait(wait: str | None, no_wait: bool, default: str | None) -> Any:
    from datetime import timedelta

    from optout.check import parse_duration

    if no_wait and wait is not None:
        raise UsageError("--wait and --no-wait contradict each other", hint="give one of them")
    if no_wait:
        return None
    text = wait if wait is not None else default
    return timedelta(0) if text is None else parse_duration(text)


def check_cmd(
    cohort: Path | None = typer.Argument(
        None,
        metavar="COHORT",
        help="The NHS numbers to check: a CSV/Parquet table (with --column), a plain list, or a .dat.",
    ),
    out: Path | None = typer.Option(
        None, "--out", metavar="FILE", help="Where to write the cleaned list (.dat) and FILE.json."
    ),
    column: str | None = typer.Option(
        None, "--column", metavar="COL", help="The NHS-number column of a table (else detected by name)."
    ),
    chi: bool = typer.Option(
        False, "--chi", help="The numbers are Scottish CHI numbers (leading zero kept)."
    ),
    wait: str | None = typer.Option(
        None,
        "--wait",
        metavar="DURATION",
        help="How long to wait for the reply, e.g. 2h, 30m, 90s (default 2h; with --collect, 0: look once).",
    ),
    no_wait: bool = typer.Option(False, "--no-wait", help="Send and return; collect later with --collect."),
    collect_id: str | None = typer.Option(
        None, "--collect", metavar="LOCALID", help="Collect the reply to a request sent earlier."
    ),
    resume_id: str | None = typer.Option(
        None,
        "--resume",
        metavar="LOCALID",
        help="Carry on with a request after a crash (sends it if it may not have gone out, then waits).",
    ),
    list_: bool = typer.Option(
        False,
        "--list",
        help="List the check requests made here (newest first), after discarding stale ones "
        "(unsent after a day, unanswered after a week) and removing leftover request files (audited).",
    ),
    subject: str | None = typer.Option(
        None, "--subject", metavar="TEXT", help="MESH Subject (letters, digits, - and _ only)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace --out if it exists."),
    chunk_size: int | None = typer.Option(
        None, "--chunk-size", metavar="BYTES", help="MESH chunk size (default 75 MB; MESH allows 100 MB)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check a cohort with the national opt-out service over MESH and write the cleaned list.

    Invalid NHS numbers are withheld and reported by class and row (one would make the service
    reject the whole file); the valid ones are de-duplicated and sent with a unique LocalID. The
    reply — the people WITHOUT an opt-out — is written atomically to --out with FILE.json
    (check time, LocalID, message ids, counts, SHA-256) for `optout apply`. Disclose within 20
    days of the check (001 §8.4). Exit 7 when no reply came within --wait; 3 when the cohort holds
    no valid number (nothing is sent then).
    """
    from optout import check

    chosen = [x for x in (cohort is not None, collect_id is not None, resume_id is not None, list_) if x]
    if len(chosen) != 1:
        raise UsageError(
            "give a COHORT to check, or one of --collect LOCALID, --resume LOCALID, --list",
            hint="e.g. `optout check cohort.csv --out cleaned.dat`",
        )
    progress = sys.stderr.isatty() and not as_json
    if list_:
        rows = check.list_requests()
        if as_json:
            typer.echo(json.dumps([r.to_dict() for r in rows], indent=2))
            return
        from optout.check.state import iso
        from optout.cli.flow import table

        typer.echo(
            table(
                ("LOCALID", "MODE", "STATE", "SENT", "RETURNED", "CHECKED (UTC)", "OUTPUT"),
                [
                    (
                        r.local_id,
                        r.mode,
                        r.state,
                        r.sent_count,
                        r.returned_count if r.returned_count is not None else "-",
                        iso(r.checked_at) if r.checked_at else "-",
                        r.out or ("cache" if r.mode == "cache" else "-"),
                    )
                    for r in rows
                ],
            )
            if rows
            else "no check requests yet"
        )
        return
    if collect_id is not None:
        res = check.collect(
            collect_id, wait=_wait(wait, no_wait, None), progress=progress, max_chunk_size=chunk_size
        )
    elif resume_id is not None:
        res = check.resume(
            resume_id, wait=_wait(wait, no_wait, "2h"), progress=progress, max_chunk_size=chunk_size
        )
    else:
        assert cohort is not None
        res = check.check_cohort(
            cohort,
            out=out,
            column=column,
            chi=chi,
            wait=_wait(wait, no_wait, "2h"),
            subject=subject,
            force=force,
            progress=progress,
            max_chunk_size=chunk_size,
        )
    _echo_result(res, as_json=as_json)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("check")(check_cmd)

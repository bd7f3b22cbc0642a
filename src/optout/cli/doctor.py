"""``optout doctor``: check this installation (file modes, key, cache, request files, audit trail,
database and MESH settings) and say how to fix each finding."""

from __future__ import annotations

import json

import typer


def doctor_cmd(
    expect_head: str | None = typer.Option(
        None,
        "--expect-head",
        metavar="HASH",
        help="An audit head hash kept earlier (from `optout audit verify` or evidence.json): a finding "
        "unless that entry is still in the trail.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check the installation and print each finding with how to fix it; exit 1 if there is any.

    Checks: OPTOUT_HOME and every file and folder in it owner-only (the reference service's
    register, request files, the cache, the sandbox's mailboxes, the metadata database); the cache
    key's mode and presence; the cache's age (001 §8.4); request files kept beyond their purpose;
    temporary folders left by a killed process; the audit trail's hash chain (and --expect-head);
    the database URL (PostgreSQL to another host needs TLS); MESH settings complete, https:// to a
    MESH server on another machine; no secret in optout.toml. Changes nothing; never prints a
    secret or an NHS number. Exit 0: no finding; 1: findings.
    """
    from optout import doctor
    from optout.text import mask, mask_nested

    report = doctor.run(expect_head=expect_head)
    if as_json:
        typer.echo(json.dumps(mask_nested(report.to_dict()), indent=2))
    else:
        typer.echo(mask(f"optout doctor: {report.home}"))
        for outcome in report.outcomes:
            status = "ok  " if outcome.ok else "FAIL"
            notes = "; ".join(outcome.notes)
            n = len(outcome.findings)
            tail = (f": {notes}" if notes else "") if outcome.ok else f" ({n} finding{'s' if n != 1 else ''})"
            typer.echo(mask(f"  {status}  {outcome.name:<9} {outcome.title}{tail}"))
        if report.ok:
            typer.echo("no findings: the installation is clean")
        else:
            n = len(report.findings)
            typer.echo(f"\n{n} finding{'s' if n != 1 else ''}:")
            for f in report.findings:
                typer.echo(mask(f"  [{f.severity}] {f.check}: {f.message}"))
                typer.echo(mask(f"      how to fix: {f.fix}"))
    if not report.ok:
        raise typer.Exit(report.exit_code)


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.command("doctor")(doctor_cmd)

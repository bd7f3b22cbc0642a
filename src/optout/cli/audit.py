"""``optout audit verify|export``: prove the audit trail is intact, and export evidence packs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

audit_app = typer.Typer(
    name="audit",
    help="The audit trail: verify the hash chain, export an evidence pack for the DSPT.",
    no_args_is_help=True,
)


@audit_app.command("verify")
def verify_cmd(
    expect_head: str | None = typer.Option(
        None,
        "--expect-head",
        metavar="HASH",
        help="A head hash exported earlier (by verify or in evidence.json): fail unless that entry is "
        "still in the trail, which shows that no entry was cut off the end.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check every entry of the audit trail; exit 8 naming the first bad entry if it was tampered with.

    A changed, deleted, inserted or reordered entry is reported with its seq and what is wrong:
    hash mismatch, broken link, gap in seq, out of order. When intact, prints the number of entries
    and the head hash (keep it to use with --expect-head later).
    """
    from optout import audit
    from optout.store import open_store

    v = audit.verify(open_store(), expect_head=expect_head)
    if as_json:
        typer.echo(json.dumps(v.to_dict(), indent=2))
        v.raise_if_broken()
        return
    if v.ok:
        typer.echo(v.describe())
        return
    for p in v.problems[1:10]:
        typer.echo(f"  also: seq {p.seq}: {p.kind}: {p.detail}", err=True)
    v.raise_if_broken()


@audit_app.command("export")
def export_cmd(
    start: str | None = typer.Option(
        None,
        "--from",
        metavar="DATE",
        help="First day (YYYY-MM-DD, UTC) or ISO time. Default: the day of the first entry.",
    ),
    end: str | None = typer.Option(
        None, "--to", metavar="DATE", help="Last day, included (YYYY-MM-DD, UTC) or ISO time. Default: today."
    ),
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="Folder to write evidence.json and evidence.html."
    ),
    report_for: str = typer.Option(
        "external",
        "--report-for",
        help="external (default): counts of people 1-4 shown as <5; internal: exact counts.",
    ),
    force: bool = typer.Option(False, "--force", help="Replace DIR if it exists and is not empty."),
) -> None:
    """Write an evidence pack (JSON + readable HTML) for the period, to attach to the DSPT.

    The pack holds the audit entries in the period, the result of verifying the whole trail and its
    head hash, counts by action, the releases and disclosures (with deadlines), checks and cache
    refreshes, and the register of data flows. Written atomically; the export is itself recorded
    in the audit trail.
    """
    from datetime import UTC, datetime

    from optout.audit import entries
    from optout.audit.evidence import export_evidence, parse_bound
    from optout.store import open_store

    store = open_store()
    if start is None:
        first = entries(store)[:1]
        start = first[0].at[:10] if first else datetime.now(UTC).date().isoformat()
    if end is None:
        end = datetime.now(UTC).date().isoformat()
    pack = export_evidence(
        store,
        start=parse_bound(start, option="--from"),
        end=parse_bound(end, option="--to", end=True),
        out_dir=out,
        report_for=report_for,
        force=force,
    )
    d = pack.data
    chain = "intact" if d["chain"]["ok"] else "NOT INTACT (see the report)"
    typer.echo(f"wrote {pack.json_path} and {pack.html_path}")
    typer.echo(
        f"{d['summary']['entries']} entries, {d['summary']['releases']} releases, "
        f"{d['summary']['disclosures']} disclosures; audit trail {chain}; head hash {d['head']['hash']}"
    )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(audit_app, name="audit")

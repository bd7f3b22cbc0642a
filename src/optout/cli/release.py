"""``optout release list|show|disclose|withdraw|linkcheck``: releases and disclosures."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from optout.cli.flow import table

if TYPE_CHECKING:
    from optout.release.lifecycle import Release

release_app = typer.Typer(
    name="release",
    help="Releases made by `optout apply`: deadlines, disclosure to the flow's recipient, withdrawal, "
    "and the linkage check for files released without the opt-out upheld.",
    no_args_is_help=True,
)


def _deadline_cell(rel: Release) -> str:
    return rel.deadline.strftime("%Y-%m-%d %H:%M") if rel.deadline else "-"


def _days_cell(rel: Release, now: datetime | None = None) -> str:
    left = rel.days_left(now)
    if left is None or rel.state(now) in ("disclosed", "withdrawn", "preparing", "failed"):
        return "-"
    if left < 0:
        return "expired"
    return str(int(left)) if left >= 1 else "<1"


@release_app.command("list")
def list_cmd(
    state: str | None = typer.Option(
        None,
        "--state",
        help="Only releases in this state now: preparing, prepared, disclosed, expired, withdrawn or "
        "failed (preparing: being made, or left by an interrupted apply; failed: its folder never "
        "appeared; neither can be disclosed).",
    ),
    flow_id: str | None = typer.Option(
        None, "--flow", metavar="ID", help="Only releases made for this flow."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List releases, newest first: state, flow, deadline and whole days left to disclose.

    First settles any release an interrupted `optout apply` left in state preparing: prepared when
    its folder is in place, failed when the folder never appeared (both recorded in the audit trail).
    """
    from optout.release.lifecycle import list_releases
    from optout.store import open_store

    rels = list_releases(open_store(), state=state, flow_id=flow_id)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rels], indent=2, default=str))
        return
    if not rels:
        typer.echo("no releases" + (f" in state {state}" if state else "") + "; `optout apply` makes them")
        return
    rows = [
        (
            r.id,
            r.state(),
            f"{r.flow_id} v{r.flow_version}" if r.flow_id else "-",
            r.check_source or "-",
            _deadline_cell(r),
            _days_cell(r),
            ", ".join(d.recipient for d in r.disclosures),
        )
        for r in rels
    ]
    typer.echo(table(("ID", "STATE", "FLOW", "CHECK", "DEADLINE (UTC)", "DAYS LEFT", "DISCLOSED TO"), rows))


@release_app.command("show")
def show_cmd(
    release_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a release: state, flow, check and deadline, files, disclosures and its audit entries."""
    from optout import audit
    from optout.errors import IntegrityError
    from optout.release.lifecycle import describe_deadline, get_release, manifest_files, read_manifest
    from optout.store import open_store
    from optout.text import mask  # audit entries written before the actor was guarded

    store = open_store()
    rel = get_release(store, release_id)
    files = []
    manifest_note = None
    try:
        manifest, sha = read_manifest(rel.out_dir or ".")
        files = manifest_files(manifest)
        if rel.manifest_sha256 and sha != rel.manifest_sha256:
            manifest_note = "the manifest has changed since the release was prepared"
    except IntegrityError as exc:
        manifest_note = exc.message
    entries = [e for e in audit.entries(store) if e.subject == rel.id]
    if as_json:
        out = rel.to_dict()
        out["files"] = [vars(f) for f in files]
        out["manifest_problem"] = manifest_note
        out["audit"] = [
            {"seq": e.seq, "at": e.at, "actor": mask(e.actor), "action": e.action} for e in entries
        ]
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    typer.echo(f"release {rel.id}: {rel.state()}")
    typer.echo(
        f"flow: {rel.flow_id} version {rel.flow_version}" if rel.flow_id else "flow: - (not tied to a flow)"
    )
    typer.echo(f"made: {rel.created_at[:19].replace('T', ' ')}")
    if rel.checked_at:
        typer.echo(f"checked: {rel.checked_at[:19].replace('T', ' ')} ({rel.check_source})")
    typer.echo(
        "deadline: "
        + (rel.deadline.strftime("%Y-%m-%d %H:%M UTC") if rel.deadline else "-")
        + f" ({describe_deadline(rel)})"
    )
    typer.echo(f"folder: {rel.out_dir}")
    if manifest_note:
        typer.echo(f"WARNING: {manifest_note}")
    for f in files:
        mark = "" if f.opt_out_upheld else f"  opt-out NOT upheld ({f.basis or 'reason not given'})"
        typer.echo(f"  {f.path}  sha256 {(f.sha256 or '?')[:16]}…{mark}")
    for d in rel.disclosures:
        typer.echo(f"disclosed to {d.recipient} at {d.disclosed_at[:19].replace('T', ' ')} by {d.actor}")
    failed = rel.details.get("failed")
    if rel.stored_state == "failed" and failed:
        typer.echo(f"failed at {failed.get('at', '')[:19]}: {failed.get('reason')}; it cannot be disclosed")
    if rel.stored_state == "preparing":
        typer.echo("not complete: its apply is still running or was interrupted; it cannot be disclosed")
    withdrawn = rel.details.get("withdrawn")
    if withdrawn:
        typer.echo(
            f"withdrawn at {withdrawn.get('at', '')[:19]} by {withdrawn.get('by')}: {withdrawn.get('reason')}"
        )
    if entries:
        typer.echo("audit trail:")
        for e in entries:
            typer.echo(f"  #{e.seq}  {e.at[:19].replace('T', ' ')}  {mask(e.actor)}  {e.action}")


@release_app.command("disclose")
def disclose_cmd(
    release_id: str = typer.Argument(..., metavar="ID"),
    to: str = typer.Option(..., "--to", metavar="RECIPIENT", help="Who receives it: the flow's recipient."),
    accept_link_risk: str | None = typer.Option(
        None,
        "--accept-link-risk",
        metavar="REASON",
        help="Disclose although the linkage check found common identifiers across files whose "
        "opt-out was not upheld; the reason is recorded in the audit trail.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Record that a release was disclosed, after checking it may be.

    Refused after the deadline (check + 20 days; cache + 13 days; 001 §8.4), when withdrawn, already
    disclosed, made for a flow that has changed since, or to anyone but the flow's recipient (onward
    sharing is a new release with a fresh check, 001 §8.3). The folder must still match its
    manifest (exit 8 otherwise). Files marked as not upheld are checked for common identifiers
    first (001 §8.1).
    """
    from optout.release.lifecycle import describe_deadline, disclose
    from optout.store import open_store

    result = disclose(open_store(), release_id, to=to, accept_link_risk=accept_link_risk)
    rel = result.release
    if as_json:
        out = {"release": rel.to_dict(), "disclosure": vars(result.disclosure)}
        if result.linkcheck is not None:
            out["linkcheck"] = result.linkcheck.to_dict()
        typer.echo(json.dumps(out, indent=2, default=str))
        return
    if result.linkcheck is not None:
        typer.echo(result.linkcheck.render())
    left = describe_deadline(rel, _parse(result.disclosure.disclosed_at))
    typer.echo(
        f"release {rel.id} disclosed to {result.disclosure.recipient} ({left} at disclosure); recorded"
    )
    typer.echo(f"send the files listed in {Path(rel.out_dir or '.') / 'release.json'} (not the report)")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


@release_app.command("withdraw")
def withdraw_cmd(
    release_id: str = typer.Argument(..., metavar="ID"),
    reason: str = typer.Option(..., "--reason", metavar="TEXT", help="Why (recorded in the audit trail)."),
) -> None:
    """Withdraw a release that has not been disclosed; it can never be disclosed afterwards.

    The files are left where they are (delete them when no longer needed).
    """
    from optout.release.lifecycle import withdraw
    from optout.store import open_store

    rel = withdraw(open_store(), release_id, reason=reason)
    typer.echo(f"release {rel.id} withdrawn; its files in {rel.out_dir} were left in place")


@release_app.command("linkcheck")
def linkcheck_cmd(
    paths: list[Path] = typer.Argument(
        ..., metavar="DIR_OR_FILES...", help="Release folders or CSV/Parquet files."
    ),
    min_distinct: int = typer.Option(
        20, "--min-distinct", help="Compare columns with at least this many distinct values."
    ),
    min_uniqueness: float = typer.Option(
        0.05, "--min-uniqueness", help="... and at least this many distinct values per non-empty row (0-1)."
    ),
    min_overlap: int = typer.Option(
        5, "--min-overlap", help="Report column pairs sharing at least this many distinct values."
    ),
    min_length: int = typer.Option(
        4, "--min-length", help="Ignore values shorter than this (ages, scores, codes)."
    ),
    ignore: list[str] = typer.Option(
        [],
        "--ignore",
        metavar="[FILE:]COLUMN",
        help="Leave a column out (in every file, or in FILE only), e.g. a row counter. Repeatable.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check files for common identifiers that could re-identify records across them (001 §8.1).

    Reports identifier-like column names found in more than one file (NHS number, local patient
    id, name, ...; date of birth with postcode) and pairs of high-cardinality columns in different
    files sharing values (counts only, never the values). Exit 4 when anything is found.
    """
    from optout.errors import PolicyRefusal
    from optout.release.linkcheck import linkcheck

    report = linkcheck(
        paths,
        min_distinct=min_distinct,
        min_uniqueness=min_uniqueness,
        min_overlap=min_overlap,
        min_length=min_length,
        ignore=ignore,
    )
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
    if not report.ok:
        raise PolicyRefusal(
            f"{len(report.findings)} possible link(s) between the files (001 §8.1)",
            hint="remove or replace the shared identifier columns in all but one file before release, "
            "or record why the risk is acceptable (`optout release disclose --accept-link-risk`)",
        )


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(release_app, name="release")

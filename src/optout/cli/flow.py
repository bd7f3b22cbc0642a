"""``optout flow add|list|show|edit``: the register of data flows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

flow_app = typer.Typer(
    name="flow",
    help="The register of data flows: each flow's facts, decision, how it complies, review date, history.",
    no_args_is_help=True,
)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table (no colours: it goes into tickets and e-mails)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _decision_text(decision: str | None, compliance: str | None, exemption: str | None) -> str:
    text = decision or "?"
    if compliance:
        text += f" ({compliance}" + (f": {exemption}" if exemption else "") + ")"
    return text


def _reasons(decision: Any) -> list[str]:
    out = []
    for r in getattr(decision, "reasons", None) or []:
        clause = getattr(r, "clause", None)
        text = getattr(r, "text", str(r))
        out.append(f"{text}" + (f" [{clause}]" if clause else ""))
    return out


def _print_saved(rec: Any, decision: Any, verb: str) -> None:
    typer.echo(f"{verb} flow {rec.id} (version {rec.version}): {rec.name}")
    typer.echo(
        "decision: "
        + _decision_text(rec.decision, rec.compliance, rec.exemption)
        + f" (rules {rec.rules_version or '1'})"
    )
    for line in _reasons(decision):
        typer.echo(f"  - {line}")
    missing = list(getattr(decision, "missing", None) or [])
    if missing:
        typer.echo("cannot decide until these facts are given: " + ", ".join(missing))
        typer.echo(f"  add them with `optout flow edit {rec.id} --set KEY=VALUE`")
    if rec.decision == "applies":
        typer.echo(f"next: check the cohort, then `optout apply ... --flow {rec.id}` to make a release")
    elif rec.decision == "does-not-apply":
        typer.echo("the national data opt-out does not apply to this flow: it needs no opt-out release")
    typer.echo(f"review by {rec.review_date}")


@flow_app.command("add")
def add_cmd(
    flow_file: Path = typer.Argument(
        ..., metavar="FLOW.yaml", help="The flow file (see docs/reference/flow-files.md)."
    ),
    flow_id: str | None = typer.Option(
        None, "--id", metavar="ID", help="The flow's id (a slug); default: the file name without .yaml."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the registered flow as JSON."),
) -> None:
    """Register a flow: validate its facts, assess it, store version 1 and audit it (flow.added)."""
    from optout.policy.register import add_flow
    from optout.store import open_store

    rec, decision = add_flow(open_store(), flow_file, flow_id=flow_id)
    if as_json:
        typer.echo(json.dumps({**rec.to_dict(), "assessment": _decision_dict(decision)}, indent=2))
        return
    _print_saved(rec, decision, "registered")


def _decision_dict(decision: Any) -> Any:
    return decision.to_dict() if hasattr(decision, "to_dict") else None


@flow_app.command("list")
def list_cmd(
    overdue: bool = typer.Option(False, "--overdue", help="Only flows whose review date has passed."),
    reassess: bool = typer.Option(
        False,
        "--reassess",
        help="Only flows whose answer would change under the current rules (the operational policy "
        "guidance, successor bodies), with the reason. Nothing is changed: record a new answer with "
        "`optout flow edit ID --reassess`.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List registered flows: decision, how each complies, recipient, review date (overdue flagged)."""
    from optout.policy.register import list_flows
    from optout.store import open_store

    if reassess:
        _list_reassessed(open_store(), overdue=overdue, as_json=as_json)
        return
    recs = list_flows(open_store())
    if overdue:
        recs = [r for r in recs if r.review_overdue()]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in recs], indent=2))
        return
    if not recs:
        typer.echo(
            "no flows registered"
            + (" with an overdue review" if overdue else "")
            + "; add one with `optout flow add FLOW.yaml`"
        )
        return
    rows = [
        (
            r.id,
            r.version,
            r.name,
            _decision_text(r.decision, r.compliance, r.exemption),
            r.recipient or "",
            (r.review_date or "") + (" OVERDUE" if r.review_overdue() else ""),
        )
        for r in recs
    ]
    typer.echo(table(("ID", "V", "NAME", "DECISION", "RECIPIENT", "REVIEW"), rows))
    late = sum(1 for r in recs if r.review_overdue())
    if late:
        typer.echo(f"{late} flow(s) overdue for review: look at them with `optout flow show ID`")


def _list_reassessed(store: Any, *, overdue: bool, as_json: bool) -> None:
    from optout.policy import rules_version
    from optout.policy.register import describe_reassessment, get_flow, reassess_all

    every = reassess_all(store)
    if overdue:
        every = [r for r in every if get_flow(store, r.flow_id).review_overdue()]
    changed = [r for r in every if r.changed]
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in changed], indent=2, default=str))
        return
    older = sum(1 for r in every if r.older_rules and not r.changed)
    if not changed:
        typer.echo(
            f"no registered flow would get a different answer under the current rules ({rules_version()})"
            + (f"; {older} flow(s) were decided under older rules with the same answer" if older else "")
        )
        return
    typer.echo(
        f"{len(changed)} flow(s) would get a different answer under the current rules ({rules_version()}):"
    )
    for r in changed:
        typer.echo("")
        typer.echo("  " + describe_reassessment(r))
        typer.echo(f"  record it: optout flow edit {r.flow_id} --reassess")
    if older:
        typer.echo(f"\n{older} other flow(s) were decided under older rules with the same answer.")


@flow_app.command("show")
def show_cmd(
    flow_id: str = typer.Argument(..., metavar="ID"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a flow: its facts, the decision with reasons and clauses, its history and releases."""
    from optout import audit
    from optout.errors import OptoutError
    from optout.policy.register import assess_record, get_flow, history
    from optout.release.lifecycle import list_releases
    from optout.store import open_store

    store = open_store()
    rec = get_flow(store, flow_id)
    versions = history(store, flow_id)
    try:
        decision = assess_record(rec)
        problem = None
    except OptoutError as exc:  # the policy's vocabulary changed under a stored flow
        decision, problem = None, exc.render()
    rels = list_releases(store, flow_id=flow_id)
    entries = [e for e in audit.entries(store) if e.subject == flow_id and e.action.startswith("flow.")]
    changes = {e.details_dict.get("version"): e.details_dict.get("changed") for e in entries}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    **rec.to_dict(),
                    "assessment": _decision_dict(decision) if decision is not None else None,
                    "history": [
                        {
                            "version": v.version,
                            "decision": v.decision,
                            "changed_at": v.changed_at,
                            "changed_by": v.changed_by,
                            "changed": changes.get(v.version),
                            "facts_sha256": v.facts_sha256,
                        }
                        for v in versions
                    ],
                    "releases": [
                        {"id": r.id, "state": r.state(), "flow_version": r.flow_version} for r in rels
                    ],
                },
                indent=2,
                default=str,
            )
        )
        return
    typer.echo(f"flow {rec.id}: {rec.name} (version {rec.version})")
    typer.echo(f"owner: {rec.owner or '-'}")
    typer.echo(f"recipient: {rec.recipient or '-'}")
    typer.echo(f"purpose: {rec.purpose or '-'}; legal basis: {rec.legal_basis or '-'}")
    typer.echo(
        f"review date: {rec.review_date}" + (" (OVERDUE: review the flow)" if rec.review_overdue() else "")
    )
    typer.echo(
        "decision: "
        + _decision_text(rec.decision, rec.compliance, rec.exemption)
        + f" (rules {rec.rules_version or '1'})"
    )
    if decision is not None:
        for line in _reasons(decision):
            typer.echo(f"  - {line}")
        missing = list(getattr(decision, "missing", None) or [])
        if missing:
            typer.echo("  missing facts: " + ", ".join(missing))
        if getattr(decision, "outcome", rec.decision) != rec.decision:
            typer.echo(
                f"  note: assessed today (rules {decision.rules_version}) the answer is {decision.outcome} "
                f"(the policy data changed); record it with `optout flow edit {rec.id} --reassess`"
            )
    else:
        typer.echo(f"  cannot assess the stored facts today: {problem}")
    typer.echo("facts:")
    import yaml

    typer.echo(
        "  " + yaml.safe_dump(rec.facts, sort_keys=False, allow_unicode=True).rstrip().replace("\n", "\n  ")
    )
    typer.echo("history:")
    for v in versions:
        what = changes.get(v.version)
        typer.echo(
            f"  v{v.version}  {v.changed_at[:19].replace('T', ' ')}  by {v.changed_by or 'unknown'}  "
            f"{v.decision or '?'}"
            + (f"  changed: {', '.join(what)}" if what else "  (registered)" if v.version == 1 else "")
        )
    if rels:
        typer.echo("releases:")
        for r in rels:
            typer.echo(f"  {r.id}  {r.state()}  made for v{r.flow_version}")


@flow_app.command("edit")
def edit_cmd(
    flow_id: str = typer.Argument(..., metavar="ID"),
    flow_file: Path | None = typer.Argument(
        None, metavar="[FLOW.yaml]", help="A new flow file replacing the facts (optional with --set)."
    ),
    set_values: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Change one fact (dotted keys for nested facts, e.g. recipient.role=processor; "
        "lists as [a, b]; an empty value removes the fact). Repeatable.",
    ),
    reassess: bool = typer.Option(
        False, "--reassess", help="Assess the stored facts again (after the policy data changed)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the flow as JSON."),
) -> None:
    """Change a flow: re-validate, re-assess, store a new version and audit it (flow.edited).

    Releases made for an earlier version can no longer be disclosed (the flow changed).
    """
    from optout.policy.register import edit_flow
    from optout.store import open_store

    rec, decision, keys = edit_flow(
        open_store(), flow_id, flow_file, set_values=set_values, reassess=reassess
    )
    if as_json:
        typer.echo(
            json.dumps({**rec.to_dict(), "changed": keys, "assessment": _decision_dict(decision)}, indent=2)
        )
        return
    if not keys:
        typer.echo(f"flow {rec.id}: nothing changed (still version {rec.version})")
        return
    _print_saved(rec, decision, "updated")
    if keys:
        typer.echo("changed: " + ", ".join(keys))


def register(app: typer.Typer) -> None:
    """Add this area's commands to the root app."""
    app.add_typer(flow_app, name="flow")

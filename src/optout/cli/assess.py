"""``optout assess FLOW.yaml [--json]``: does the national data opt-out apply to this flow?

Exit codes: 0 when the tool reached a decision (applies or does-not-apply: the answer is in the
output), 3 when the flow file is invalid (unknown key, misspelt value, contradictory facts), and
10 when it cannot decide because facts are missing. Cannot-decide has its own code so that a
script or CI job checking flow files stops on an unanswered question instead of treating it as a
pass; it is not an error code (1-9) because the file is valid and the output (text or JSON) is a
complete answer naming the missing facts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # the policy engine and rich load when a command needs them, not at start-up
    from rich.console import Console

    from optout.policy import Decision, Flow

EXIT_CANNOT_DECIDE = 10

_OUTCOME_STYLE = {
    "applies": ("bold red", "The national data opt-out APPLIES to this flow"),
    "does-not-apply": ("bold green", "The national data opt-out does NOT apply to this flow"),
    "cannot-decide": ("bold yellow", "Cannot decide yet: facts are missing"),
}


def summary(flow: Flow) -> str:
    """The main facts as read (after aliases), so the reader can see what was decided on."""
    bits = []
    for label, path in (
        ("purpose", "purpose"),
        ("legal basis", "legal_basis"),
        ("recipient", "recipient.type"),
        ("role", "recipient.role"),
        ("data", "data.confidentiality"),
    ):
        value = flow.get(path)
        if value is None:
            continue
        bits.append(f"{label}: {', '.join(value) if isinstance(value, tuple) else value}")
    return "; ".join(bits) or "no facts given"


def render(decision: Decision, console: Console, flow: Flow | None = None) -> None:
    """Print a decision for a person: the answer, how to comply, the reasons with their clauses."""
    from rich.markup import escape

    from optout.policy import COMPLIANCE
    from optout.policy.bodies import long_date
    from optout.policy.rules import exemption as rule_by_id

    style, headline = _OUTCOME_STYLE[decision.outcome]
    console.print(f"[bold]{escape(decision.flow or 'flow')}[/bold]")
    console.print(f"[{style}]{headline}[/{style}]")
    if flow is not None:
        console.print(f"[dim]{escape(summary(flow))}[/dim]")
    if decision.compliance:
        how = COMPLIANCE.get(decision.compliance, decision.compliance)
        console.print(f"How it complies: [bold]{escape(decision.compliance)}[/bold]: {escape(how)}")
    if decision.exemption:
        clause = rule_by_id(decision.exemption).clause
        console.print(f"Exemption: [bold]{escape(decision.exemption)}[/bold] ({escape(clause)})")
    if decision.holder is not None:
        h = decision.holder
        since = f" since {long_date(h.since)}" if h.since else ""
        console.print(f"Held today by: [bold]{escape(h.now_name)}[/bold]{escape(since)}")
    if decision.alternatives:
        alts = ", ".join(decision.alternatives)
        console.print(f"Or instead: {escape(alts)} (002 NOT DIRECT CARE)")
    if decision.missing:
        console.print("\n[bold]Add these facts to the flow file:[/bold]")
        for path, question in decision.questions.items():
            console.print(f"  [bold]{escape(path)}[/bold]: {escape(question)}")
    steps = [r for r in decision.reasons if r.kind not in ("note", "missing")]
    notes = [r for r in decision.reasons if r.kind in ("note", "missing")]
    console.print("\n[bold]Why[/bold]")
    for i, reason in enumerate(steps, 1):
        tag = {"exemption": " exemption", "near-miss": " near miss"}.get(reason.kind, "")
        console.print(f"  {i:>2}. [cyan]\\[{escape(reason.clause)}][/cyan]{tag} {escape(reason.text)}")
    if notes:
        console.print("\n[bold]Notes[/bold]")
        for reason in notes:
            console.print(f"   - [cyan]\\[{escape(reason.clause)}][/cyan] {escape(reason.text)}")
    console.print(
        "Clauses: 000 CRANE registry guidance; 001 NHS Digital operational policy §8; "
        "002 GP practice / PCN protocol; 003 Digital Social Care guidance; OPG: the national data "
        "opt-out operational policy guidance (NHS England) as published today.",
        style="dim",
    )
    pages = [s["location"] for s in decision.sources if str(s["location"]).startswith("http")]
    console.print(f"Rules version {escape(decision.rules_version)}", style="dim")
    for page in pages:
        console.print(f"  source: {escape(page)}", style="dim", soft_wrap=True)


def assess_command(
    flow_file: Path = typer.Argument(
        ..., metavar="FLOW.yaml", help="The flow file (YAML) describing the flow's facts."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the decision as JSON."),
) -> None:
    """Decide whether the national data opt-out applies to a data flow, and explain why.

    Prints applies / does-not-apply / cannot-decide with the chain of reasons, each citing its
    clause in the policy texts, the exemption that lifts it (if any) and how the flow complies.
    Exit 0 for a decision, 3 for an invalid flow file, 10 when facts are missing (cannot decide).
    """
    from rich.console import Console

    from optout.policy import CANNOT_DECIDE, assess, load_flow

    flow = load_flow(flow_file)
    decision = assess(flow)
    if as_json:
        typer.echo(json.dumps(decision.to_dict(), indent=2, ensure_ascii=False))
    else:
        render(decision, Console(highlight=False), flow)
    if decision.outcome == CANNOT_DECIDE:
        # sys.exit, not typer.Exit: the root app runs click with standalone_mode=False, where an
        # Exit's code would be returned and dropped instead of becoming the process's exit code.
        sys.exit(EXIT_CANNOT_DECIDE)


def register(app: typer.Typer) -> None:
    """Add ``optout assess`` to the root app."""
    app.command("assess")(assess_command)

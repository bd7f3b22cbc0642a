"""Where each rule comes from: a page generated from the policy data, so it cannot drift.

``page()`` returns Markdown: the rules version; every source (policy text or public page) with what
what was read of it; every rule of ``exemptions.yaml`` and ``guidance.yaml`` with its clause,
the words quoted and the page; the bodies that hold an exemption over time; and the sections of
the operational policy guidance that could not be read, with the rule that covers the ground.
The docs site can include it (``python -m optout.policy.provenance > where-rules-come-from.md``).
"""

from __future__ import annotations

from optout.policy import bodies
from optout.policy.rules import Exemption, exemptions, guidance_rules
from optout.policy.sources import guidance_data, rules_version, source_for, sources

_KIND = {
    "exemption": "lifts the opt-out",
    "rule": "applied by the rule engine",
    "note": "adds a note",
}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _where(clause: str) -> str:
    src = source_for(clause)
    if src is None:
        return clause
    if src.url:
        return f"[{clause}]({src.url})"
    return f"{clause} (`{src.file}`)"


def _rule_row(rule: Exemption) -> str:
    kind = _KIND.get(rule.kind, rule.kind)
    also = "; ".join(_where(c) for c, _w in rule.guidance)
    holder = ""
    if rule.held_by:
        fn = bodies.function(rule.held_by)
        holder = bodies.history(fn)
    return (
        f"| `{rule.id}` | {kind} | {_where(rule.clause)} | {_cell(rule.wording)} | "
        f"{also or '-'} | {_cell(holder) or '-'} |"
    )


def page() -> str:
    """The Markdown page "Where each rule comes from"."""
    out = [
        "# Where each rule comes from",
        "",
        f"Rules version **{rules_version()}** (the human version and a hash of the policy data files). "
        "Each decision records it; `optout flow list --reassess` lists registered flows decided under "
        "other rules whose answer would now change.",
        "",
        "## Sources",
        "",
        "| id | document | status | what was read |",
        "|---|---|---|---|",
    ]
    for src in sources():
        where = f"[{_cell(src.title)}]({src.url})" if src.url else f"{_cell(src.title)} (`{src.file}`)"
        found = src.found or {"project-text": "the whole text", "found": "the passages quoted"}.get(
            src.status, ""
        )
        if src.found_at:
            found += f" (read from a copy at {src.found_at})"
        if src.note:
            found += f". {src.note}"
        out.append(f"| {src.id} | {where} | {src.status} | {_cell(found) or '-'} |")
    out += [
        "",
        "## Rules",
        "",
        "002's NOTED EXCLUSIONS (2019) come first, then what the operational policy guidance and "
        "today's pages add. Where an exemption goes with a function, a flow may name the body as it is "
        "today or as it was: the answer is the same, and the decision names today's holder.",
        "",
        "| rule | what it does | clause | words quoted | today's sources | held by |",
        "|---|---|---|---|---|---|",
    ]
    out += [_rule_row(rule) for rule in (*exemptions(), *guidance_rules())]
    out += [
        "",
        "## Bodies that hold an exemption over time",
        "",
        "| function | held by | source |",
        "|---|---|---|",
    ]
    for fn in bodies.functions().values():
        srcs = ", ".join(dict.fromkeys(_where(t.source) for t in fn.tenures if t.source))
        out.append(f"| {_cell(fn.label)} | {_cell(bodies.history(fn))} | {srcs} |")
    out += [
        "",
        "## Not yet read",
        "",
        "These sections of the guidance have not been read; nothing of them is quoted. The rule named "
        "covers the ground meanwhile: read the page before relying on the tool there.",
        "",
        "| section | what it holds | covered by |",
        "|---|---|---|",
    ]
    for item in guidance_data().get("not_found") or []:
        out.append(f"| {item['section']} | {_cell(str(item['what']))} | {_cell(str(item['covered_by']))} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # pragma: no cover - python -m optout.policy.provenance
    print(page(), end="")

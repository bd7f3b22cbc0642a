"""Does the opt-out apply? Asked one question at a time, only the questions that matter.

The rules (:func:`optout.policy.assess`) decide; this module only chooses *which fact to ask for
next*, by asking the rules. Nothing here knows a rule:

- a fact the decision names as missing (``decision.missing``) matters;
- so does a fact for which some possible answer would change the decision (its outcome, how the
  flow complies, the exemption that lifts it, or the notes it carries, e.g. what to do about
  missing NHS numbers, 001 §8.2): each possible answer is tried against the rules and the
  decisions compared;
- a fact already answered, or answered "I don't know", is not asked again.

The next question is the first fact, in the flow file's schema order, that matters given the
answers so far; when none is left the assessment is finished (the decision is then applies,
does-not-apply, or cannot-decide with the facts still missing). The questions and their hints are
the flow-file schema's (:data:`optout.policy.flow.FACTS`) and the vocabulary's labels and
descriptions (``vocabulary.yaml``); the web app and the JSON API show them as they are.

    answers = {"origin.sector": "health"}
    q = next_question(answers, unknown={"origin.funding"})   # a Question, or None when finished
    decision = assess_answers(answers)
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from optout.errors import InputError
from optout.policy.flow import FACT_SPECS, FACTS, FactSpec, Flow, vocabulary
from optout.policy.rules import Decision, all_rules, assess

__all__ = [
    "ASKED_KINDS",
    "Option",
    "Question",
    "answers_to_mapping",
    "assess_answers",
    "flow_from_answers",
    "mapping_to_answers",
    "matters",
    "next_question",
    "parse_answer",
    "question",
]

# Kinds of fact the rules read, and so may be asked about one page at a time. Free text (name,
# owner, recipient.name, ...) and dates are asked on the register's own pages, not by the rules.
ASKED_KINDS = ("enum", "enum-list", "bool", "text-list")
_CLAUSE = re.compile(r"\s*\(([^()]*\d{3}[^()]*|[^()]*OPG[^()]*)\)\s*$")


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    hint: str | None = None


@dataclass(frozen=True)
class Question:
    """One fact asked as a question: plain words from the schema, options from the vocabulary."""

    path: str
    kind: str  # enum | enum-list | bool | text-list
    title: str  # the question itself
    hint: str | None  # the rest of the schema's question text
    clause: str | None  # where in the policy it comes from
    options: tuple[Option, ...] = field(default_factory=tuple)

    @property
    def multiple(self) -> bool:
        return self.kind == "enum-list"

    def label_of(self, value: Any) -> str:
        """How an answer reads on a check-your-answers page."""
        if value is None:
            return "None" if self.kind == "text-list" else "I don't know"
        if isinstance(value, (list, tuple)):
            return ", ".join(self.label_of(v) for v in value) if value else "None"
        if isinstance(value, bool):
            return "Yes" if value else "No"
        for o in self.options:
            if o.value == value:
                return o.label
        return str(value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fact": self.path,
            "kind": self.kind,
            "question": self.title,
            "hint": self.hint,
            "clause": self.clause,
            "multiple": self.multiple,
            "options": [{"value": o.value, "label": o.label, "hint": o.hint} for o in self.options],
        }


def _split(text: str) -> tuple[str, str | None, str | None]:
    """The schema's question -> (question, hint, clause): 'Is it X? Say Y. (002 SCOPE)'."""
    clause = None
    m = _CLAUSE.search(text)
    if m:
        clause = m.group(1).strip()
        text = text[: m.start()].rstrip()
    title, sep, rest = text.partition("?")
    if not sep:
        return text, None, clause
    rest = rest.strip()
    return title.strip() + "?", rest or None, clause


def _humanise(value: str) -> str:
    """A vocabulary word without a label, as words: 'nhs-number' -> 'NHS number'."""
    words = value.replace("-", " ").split()
    upper = {"nhs": "NHS", "chi": "CHI", "gp": "GP", "uk": "UK"}
    out = [upper.get(w, w) for w in words]
    if out and out[0] == words[0]:
        out[0] = out[0].capitalize()
    return " ".join(out)


def _known_approvals() -> tuple[str, ...]:
    """The approval references the rules' conditions name (002 NOTED EXCLUSIONS; the guidance):
    the answers worth trying, and shown as examples."""
    seen: dict[str, None] = {}

    def add(expected: Any) -> None:
        options = expected.get("any_of", ()) if isinstance(expected, Mapping) else [expected]
        for ref in options:
            if isinstance(ref, str):
                seen[ref] = None

    for rule in all_rules():
        for conditions in (*rule.identified_by, *rule.lifts_when, *rule.when):
            if "approvals" in conditions:
                add(conditions["approvals"])
    return tuple(seen)


def question(path: str) -> Question:
    """The question for one fact of the flow-file schema (KeyError for an unknown fact)."""
    spec = FACT_SPECS[path]
    title, hint, clause = _split(spec.question)
    options: list[Option] = []
    if spec.kind == "bool":
        options = [Option("yes", "Yes"), Option("no", "No")]
    elif spec.values_from is not None:
        table = vocabulary()[spec.values_from]
        for value, entry in table.items():
            entry = entry or {}
            label = str(entry.get("label") or _humanise(value))
            extra = entry.get("description")
            options.append(Option(value, label, " ".join(str(extra).split()) if extra else None))
    elif spec.kind == "text-list":
        known = ", ".join(_known_approvals()) if path == "approvals" else ""
        more = f"One per line. References the rules know: {known}." if known else "One per line."
        hint = f"{hint} {more}" if hint else more
    return Question(path, spec.kind, title, hint, clause, tuple(options))


# --- answers <-> the flow's facts -----------------------------------------------------------------


def answers_to_mapping(answers: Mapping[str, Any]) -> dict[str, Any]:
    """Flat answers (``{"recipient.role": "processor"}``) -> the nested mapping of a flow file."""
    out: dict[str, Any] = {}
    for path, value in answers.items():
        if value is None:
            continue
        if isinstance(value, date):
            value = value.isoformat()
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = list(value) if isinstance(value, tuple) else value
    return out


def mapping_to_answers(facts: Mapping[str, Any]) -> dict[str, Any]:
    """A flow's facts (nested, as the register stores them) -> flat answers."""
    flow = Flow.from_mapping(facts)
    out: dict[str, Any] = {}
    for spec in FACTS:
        if spec.path in flow.facts:
            value = flow.facts[spec.path]
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, date):
                value = value.isoformat()
            out[spec.path] = value
    return out


def flow_from_answers(answers: Mapping[str, Any]) -> Flow:
    """Validate the answers as a flow (InputError for contradictory facts, naming both)."""
    return Flow.from_mapping(answers_to_mapping(answers))


def assess_answers(answers: Mapping[str, Any], *, today: date | None = None) -> Decision:
    """The rules' decision on the answers so far."""
    return assess(flow_from_answers(answers), today=today)


def parse_answer(path: str, raw: Any) -> Any:
    """A form's answer -> the fact's value (None: "I don't know"). InputError when it is not one.

    ``raw`` is a string (radio, text area: one item per line) or a list of strings (check boxes).
    The value is then checked by the flow schema itself when the flow is validated.
    """
    spec = FACT_SPECS[path]
    items = [str(x).strip() for x in (raw if isinstance(raw, (list, tuple)) else [raw]) if x is not None]
    if spec.kind == "text-list":
        lines = [line.strip() for item in items for line in item.splitlines() if line.strip()]
        return lines or None
    items = [x for x in items if x]
    if not items:
        raise InputError("Select an answer, or 'I don't know'")
    if "unknown" in items:
        if len(items) > 1:
            raise InputError("Select 'I don't know' on its own, or the answers that apply")
        return None
    if spec.kind == "bool":
        if items[0] not in ("yes", "no"):
            raise InputError("Select yes, no or 'I don't know'")
        return items[0] == "yes"
    allowed = question(path).options
    values = {o.value for o in allowed}
    bad = [x for x in items if x not in values]
    if bad:
        raise InputError("Select one of the answers shown")
    if spec.kind == "enum":
        if len(items) != 1:
            raise InputError("Select one answer")
        return items[0]
    return list(dict.fromkeys(items))


# --- which question next -------------------------------------------------------------------------


def _signature(d: Decision) -> tuple[Any, ...]:
    notes = tuple(sorted((r.clause, r.text) for r in d.reasons if r.kind == "note"))
    return (d.outcome, d.compliance, d.exemption, notes)


def _candidates(spec: FactSpec) -> Iterable[Any]:
    if spec.kind == "bool":
        return (True, False)
    if spec.kind in ("enum", "enum-list"):
        return tuple([v] if spec.kind == "enum-list" else v for v in spec.values)
    if spec.kind == "text-list" and spec.path == "approvals":
        return tuple([ref] for ref in _known_approvals())
    return ()


def _try(answers: Mapping[str, Any], today: date | None) -> Decision | None:
    try:
        return assess_answers(answers, today=today)
    except InputError:  # the answer contradicts another fact: not a possible answer
        return None


def matters(
    answers: Mapping[str, Any], path: str, *, base: Decision | None = None, today: date | None = None
) -> bool:
    """Whether the fact ``path`` could change the decision, given the answers so far."""
    base = base if base is not None else assess_answers(answers, today=today)
    if path in base.missing:
        return True
    spec = FACT_SPECS[path]
    want = _signature(base)
    for value in _candidates(spec):
        d = _try({**answers, path: value}, today)
        if d is not None and _signature(d) != want:
            return True
    return False


def next_question(
    answers: Mapping[str, Any], *, unknown: Collection[str] = (), today: date | None = None
) -> Question | None:
    """The first fact (schema order) not yet answered that matters now; None when finished."""
    base = assess_answers(answers, today=today)
    for spec in FACTS:
        if spec.kind not in ASKED_KINDS or spec.path in answers or spec.path in unknown:
            continue
        if matters(answers, spec.path, base=base, today=today):
            return question(spec.path)
    return None

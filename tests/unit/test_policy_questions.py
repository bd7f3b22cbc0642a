"""Asking one question at a time (optout.policy.questions): only what the rules say matters, and
an interview answered from a flow file's facts ends in the answer the rules give the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from optout.errors import InputError
from optout.policy import FACTS, assess, load_flow
from optout.policy.flow import vocabulary
from optout.policy.questions import (
    ASKED_KINDS,
    answers_to_mapping,
    assess_answers,
    mapping_to_answers,
    next_question,
    parse_answer,
    question,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "flows").glob("*.yaml"))
SOCIAL_CARE = sorted(
    (Path(__file__).resolve().parents[2] / "src" / "optout" / "policy" / "socialcare" / "examples").glob(
        "*.yaml"
    )
)


def interview(facts: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Answer each question the way the flow file does ("I don't know" when it says nothing)."""
    answers: dict[str, Any] = {k: v for k, v in facts.items() if FACTS_BY_PATH[k].kind not in ASKED_KINDS}
    unknown: list[str] = []
    asked: list[str] = []
    while (q := next_question(answers, unknown=unknown)) is not None:
        assert q.path not in asked, f"{q.path} asked twice"
        asked.append(q.path)
        if q.path in facts:
            answers[q.path] = facts[q.path]
        else:
            unknown.append(q.path)
    return answers, asked


FACTS_BY_PATH = {s.path: s for s in FACTS}


@pytest.mark.parametrize("path", EXAMPLES + SOCIAL_CARE, ids=lambda p: p.stem)
def test_an_interview_ends_in_the_files_answer(path: Path) -> None:
    flow = load_flow(path)
    facts = mapping_to_answers(flow.to_dict())
    answers, asked = interview(facts)
    full, short = assess(flow), assess_answers(answers)
    assert (short.outcome, short.compliance, short.exemption) == (
        full.outcome,
        full.compliance,
        full.exemption,
    )
    assert short.missing == full.missing
    assert len(asked) <= len([s for s in FACTS if s.kind in ASKED_KINDS])


def test_the_first_questions_are_the_scope() -> None:
    q = next_question({})
    assert q is not None and q.path == "origin.sector"
    assert next_question({}, unknown=["origin.sector"]).path == "origin.country"  # type: ignore[union-attr]
    # out of scope: the rest of the scope, the data and the legal basis no longer matter (only
    # what could add a note of the guidance to the answer is still asked)
    answers = {"origin.country": "scotland"}
    asked: list[str] = []
    while (q := next_question(answers, unknown=asked)) is not None:
        asked.append(q.path)
    assert assess_answers(answers).outcome == "does-not-apply"
    assert not {"origin.sector", "origin.funding", "data.confidentiality", "legal_basis"} & set(asked)


def test_questions_come_from_the_schema_and_the_vocabulary() -> None:
    for spec in FACTS:
        if spec.kind not in ASKED_KINDS:
            continue
        q = question(spec.path)
        assert q.title.endswith("?"), q.title
        assert "(" not in q.title or q.title.count("(") == q.title.count(")")
        if spec.values_from:
            assert [o.value for o in q.options] == list(vocabulary()[spec.values_from])
            assert all(o.label for o in q.options)
    assert (
        question("data.identifiers").label_of(["nhs-number", "date-of-birth"]) == "NHS number, Date of birth"
    )
    assert question("recipient.legitimate_relationship").label_of(None) == "I don't know"


def test_answers_are_parsed_and_checked() -> None:
    assert parse_answer("origin.sector", "health") == "health"
    assert parse_answer("origin.sector", "unknown") is None
    assert parse_answer("professional_oversight", "no") is False
    assert parse_answer("purpose", ["research", "planning"]) == ["research", "planning"]
    assert parse_answer("approvals", "PIAG 03(a)/2001\n\n") == ["PIAG 03(a)/2001"]
    assert parse_answer("approvals", "") is None
    for path, raw in (("origin.sector", ""), ("origin.sector", "moon"), ("purpose", ["unknown", "research"])):
        with pytest.raises(InputError):
            parse_answer(path, raw)


def test_answers_round_trip_as_a_flow_file() -> None:
    facts = {"recipient.role": "processor", "purpose": ["planning"], "origin.sector": "health"}
    mapping = answers_to_mapping(facts)
    assert mapping == {
        "recipient": {"role": "processor"},
        "purpose": ["planning"],
        "origin": {"sector": "health"},
    }
    assert mapping_to_answers(mapping) == facts

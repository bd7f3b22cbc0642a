"""The spec table for the policy as users meet it today (``flows/guidance.yaml``).

Chapters 4-7 of the national data opt-out operational policy guidance (OPG), the public pages
beside it, and the successor bodies of PHE, NHS Digital and CCGs. Each case quotes its source (page
address or policy text, and section); every rule has a case it decides, a near miss and a case
written with today's organisation names, and a flow written with the old names gets the same
answer as with today's.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from optout.errors import InputError
from optout.policy import APPLIES, CANNOT_DECIDE, Decision, assess
from optout.policy.rules import all_rules, exemption, guidance_rules
from optout.policy.sources import clause_location

HERE = Path(__file__).parent / "flows"
SPEC = yaml.safe_load((HERE / "guidance.yaml").read_text(encoding="utf-8"))
# the same base flow as decisions.yaml: a research extract under s251 to a university
BASE: dict[str, Any] = yaml.safe_load((HERE / "decisions.yaml").read_text(encoding="utf-8"))["base"]
TODAY = date(2026, 6, 1)  # fixed, so that "the holder today" does not move under the tests
ROLES = ("decides", "near-miss", "todays-names")


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """``change`` over ``base`` (as in decisions.yaml: nested keys merge, null removes a key)."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def uses(decision: Decision, rule_id: str) -> bool:
    """Does the decision use the rule: its exemption lifts the opt-out, or its words are quoted?"""
    rule = exemption(rule_id)
    if rule.kind == "exemption":
        return decision.exemption == rule_id
    words = rule.text if rule.kind == "note" and rule.text else rule.wording
    return any(words in r.text for r in decision.reasons)


def _param(item: dict[str, Any]) -> Any:
    return pytest.param(item, merge(BASE, item.get("change") or {}), id=item["id"])


CASES = [_param(item) for item in SPEC["cases"]]


@pytest.mark.parametrize(("case", "facts"), CASES)
def test_case(case: dict[str, Any], facts: dict[str, Any]) -> None:
    assert case["quote"] and case["source"]["location"] and case["source"]["section"]
    assert case["role"] in (*ROLES, "old-names")
    expect = case["expect"]
    if expect.get("refused"):
        with pytest.raises(InputError) as err:
            assess(facts, today=TODAY)
        assert "Contradictory" in err.value.message and err.value.hint
        return
    decision = assess(facts, today=TODAY)
    why = [(r.clause, r.text) for r in decision.reasons]
    assert decision.outcome == expect["outcome"], why
    if "cite" in case:
        cited = [r.clause for r in decision.reasons]
        assert case["cite"] in cited, f"the decision does not cite {case['cite']}: {cited}"
        assert clause_location(case["cite"]), case["cite"]
    if "uses" in case:
        assert uses(decision, case["rule"]) is case["uses"], why
    if "exemption" in expect:
        assert decision.exemption == expect["exemption"]
    if "compliance" in expect:
        assert decision.compliance == expect["compliance"]
    if expect["outcome"] == APPLIES:
        assert decision.exemption is None and decision.compliance == "opt-out-applied"
    if expect["outcome"] == CANNOT_DECIDE:
        assert decision.missing == expect["missing"]
    if "holder" in expect:
        assert decision.holder is not None and decision.holder.now == expect["holder"]
        assert any(r.text == decision.holder.explain() for r in decision.reasons)
    if "holder_at_disclosure" in expect:
        assert decision.holder is not None
        assert decision.holder.at_disclosure == expect["holder_at_disclosure"]
    for reason in decision.reasons:
        assert reason.file.endswith(".txt") or reason.file.startswith(("https://", "http://")), reason


def test_every_guidance_rule_has_a_deciding_case_a_near_miss_and_todays_names() -> None:
    roles: dict[str, set[str]] = defaultdict(set)
    for item in SPEC["cases"]:
        roles[item["rule"]].add(item["role"])
    for rule in guidance_rules():
        assert set(ROLES) <= roles[rule.id], (rule.id, sorted(roles[rule.id]))
    # and every 002 exemption that moved to a successor body is tried with today's names
    for rule in all_rules():
        if rule.held_by or rule.guidance:
            assert "todays-names" in roles[rule.id], rule.id


def test_old_and_todays_names_give_the_same_answer() -> None:
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in SPEC["cases"]:
        if item["role"] in ("old-names", "todays-names"):
            by_rule[item["rule"]].append(item)
    compared = 0
    for items in by_rule.values():
        old = [i for i in items if i["role"] == "old-names"]
        new = [i for i in items if i["role"] == "todays-names"]
        for o in old:
            for n in new:
                a = assess(merge(BASE, o["change"]), today=TODAY)
                b = assess(merge(BASE, n["change"]), today=TODAY)
                assert (a.outcome, a.exemption, a.compliance) == (b.outcome, b.exemption, b.compliance)
                compared += 1
    assert compared >= 4


@pytest.mark.parametrize(
    ("named", "when", "holder_then"),
    [
        ("public-health-england", date(2019, 5, 1), "public-health-england"),
        ("nhs-digital", date(2022, 3, 1), "nhs-digital"),
        ("nhs-england", date(2024, 3, 1), "nhs-england"),
        ("public-health-england", date(2024, 3, 1), "nhs-england"),  # named as it was, sent today
        ("nhs-england", date(2019, 5, 1), "public-health-england"),  # named as it is, sent then
        ("nhs-england", None, None),
    ],
)
def test_the_cancer_register_is_exempt_under_every_name_at_every_date(
    named: str, when: date | None, holder_then: str | None
) -> None:
    facts = merge(
        BASE,
        {
            "purpose": "cancer-registration",
            "approvals": ["PIAG 03(a)/2001"],
            "recipient": {"type": named},
            **({"disclosure_date": when.isoformat()} if when else {}),
        },
    )
    decision = assess(facts, today=TODAY)
    assert (decision.outcome, decision.exemption) == ("does-not-apply", "phe-national-cancer-register")
    assert decision.holder is not None
    assert (decision.holder.now, decision.holder.since) == ("nhs-england", date(2023, 2, 1))
    assert decision.holder.at_disclosure == holder_then
    text = decision.holder.explain()
    assert "NHS England since 1 February 2023" in text
    if named != "nhs-england":
        assert "an earlier holder" in text


def test_the_s259_contradiction_names_today_s_collector() -> None:
    facts = merge(
        BASE,
        {
            "purpose": "national-data-collection",
            "legal_basis": "s259-direction",
            "recipient": {"type": "integrated-care-board"},
        },
    )
    with pytest.raises(InputError) as err:
        assess(facts)
    assert "nhs-england" in (err.value.hint or "")
    assert "NHS England since 1 February 2023" in err.value.message

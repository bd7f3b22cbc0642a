"""The spec table: does the national data opt-out apply to this flow?

The table is ``flows/decisions.yaml`` beside this file: each case is a flow described by its facts
(as a change to a base flow), the answer the policy texts give, the clause that gives it (which
the decision must cite) and the words of that clause.

Policy texts: 000 CRANE registry guidance; 001 NHS Digital operational policy §8; 002 GP practice /
PCN protocol (SCOPE, DIRECT CARE, NOT DIRECT CARE, DISCLOSURES TO PROVIDERS / SUPPLIERS, INTERNAL
ACTIVITIES, NOTED EXCLUSIONS); 003 Digital Social Care guidance for adult social care.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from optout.policy import APPLIES, CANNOT_DECIDE, DOES_NOT_APPLY, assess, exemptions
from optout.policy.flow import vocabulary

SPEC = yaml.safe_load((Path(__file__).parent / "flows" / "decisions.yaml").read_text(encoding="utf-8"))
BASE: dict[str, Any] = SPEC["base"]
DIRECT: dict[str, Any] = SPEC["direct_care_team"]


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _param(item: dict[str, Any]) -> Any:
    facts = merge(BASE, item.get("change") or {})
    if item.get("direct_care_team"):
        facts = merge(facts, DIRECT)
    expect = item["expect"]
    return pytest.param(
        facts,
        expect["outcome"],
        item["clause"],
        item["quote"],
        expect.get("exemption"),
        expect.get("compliance"),
        expect.get("missing"),
        id=item["id"],
    )


CASES = [_param(item) for item in SPEC["cases"]]


@pytest.mark.parametrize(("facts", "outcome", "clause", "quote", "exemption", "compliance", "missing"), CASES)
def test_decision(
    facts: dict[str, Any],
    outcome: str,
    clause: str,
    quote: str,
    exemption: str | None,
    compliance: str | None,
    missing: list[str] | None,
) -> None:
    decision = assess(facts)
    cited = [r.clause for r in decision.reasons]
    assert decision.outcome == outcome, [(r.clause, r.text) for r in decision.reasons]
    assert clause in cited, f"the decision does not cite {clause}: {cited}"
    assert quote  # every case quotes the clause it comes from
    if exemption is not None:
        assert decision.exemption == exemption
    if outcome == APPLIES:
        assert decision.compliance == "opt-out-applied"
        assert decision.exemption is None
    if compliance is not None:
        assert decision.compliance == compliance
    if outcome == CANNOT_DECIDE:
        assert decision.compliance is None
        assert decision.missing, "cannot-decide must name the missing facts"
    else:
        assert decision.missing == []
    if missing is not None:
        assert decision.missing == missing
    for reason in decision.reasons:
        # every reason points at a policy text or at the public page it quotes (rules version 2
        # added the operational policy guidance and today's pages: see guidance.yaml "sources")
        assert reason.file.endswith(".txt") or reason.file.startswith(("https://", "http://")), reason


def test_the_table_covers_every_exemption() -> None:
    covered = {p.values[4] for p in CASES}
    assert {ex.id for ex in exemptions()} <= covered


def test_the_table_covers_every_purpose_family_and_outcome() -> None:
    purposes = vocabulary()["purposes"]
    families: set[str] = set()
    for p in CASES:
        value = p.values[0].get("purpose")
        for purpose in [value] if isinstance(value, str) else value or []:
            families.add(purposes[purpose]["family"])
    assert families == {entry["family"] for entry in purposes.values()}
    assert {p.values[1] for p in CASES} == {APPLIES, DOES_NOT_APPLY, CANNOT_DECIDE}
    assert len(CASES) >= 35


def test_crane_says_why_consent_does_not_keep_audit_data() -> None:
    facts = merge(
        BASE,
        {"purpose": ["registry", "national-clinical-audit"], "legal_basis": ["s251", "explicit-consent"]},
    )
    decision = assess(facts)
    texts = " ".join(r.text for r in decision.reasons if r.clause == "000")
    assert "audit data" in texts
    assert any(r.kind == "near-miss" and "explicit-consent" in r.text for r in decision.reasons)


def test_near_miss_names_the_missing_approval() -> None:
    facts = merge(
        BASE,
        {"purpose": "cancer-registration", "approvals": [], "recipient": {"type": "public-health-england"}},
    )
    near = [r.text for r in assess(facts).reasons if r.kind == "near-miss"]
    assert any("PIAG 03(a)/2001" in t for t in near), near


def test_ons_not_solely_explains_the_part_that_applies() -> None:
    facts = merge(BASE, {"purpose": ["official-statistics", "research"], "recipient": {"type": "ons"}})
    decision = assess(facts)
    assert any("exemption ons-official-statistics" in r.text for r in decision.reasons)
    assert any("research under s251: the opt-out applies" in r.text for r in decision.reasons)


def test_onward_sharing_is_flagged_for_a_fresh_check() -> None:
    facts = merge(BASE, {"onward_sharing": {"planned": True, "covered_by_approval": True}})
    onward = [r for r in assess(facts).reasons if r.clause == "001 §8.3"]
    assert onward and "applied again" in onward[0].text

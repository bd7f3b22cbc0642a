"""The answer never depends on which name of a body a flow uses, nor on the disclosure date.

A body that handed all its functions to one successor (NHS Digital -> NHS England, CCGs -> ICBs)
may be named either way, and a flow may carry any disclosure date: the outcome, exemption and
compliance are the same (only the explanation changes: who held the function then, who now).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.generative.test_policy_properties import decide, flows

from optout.policy import bodies

SUCCESSIONS = {b.id: b.successor for b in bodies.bodies().values() if b.successor}
TODAY = date(2026, 6, 1)


def _answer(flat: dict[str, Any]) -> tuple[Any, ...] | None:
    decision = decide(flat)
    return None if decision is None else (decision.outcome, decision.exemption, decision.compliance)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.sampled_from(sorted(SUCCESSIONS)))
def test_the_old_name_and_the_successor_give_the_same_answer(flat: dict[str, Any], old: str) -> None:
    before = _answer({**flat, "recipient.type": old})
    after = _answer({**flat, "recipient.type": SUCCESSIONS[old]})
    assert before == after


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.dates(min_value=date(2015, 1, 1), max_value=date(2035, 12, 31)))
def test_the_disclosure_date_never_changes_the_answer(flat: dict[str, Any], when: date) -> None:
    without = _answer({k: v for k, v in flat.items() if k != "disclosure_date"})
    assert _answer({**flat, "disclosure_date": when.isoformat()}) == without

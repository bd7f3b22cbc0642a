"""Properties of the decision over open-ended flows (hypothesis).

The central one is "never a guess": if the tool decides with some facts unknown, learning those
facts never changes the answer. (The documented exceptions are ``approvals``: an absent list
means "none", so it is never unknown; and the facts whose ``FactSpec.absent`` says what leaving
them out means, e.g. ``s251.opt_out_exception``: an s251 letter exempting the flow counts only once
the controller has seen it, OPG §5.1.)
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optout.errors import InputError
from optout.policy import FACT_SPECS, FACTS, OUTCOMES, assess
from optout.policy.flow import Flow, parse_flow_text

ENUMS = [s for s in FACTS if s.kind in ("enum", "enum-list", "bool")]


# In-scope values drawn half the time, so that many flows reach the later tests (direct care,
# disclosure, exemptions) instead of stopping at scope.
LIKELY = {
    "origin.sector": "health",
    "origin.country": "england",
    "origin.funding": "public",
    "data.confidentiality": "confidential",
}


def _value(spec: Any) -> st.SearchStrategy[Any]:
    if spec.kind == "bool":
        return st.booleans()
    values = list(spec.values)
    if spec.path in LIKELY:
        return st.one_of(st.just(LIKELY[spec.path]), st.sampled_from(values))
    if spec.kind == "enum-list":
        return st.lists(st.sampled_from(values), min_size=1, max_size=2, unique=True)
    return st.sampled_from(values)


@st.composite
def flows(draw: st.DrawFn) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for spec in ENUMS:
        if draw(st.integers(0, 4)) > 0:  # most facts known, some not
            facts[spec.path] = draw(_value(spec))
    if draw(st.booleans()):
        facts["approvals"] = draw(
            st.lists(
                st.sampled_from(
                    [
                        "PIAG 03(a)/2001",
                        "15/CAG/0207",
                        "21/CAG/0001",
                        "CAG 8-02 (a-c)/2014",
                        "CAG 7-07(a-c)/2013",
                        "CAG 7-04(a)/2013",
                    ]
                ),
                max_size=2,
            )
        )
    return facts


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def decide(flat: dict[str, Any]) -> Any:
    try:
        return assess(nest(flat))
    except InputError:
        return None  # contradictory facts: refused, never decided


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flows(), st.data())
def test_a_decision_never_changes_when_unknown_facts_become_known(
    full: dict[str, Any], data: st.DataObject
) -> None:
    whole = decide(full)
    if whole is None:
        return
    # forget one or two facts (forgetting many mostly gives cannot-decide, which proves nothing)
    drop = (
        data.draw(st.lists(st.sampled_from(sorted(full)), min_size=1, max_size=2, unique=True))
        if full
        else []
    )
    never_unknown = {"approvals"} | {p for p, spec in FACT_SPECS.items() if spec.absent is not None}
    partial_facts = {k: v for k, v in full.items() if k not in drop or k in never_unknown}
    partial = decide(partial_facts)
    assert partial is not None
    if partial.outcome != "cannot-decide":
        assert partial.outcome == whole.outcome, (partial_facts, full)


@settings(max_examples=300, deadline=None)
@given(flows())
def test_every_decision_is_explained(flat: dict[str, Any]) -> None:
    decision = decide(flat)
    if decision is None:
        return
    assert decision.outcome in OUTCOMES
    assert decision.reasons
    assert all(r.clause and r.file for r in decision.reasons)
    assert (decision.outcome == "cannot-decide") == bool(decision.missing)
    assert all(m not in Flow.from_mapping(nest(flat)).facts for m in decision.missing)
    if decision.outcome == "applies":
        assert decision.compliance == "opt-out-applied" and decision.exemption is None
    if decision.outcome == "does-not-apply":
        assert decision.compliance


JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.sampled_from(["research", "s251", "yes"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from([s.path.split(".")[0] for s in FACTS] + ["purpse", "recipient", "origin", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, JUNK, max_size=6))
def test_any_mapping_is_decided_or_refused_with_an_input_error(doc: dict[str, Any]) -> None:
    try:
        decision = assess(doc)
    except InputError as exc:
        assert exc.hint, exc.message  # every refusal says how to fix it
        return
    assert decision.outcome in OUTCOMES


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}\n #'\"!&*0y")), max_size=60))
def test_any_text_is_read_or_refused_with_an_input_error(text: str) -> None:
    try:
        parse_flow_text(text, source="flow.yaml")
    except InputError as exc:
        assert exc.hint and exc.exit_code == 3

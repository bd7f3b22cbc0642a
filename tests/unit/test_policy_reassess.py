"""The register under the current rules: each decision records its rules version and sources, and
``reassess_all`` finds the flows registered under older rules whose answer would now change."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from tests.support.old_register import NDRS, RESEARCH, T0, old_register

from optout import audit
from optout.policy import rules_version
from optout.policy.register import (
    add_flow,
    changed_under_current_rules,
    describe_reassessment,
    edit_flow,
    get_flow,
    history,
    reassess_all,
)
from optout.store import Store

TODAY = date(2026, 6, 1)


def test_flows_decided_under_rules_1_that_the_current_rules_answer_differently(tmp_path: Path) -> None:
    store = Store(old_register(tmp_path / "old.db"))  # upgrades to the newest schema (0003)
    assert get_flow(store, "ndrs-tumours").rules_version == "1"
    assert history(store, "ndrs-tumours")[0].rules_version == "1"

    every = {r.flow_id: r for r in reassess_all(store, today=TODAY)}
    assert every["hf-study"].older_rules and not every["hf-study"].changed  # same answer

    changed = changed_under_current_rules(store, today=TODAY)
    assert [r.flow_id for r in changed] == ["ndrs-tumours"]
    r = changed[0]
    assert (r.stored_decision, r.decision, r.exemption) == (
        "applies",
        "does-not-apply",
        "phe-national-cancer-register",
    )
    assert (r.stored_rules_version, r.rules_version) == ("1", rules_version())
    assert "002 NOTED EXCLUSIONS" in r.clauses and "NDRS notice" in r.clauses
    assert "NHS England since 1 February 2023" in r.reason
    assert r.holder is not None and r.holder["holder"] == "nhs-england"
    text = describe_reassessment(r)
    assert (
        "recorded applies under rules 1" in text
        and "does-not-apply (exempt: phe-national-cancer-register)" in text
    )
    assert json.loads(json.dumps(r.to_dict(), default=str))["changed"] is True

    # recording the new answer makes a version under the current rules; then nothing is left
    rec, _decision, keys = edit_flow(store, "ndrs-tumours", reassess=True, actor="dpo", now=T0)
    assert keys == ["(re-assessed)"] and rec.version == 2 and rec.decision == "does-not-apply"
    assert rec.rules_version == rules_version() == history(store, "ndrs-tumours")[-1].rules_version
    assert changed_under_current_rules(store, today=TODAY) == []


def test_a_new_decision_records_its_rules_version_and_sources(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    rec, decision = add_flow(store, NDRS, flow_id="ndrs", actor="dpo", now=T0)
    assert rec.rules_version == decision.rules_version == rules_version()
    assert rules_version().startswith("2+") and len(rules_version()) == len("2+") + 12
    details = audit.entries(store)[-1].details_dict
    assert details["rules_version"] == rules_version()
    assert "https://digital.nhs.uk/ndrs/transparency-notice" in details["sources"]
    assert "002_fb9d29bc94a7281f.txt" in details["sources"]
    assert get_flow(store, "ndrs").to_dict()["rules_version"] == rules_version()


def test_a_flow_whose_facts_no_longer_read_is_listed_with_the_error(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    add_flow(store, RESEARCH, flow_id="hf", now=T0)
    with store.begin() as conn:  # a word an older vocabulary had
        conn.execute(
            sa.text("UPDATE flows SET facts = :f WHERE id = 'hf'"),
            {"f": json.dumps({**RESEARCH, "purpose": ["care-data"]})},
        )
    [r] = reassess_all(store)
    assert r.changed and r.decision is None and r.error
    assert "care-data" in r.reason and "purpose" in r.reason

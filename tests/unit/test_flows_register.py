"""The register of data flows (optout.policy.register): versions, audit entries, decisions, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from optout import audit
from optout.errors import InputError, NotFoundError, PolicyRefusal, UsageError
from optout.policy.register import (
    add_flow,
    changed_keys,
    edit_flow,
    flow_for_release,
    get_flow,
    history,
    list_flows,
    parse_assignments,
)
from optout.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

RESEARCH: dict[str, Any] = {
    "name": "Heart failure study",
    "owner": "Practice DPO",
    "review_date": "2027-03-31",
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential", "nhs_number": "present"},
    "purpose": "research",
    "legal_basis": "s251",
    "recipient": {"name": "University of Exampleshire", "type": "university", "role": "third-party"},
}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'meta.db'}")


def _write(tmp_path: Path, name: str, doc: dict[str, Any]) -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


def test_add_from_a_file_stores_version_1_decision_and_audit(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path, "heart-failure.yaml", RESEARCH)
    rec, decision = add_flow(store, path, actor="dpo", now=T0)
    assert rec.id == "heart-failure"  # from the file name
    assert (rec.version, rec.decision, rec.compliance) == (1, "applies", "opt-out-applied")
    assert decision.outcome == "applies"
    assert rec.recipient == "University of Exampleshire"
    assert rec.owner == "Practice DPO" and rec.purpose == "research" and rec.legal_basis == "s251"
    assert rec.review_date == "2027-03-31"
    assert rec.facts["recipient"]["role"] == "third-party"
    [v1] = history(store, "heart-failure")
    assert (v1.version, v1.changed_by, v1.decision) == (1, "dpo", "applies")
    assert v1.changed_at.startswith("2026-03-02T09:00")
    [entry] = audit.entries(store)
    assert (entry.action, entry.subject, entry.actor) == ("flow.added", "heart-failure", "dpo")
    details = entry.details_dict
    assert details["decision"] == "applies" and details["version"] == 1
    assert "002 NOT DIRECT CARE" in details["clauses"]


def test_add_from_a_mapping_needs_or_makes_an_id(store: Store) -> None:
    rec, _ = add_flow(store, RESEARCH, now=T0)
    assert rec.id == "heart-failure-study"
    rec2, _ = add_flow(store, RESEARCH, flow_id="hf-2", now=T0)
    assert rec2.id == "hf-2"


def test_review_date_defaults_to_a_year_and_overdue_is_flagged(store: Store) -> None:
    doc = {k: v for k, v in RESEARCH.items() if k != "review_date"}
    rec, _ = add_flow(store, doc, flow_id="hf", now=T0)
    assert rec.review_date == "2027-03-02"
    assert not rec.review_overdue(T0 + timedelta(days=365))
    assert rec.review_overdue(T0 + timedelta(days=366))


@pytest.mark.parametrize("bad_id", ["Heart Failure", "-x", "a" * 65, "hf_1", ""])
def test_bad_ids_are_refused(store: Store, bad_id: str) -> None:
    with pytest.raises(UsageError):
        add_flow(store, RESEARCH, flow_id=bad_id, now=T0)
    assert list_flows(store) == []


def test_duplicate_id_is_refused_with_the_edit_command(store: Store) -> None:
    add_flow(store, RESEARCH, flow_id="hf", now=T0)
    with pytest.raises(UsageError) as exc:
        add_flow(store, RESEARCH, flow_id="hf", now=T0)
    assert "optout flow edit hf" in (exc.value.hint or "")
    assert len(history(store, "hf")) == 1


def test_a_bad_flow_file_is_an_input_error_and_nothing_is_stored(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path, "typo.yaml", {**RESEARCH, "purpose": "reserch"})
    with pytest.raises(InputError) as exc:
        add_flow(store, path, now=T0)
    assert "research" in (exc.value.hint or "")  # did you mean
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(InputError):
        add_flow(store, tmp_path / "broken.yaml", now=T0)
    with pytest.raises(InputError):
        add_flow(store, tmp_path / "missing.yaml", now=T0)
    assert list_flows(store) == [] and audit.entries(store) == []


def test_edit_with_set_makes_a_new_version_and_names_what_changed(store: Store) -> None:
    add_flow(store, RESEARCH, flow_id="hf", actor="dpo", now=T0)
    rec, decision, keys = edit_flow(
        store, "hf", set_values=["recipient.role=processor"], actor="analyst", now=T0 + timedelta(days=1)
    )
    assert keys == ["recipient.role"]
    assert rec.version == 2 and rec.decision == "does-not-apply" and decision.compliance == "not-a-disclosure"
    versions = history(store, "hf")
    assert [(v.version, v.changed_by, v.decision) for v in versions] == [
        (1, "dpo", "applies"),
        (2, "analyst", "does-not-apply"),
    ]
    last = audit.entries(store)[-1]
    assert (last.action, last.actor) == ("flow.edited", "analyst")
    assert last.details_dict["changed"] == ["recipient.role"] and last.details_dict["previous_version"] == 1


def test_edit_with_a_file_and_with_no_change(store: Store, tmp_path: Path) -> None:
    add_flow(store, RESEARCH, flow_id="hf", now=T0)
    same = _write(tmp_path, "same.yaml", RESEARCH)
    rec, _d, keys = edit_flow(store, "hf", same, now=T0)
    assert keys == [] and rec.version == 1
    assert len(audit.entries(store)) == 1
    changed = _write(
        tmp_path, "new.yaml", {**RESEARCH, "purpose": ["research", "planning"], "owner": "Caldicott"}
    )
    rec, _d, keys = edit_flow(store, "hf", changed, now=T0)
    assert keys == ["owner", "purpose"] and rec.version == 2 and rec.purpose == "research, planning"


def test_reassess_records_a_changed_decision_only(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    add_flow(store, RESEARCH, flow_id="hf", now=T0)
    rec, _d, keys = edit_flow(store, "hf", reassess=True, now=T0)
    assert keys == [] and rec.version == 1  # the policy has not changed: nothing to record
    import optout.policy

    real = optout.policy.assess

    def stricter(flow: Any) -> Any:
        import dataclasses

        return dataclasses.replace(real(flow), outcome="cannot-decide", compliance=None)

    monkeypatch.setattr(optout.policy, "assess", stricter)
    rec, _d, keys = edit_flow(store, "hf", reassess=True, actor="dpo", now=T0)
    assert keys == ["(re-assessed)"] and rec.version == 2 and rec.decision == "cannot-decide"
    assert audit.entries(store)[-1].details_dict["changed"] == ["(re-assessed)"]


def test_set_can_remove_a_fact_making_the_flow_undecidable(store: Store) -> None:
    add_flow(store, RESEARCH, flow_id="hf", now=T0)
    rec, decision, keys = edit_flow(store, "hf", set_values=["data.confidentiality="], now=T0)
    assert keys == ["data.confidentiality"]
    assert rec.decision == "cannot-decide" and "data.confidentiality" in decision.missing


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ({"set_values": ["purpose"]}, UsageError),  # not key=value
        ({"set_values": ["=x"]}, UsageError),
        ({"set_values": ["a..b=1"]}, UsageError),
        ({"set_values": ["id=other"]}, UsageError),  # ids never change
        ({}, UsageError),  # nothing to change
        ({"set_values": ["recipient.role=processer"]}, InputError),  # misspelt: did you mean
        ({"set_values": ["colour=blue"]}, InputError),  # unknown key
    ],
)
def test_bad_edits(store: Store, args: dict[str, Any], error: type[Exception]) -> None:
    add_flow(store, RESEARCH, flow_id="hf", now=T0)
    with pytest.raises(error):
        edit_flow(store, "hf", now=T0, **args)
    assert get_flow(store, "hf").version == 1


def test_unknown_flow_suggests_a_close_id(store: Store) -> None:
    add_flow(store, RESEARCH, flow_id="heart-failure", now=T0)
    with pytest.raises(NotFoundError) as exc:
        get_flow(store, "heart-failur")
    assert "heart-failure" in (exc.value.hint or "")
    with pytest.raises(NotFoundError):
        edit_flow(store, "nope", set_values=["owner=x"], now=T0)


def test_parse_assignments_reads_yaml_values() -> None:
    assert parse_assignments(["a.b=true", "n=3", "l=[x, y]", "s=some text", "e="]) == [
        (["a", "b"], True),
        (["n"], 3),
        (["l"], ["x", "y"]),
        (["s"], "some text"),
        (["e"], None),
    ]


def test_changed_keys_are_dotted_and_never_values() -> None:
    old = {"a": 1, "r": {"role": "x", "name": "n"}}
    new = {"a": 1, "r": {"role": "y", "name": "n"}, "b": 2}
    assert changed_keys(old, new) == ["b", "r.role"]


def test_flow_for_release_by_decision(store: Store) -> None:
    add_flow(store, RESEARCH, flow_id="applies", now=T0)
    assert flow_for_release(store, "applies").id == "applies"
    add_flow(store, {**RESEARCH, "legal_basis": "explicit-consent"}, flow_id="consent", now=T0)
    with pytest.raises(PolicyRefusal) as exc:
        flow_for_release(store, "consent")
    assert "needs no opt-out release" in exc.value.message and "consent" in exc.value.message
    doc = {k: v for k, v in RESEARCH.items() if k != "purpose"}
    add_flow(store, doc, flow_id="unsure", now=T0)
    with pytest.raises(PolicyRefusal) as exc:
        flow_for_release(store, "unsure")
    assert "cannot yet decide" in exc.value.message and "purpose" in exc.value.message
    with pytest.raises(NotFoundError):
        flow_for_release(store, "nope")

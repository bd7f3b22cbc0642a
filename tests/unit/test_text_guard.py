"""The one guard for free text (optout.text), and every place a free-text value enters.

Issue 7, fault 3: a flow named "Study for 9434765919" was assessed, printed and stored. Each test
here asserts that the value is refused (or, when it was stored before the guard, masked), that
the error names the field, and that the number is not in the error, in any spelling.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from tests.support.releases import make_release

from optout import audit
from optout.errors import InputError, Location, OptoutError, UsageError
from optout.nhs_number import Range, check_digit, classify_range
from optout.store import Store, disclosures, flow_versions, flows, releases
from optout.text import HIDDEN, contains_nhs_number, find_nhs_number, guard_free_text, mask, mask_nested

NUMBER = "9434765919"  # valid, test range (9xx)
BAD_CHECK = "9434765918"  # fails Modulus 11
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def valid_in(first_nine: int) -> str:
    """The first valid 10-digit number at or after FIRST_NINE (computed, never a literal)."""
    while check_digit(first_nine) is None:
        first_nine += 1
    return f"{first_nine * 10 + check_digit(first_nine):010d}"  # type: ignore[operator]


def absent(text: str, number: str = NUMBER) -> bool:
    return number not in re.sub(r"[\s\-]", "", text)


# (value, refused?) — ids say what each case is, so a failing run never prints a number as its name
CASES: list[tuple[str, str, bool]] = [
    ("the reported case", f"Study for {NUMBER}", True),
    ("the bare number", NUMBER, True),
    ("spaced 3-3-4", "Study for 943 476 5919", True),
    ("hyphenated 3-3-4", "Study for 943-476-5919", True),
    ("spaced and hyphenated", "943 - 476 - 5919", True),
    ("mixed separators", "943 476-5919", True),
    ("double spaces", "943  476  5919", True),
    ("other grouping", "9434 765 919", True),
    ("after other digits", "cohort 12 943 476 5919", True),
    ("line breaks", "943\n476\n5919", True),
    ("no-break spaces", "943\u00a0476\u00a05919", True),
    ("en dashes", "943\u2013476\u20135919", True),
    ("full-width digits", "\uff19\uff14\uff13\uff14\uff17\uff16\uff15\uff19\uff11\uff19", True),
    ("Arabic-Indic digits", "\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669", True),
    ("glued to a word", f"NHS{NUMBER}", True),
    ("in a file name", f"extract_{NUMBER}.csv", True),
    ("mixed-case word", f"Dec{NUMBER}", True),
    ("a spreadsheet float", f"{NUMBER}.0", True),
    ("in brackets", f"patient ({NUMBER})", True),
    ("invalid check digit", f"Study for {BAD_CHECK}", False),
    ("invalid check digit, spaced", "943 476 5918", False),
    ("plain words", "Heart failure study", False),
    ("empty", "", False),
    ("an approval reference", "CAG 10-02(d)/2015", False),
    ("a date and time", "2026-03-01 09:30", False),
    ("an ISO time", "2026-03-01T09:30:00.123456+00:00", False),
    ("a release id", "rel-20260301-093000-943476", False),
    ("a local id", "optout-oneoff-20260301T093000Z-94347659", False),
    ("eleven digits", NUMBER + "1", False),
    ("nine digits", NUMBER[:9], False),
    ("dots are not separators", "943.476.5919", False),
    ("a decimal fraction", f"0.{NUMBER}", False),
    ("a lower-case hex hash", f"a{NUMBER}f" + "0" * 52, False),
    ("an upper-case hex token", f"A{NUMBER}F", False),
    ("a UK phone number", "0113 496 0000", False),
]


@pytest.mark.parametrize(("value", "refused"), [(v, r) for _id, v, r in CASES], ids=[c[0] for c in CASES])
def test_contains_nhs_number(value: str, refused: bool) -> None:
    assert contains_nhs_number(value) is refused
    masked = mask(value)
    assert (HIDDEN in masked) is refused
    assert not contains_nhs_number(masked)


def test_a_real_sha256_is_never_refused() -> None:
    assert not any(contains_nhs_number(hashlib.sha256(str(i).encode()).hexdigest()) for i in range(3000))


@pytest.mark.parametrize(
    ("first_nine", "issued", "refused"),
    [
        (450_000_000, Range.ENGLAND_WALES_IOM, True),
        (612_345_678, Range.ENGLAND_WALES_IOM, True),
        (10_100_000, Range.SCOTLAND_CHI, True),
        (320_000_001, Range.NORTHERN_IRELAND, True),
        (943_476_591, Range.TEST, True),  # decision: test numbers are refused too (see optout.text)
        (500_000_000, Range.UNALLOCATED, False),  # never issued: not anyone's number
        (800_000_000, Range.UNALLOCATED, False),
        (312_000_000, Range.UNALLOCATED, False),
    ],
    ids=["england", "england-6xx", "scotland-chi", "northern-ireland", "test-9xx", "5xx", "8xx", "312"],
)
def test_issued_ranges_and_test_numbers_are_refused(first_nine: int, issued: Range, refused: bool) -> None:
    n = valid_in(first_nine)
    assert classify_range(int(n)) is issued
    for spelling in (n, f"{n[:3]} {n[3:6]} {n[6:]}", f"{n[:3]}-{n[3:6]}-{n[6:]}"):
        assert contains_nhs_number(f"Study for {spelling}") is refused


def test_guard_names_the_field_never_the_value() -> None:
    assert guard_free_text("'name'", "Heart failure study") == "Heart failure study"
    assert guard_free_text("'name'", None) is None
    where = Location(file="flows/study.yaml", line=1, column="name")
    with pytest.raises(InputError) as exc:
        guard_free_text("'name'", "Study for 943 476 5919", where=where)
    err = exc.value
    assert err.exit_code == 3
    text = err.render()
    assert "'name' holds what looks like an NHS number" in text
    assert "file study.yaml, line 1, column 'name'" in text and "how to fix" in text
    assert absent(text) and absent(str(err.to_dict()))
    assert where.value_class is None  # the caller's Location is not changed

    with pytest.raises(UsageError) as usage:
        guard_free_text("--to", f"Clinic {NUMBER}", error=UsageError)
    assert usage.value.exit_code == 2 and usage.value.message.startswith("--to holds")
    assert absent(usage.value.render())


def test_mask_and_find_in_nested_data() -> None:
    assert mask(f"A {NUMBER} and 943 476 5919.") == f"A {HIDDEN} and {HIDDEN}."
    doc = {"a": [1, {"b": f"x {NUMBER}"}], f"k{NUMBER}": True, "n": int(NUMBER)}
    masked = mask_nested(doc)
    assert masked["a"] == [1, {"b": f"x {HIDDEN}"}] and f"k{HIDDEN}" in masked
    assert masked["n"] == int(NUMBER)  # numbers are not text: mask_nested is for printing text
    assert find_nhs_number(doc, "details") == "details.a[1].b"
    assert find_nhs_number({"k": int(NUMBER)}, "d") == "d.k"
    assert find_nhs_number({f"k{NUMBER}": 1}, "d") == "d (a key)"
    assert find_nhs_number({"ok": [True, None, 1.5, "fine", 12]}, "d") is None


# --- audit.record: the same detector, still walking nested details -------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'meta.db'}")


def _count(store: Store) -> int:
    return len(audit.entries(store))


@pytest.mark.parametrize(
    "details",
    [
        {"oops": "943 476 5919"},
        {"reason": f"withdrawn: wrong patient {NUMBER}"},  # inside a sentence (was let through)
        {"files": ["a.csv", f"extract_{NUMBER}.csv"]},
        {"nested": {"deep": [{"x": "943-476-5919"}]}},
        {"n": int(NUMBER)},
    ],
    ids=["spaced", "in-a-sentence", "in-a-list", "nested", "an-integer"],
)
def test_audit_record_refuses_a_number_anywhere_in_details(store: Store, details: dict[str, Any]) -> None:
    with pytest.raises(OptoutError) as exc:
        audit.record(store, "test", actor="t", details=details)
    assert "details." in exc.value.message and absent(exc.value.render())
    assert _count(store) == 0


def test_audit_record_refuses_subject_and_actor(store: Store) -> None:
    with pytest.raises(OptoutError) as exc:
        audit.record(store, "test", actor="t", subject=f"flow-{NUMBER}")
    assert "(subject)" in exc.value.message and absent(exc.value.render())
    with pytest.raises(UsageError) as usage:
        audit.record(store, "test", actor=f"clerk {NUMBER}")
    assert "actor" in usage.value.message and absent(usage.value.render())
    assert _count(store) == 0


def test_audit_record_keeps_hashes_and_counts(store: Store) -> None:
    sha = f"a{NUMBER}f" + "0" * 52
    e = audit.record(
        store, "test", actor="t", subject="rel-20260301-093000-943476", details={"sha256": sha, "rows": 12}
    )
    assert e.details_dict["sha256"] == sha


# --- flow files ----------------------------------------------------------------------------------

FLOW: dict[str, Any] = {
    "name": "Heart failure study",
    "owner": "Practice DPO",
    "description": "Readmissions after discharge",
    "review_date": "2027-03-31",
    "origin": {"sector": "health", "country": "england", "funding": "public", "organisation": "PCN"},
    "data": {"confidentiality": "confidential", "nhs_number": "present"},
    "purpose": "research",
    "legal_basis": "s251",
    "approvals": ["CAG 10-02(d)/2015"],
    "recipient": {"name": "University of Exampleshire", "type": "university", "role": "third-party"},
    "screening": {"programme": "Bowel"},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = yaml.safe_load(yaml.safe_dump(FLOW))
    node = doc
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return doc


TEXT_FIELDS = [
    "name",
    "description",
    "owner",
    "origin.organisation",
    "recipient.name",
    "screening.programme",
    "format",
]


@pytest.mark.parametrize("path", TEXT_FIELDS)
def test_every_free_text_key_of_a_flow_file_is_guarded(path: str) -> None:
    from optout.policy.flow import parse_flow_text

    text = yaml.safe_dump(_with(path, "about 943 476 5919"), sort_keys=False)
    with pytest.raises(InputError) as exc:
        parse_flow_text(text, source="study.yaml")
    err = exc.value
    assert err.where is not None and err.where.column == path and err.where.line
    assert f"'{path}' holds what looks like an NHS number" in err.message
    assert absent(err.render())


def test_approvals_a_misspelt_word_and_an_unknown_key_do_not_echo_a_number() -> None:
    from optout.policy import Flow

    for doc, column in (
        (_with("approvals", ["CAG 10-02(d)/2015", f"ref {NUMBER}"]), "approvals"),
        (_with("purpose", NUMBER), "purpose"),
        (_with("recipient.type", f"nhs {NUMBER}"), "recipient.type"),
        ({**FLOW, NUMBER: "x"}, None),
    ):
        with pytest.raises(InputError) as exc:
            Flow.from_mapping(doc, source="study.yaml")
        assert "NHS number" in exc.value.message
        if column is not None:
            assert exc.value.where is not None and exc.value.where.column == column
        assert absent(exc.value.render())


def test_the_name_taken_from_the_file_name_is_guarded(tmp_path: Path) -> None:
    from optout.policy import load_flow

    doc = dict(FLOW)
    del doc["name"]
    path = tmp_path / f"study-{NUMBER}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(InputError) as exc:
        load_flow(path)
    assert "file name" in exc.value.message and absent(exc.value.render())


def test_a_clean_flow_still_loads() -> None:
    from optout.policy import Flow

    flow = Flow.from_mapping(FLOW, source="study.yaml")
    assert flow.name == "Heart failure study" and flow.approvals == ("CAG 10-02(d)/2015",)


# --- the register --------------------------------------------------------------------------------


def test_register_refuses_and_stores_nothing(store: Store, tmp_path: Path) -> None:
    from optout.policy.register import add_flow, list_flows

    with pytest.raises(InputError):
        add_flow(store, _with("owner", f"DPO {NUMBER}"), flow_id="f", actor="t", now=T0)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_with("name", f"Study for {NUMBER}")), encoding="utf-8")
    with pytest.raises(InputError) as exc:
        add_flow(store, path, actor="t", now=T0)
    assert exc.value.where is not None and exc.value.where.column == "name"
    from optout.policy import Flow

    by_hand = Flow(facts={"name": "Study", "owner": f"DPO {NUMBER}", "purpose": ("research",)})
    with pytest.raises(InputError) as unchecked:  # a Flow built without from_mapping
        add_flow(store, by_hand, flow_id="f", actor="t", now=T0)
    assert "'facts.owner'" in unchecked.value.message and absent(unchecked.value.render())
    with pytest.raises(UsageError) as bad_id:
        add_flow(store, FLOW, flow_id=f"study-{NUMBER}", actor="t", now=T0)
    assert "flow id" in bad_id.value.message and absent(bad_id.value.render())
    with pytest.raises(UsageError) as bad_actor:
        add_flow(store, FLOW, flow_id="f", actor=f"clerk {NUMBER}", now=T0)
    assert "actor" in bad_actor.value.message and absent(bad_actor.value.render())
    assert list_flows(store) == [] and audit.entries(store) == []


def test_register_edit_with_set_is_a_usage_error(store: Store) -> None:
    from optout.policy.register import add_flow, edit_flow, get_flow

    add_flow(store, FLOW, flow_id="f", actor="t", now=T0)
    for value in (f"recipient.name=Unit {NUMBER}", f"name{NUMBER}", f"{NUMBER}=x"):
        with pytest.raises(UsageError) as exc:
            edit_flow(store, "f", set_values=[value], actor="t", now=T0)
        assert "--set" in exc.value.message and absent(exc.value.render())
    assert get_flow(store, "f").version == 1


def _old_rows(store: Store) -> None:
    """What an older version let into the register (before the guard)."""
    with store.begin() as conn:
        facts = dict(conn.execute(sa.select(flows.c.facts)).scalar_one())
        facts["name"] = f"Study for {NUMBER}"
        conn.execute(
            flows.update().values(
                name=f"Study for {NUMBER}", owner="DPO 943 476 5919", recipient=f"Unit {NUMBER}", facts=facts
            )
        )
        conn.execute(flow_versions.update().values(changed_by=f"clerk {NUMBER}"))


def test_old_register_rows_are_read_masked(store: Store) -> None:
    from optout.policy.register import add_flow, edit_flow, get_flow, history, list_flows

    add_flow(store, FLOW, flow_id="f", actor="t", now=T0)
    _old_rows(store)
    rec = get_flow(store, "f")
    assert (rec.name, rec.owner, rec.recipient) == (f"Study for {HIDDEN}", f"DPO {HIDDEN}", f"Unit {HIDDEN}")
    assert rec.facts["name"] == f"Study for {HIDDEN}"
    assert absent(str(rec.to_dict())) and absent(str([r.to_dict() for r in list_flows(store)]))
    assert [v.changed_by for v in history(store, "f")] == [f"clerk {HIDDEN}"]
    # an edit stores the masked text, so the number leaves the current version; the change is named
    rec2, _decision, keys = edit_flow(store, "f", set_values=["owner=Practice DPO"], actor="t", now=T0)
    assert rec2.version == 2 and keys == ["name"]
    with store.begin() as conn:
        row = conn.execute(sa.select(flows)).one()
    assert absent(str(row.facts)) and row.name == f"Study for {HIDDEN}"


# --- releases ------------------------------------------------------------------------------------


def test_disclose_withdraw_and_accept_link_risk_are_guarded(store: Store, tmp_path: Path) -> None:
    from optout.release.lifecycle import disclose, get_release, withdraw

    make_release(store, tmp_path, "r1", checked_at=T0)
    make_release(
        store,
        tmp_path,
        "r2",
        checked_at=T0,
        files={"a.csv": "id,age\n1,40\n", "b.csv": "id,age\n1,40\n"},
        not_upheld=["a.csv"],
    )
    later = T0 + timedelta(days=1)
    attempts = [
        ("--to", lambda: disclose(store, "r1", to=f"Clinic {NUMBER}", actor="t", now=later)),
        ("actor", lambda: disclose(store, "r1", to="Leeds", actor=f"clerk {NUMBER}", now=later)),
        ("--reason", lambda: withdraw(store, "r1", reason="wrong person 943 476 5919", actor="t", now=later)),
        ("actor", lambda: withdraw(store, "r1", reason="wrong cohort", actor=f"clerk {NUMBER}", now=later)),
        (
            "--accept-link-risk",
            lambda: disclose(store, "r2", to="Leeds", actor="t", now=later, accept_link_risk=f"ok {NUMBER}"),
        ),
    ]
    for field, attempt in attempts:
        with pytest.raises(UsageError) as exc:
            attempt()
        assert field in exc.value.message and absent(exc.value.render())
    assert get_release(store, "r1").stored_state == "prepared"
    assert get_release(store, "r2").stored_state == "prepared"
    assert audit.entries(store) == []


def test_old_release_rows_are_read_masked(store: Store, tmp_path: Path) -> None:
    from optout.release.lifecycle import get_release, list_releases

    make_release(store, tmp_path, "r1", checked_at=T0)
    with store.begin() as conn:
        conn.execute(
            disclosures.insert().values(
                release_id="r1",
                recipient=f"Clinic {NUMBER}",
                disclosed_at=T0.isoformat(),
                actor=f"c {NUMBER}",
            )
        )
        conn.execute(releases.update().values(details={"withdrawn": {"reason": NUMBER}}))
    rel = get_release(store, "r1")
    assert [(d.recipient, d.actor) for d in rel.disclosures] == [(f"Clinic {HIDDEN}", f"c {HIDDEN}")]
    assert rel.details["withdrawn"]["reason"] == HIDDEN
    assert absent(str(rel.to_dict())) and absent(str([r.to_dict() for r in list_releases(store)]))


# --- settings, profiles, check requests, evidence ----------------------------------------------


def test_the_actor_from_the_environment_is_guarded(monkeypatch: pytest.MonkeyPatch) -> None:
    from optout.config import load_settings

    monkeypatch.setenv("OPTOUT_ACTOR", "Dr Who 943-476-5919")
    with pytest.raises(UsageError) as exc:
        load_settings(env={})
    assert "OPTOUT_ACTOR" in exc.value.message and absent(exc.value.render())
    monkeypatch.setenv("OPTOUT_ACTOR", "ig-lead")
    assert load_settings(env={}).actor == "ig-lead"


@pytest.mark.parametrize("key", ["name", "title", "note"])
def test_collection_profile_names_and_notes_are_guarded(key: str) -> None:
    from optout.registry.gate import parse_profile

    doc = {
        "format": "optout-collection-profile/1",
        "name": "mini",
        "nhs_number_column": "nhs",
        "consent": {"column": "consent", "yes_values": ["Yes"], "no_values": ["No"]},
        "registry_fields": ["nhs", "cleft_type"],
        "audit_fields": ["speech"],
        key: f"registry {NUMBER}",
    }
    with pytest.raises(InputError) as exc:
        parse_profile(yaml.safe_dump(doc).encode(), source="mini.yaml")
    assert f"'{key}'" in exc.value.message and absent(exc.value.render())
    assert exc.value.where is not None and exc.value.where.column == key


@pytest.mark.parametrize("option", ["subject", "local_id"])
def test_check_subject_and_local_id_are_guarded(tmp_path: Path, option: str) -> None:
    from optout.check.exchange import check_cohort
    from optout.config import Settings
    from optout.nhs_number import synthetic

    cohort = tmp_path / "cohort.csv"
    cohort.write_text("nhs_number\n" + "".join(f"{n}\n" for n in synthetic(5, seed=1)), encoding="utf-8")
    settings = Settings(home=tmp_path / "home", actor="t")
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    with pytest.raises(UsageError) as exc:
        check_cohort(
            cohort,
            out=tmp_path / "cleaned.dat",
            settings=settings,
            store=store,
            mailbox=object(),
            wait=None,
            subject=f"study-{NUMBER}" if option == "subject" else None,
            local_id=f"study-{NUMBER}" if option == "local_id" else None,
        )
    assert option.replace("_", "") in exc.value.message.lower() and absent(exc.value.render())
    requests = tmp_path / "home" / "requests"
    assert not requests.exists() or not any(requests.iterdir())


def test_evidence_pack_masks_old_rows(store: Store) -> None:
    from optout.audit.evidence import build_evidence
    from optout.policy.register import add_flow

    add_flow(store, FLOW, flow_id="f", actor="t", now=T0)
    _old_rows(store)
    data = build_evidence(store, start=T0 - timedelta(days=1), end=T0 + timedelta(days=1), actor="t")
    assert absent(str(data)) and HIDDEN in str(data["flows"])


def test_a_service_notification_quoting_a_number_is_not_audited() -> None:
    from optout.check.request import notification_summary

    body = b'{"status": "ERROR", "error": "invalid NHS number 943 476 5919 on line 2", "count": 3}'
    assert notification_summary(body) == {"status": "ERROR", "count": 3}

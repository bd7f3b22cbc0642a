"""Release lifecycle: prepared -> disclosed | expired | withdrawn (optout.release.lifecycle)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.support.releases import make_release

from optout import audit
from optout.errors import IntegrityError, NotFoundError, PolicyRefusal, UsageError
from optout.release.lifecycle import describe_deadline, disclose, get_release, list_releases, withdraw
from optout.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'meta.db'}")


def _actions(store: Store, subject: str) -> list[str]:
    return [e.action for e in audit.entries(store) if e.subject == subject]


def test_disclose_within_deadline_records_disclosure_and_audit(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0)
    result = disclose(store, "r1", to="University of Leeds", actor="ig-lead", now=T0 + timedelta(days=5))
    assert result.release.state() == "disclosed"
    assert [d.recipient for d in result.release.disclosures] == ["University of Leeds"]
    assert result.disclosure.actor == "ig-lead"
    entry = [e for e in audit.entries(store) if e.action == "release.disclosed"][-1]
    assert entry.subject == "r1" and entry.actor == "ig-lead"
    details = entry.details_dict
    assert details["recipient"] == "University of Leeds"
    assert details["days_left"] == 15.0
    assert details["files"] == 1


def test_state_is_expired_after_the_deadline_without_any_write(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0, source="cache")
    rel = get_release(store, "r1")
    assert rel.state(T0 + timedelta(days=13) - timedelta(seconds=1)) == "prepared"
    assert rel.state(T0 + timedelta(days=13, seconds=1)) == "expired"
    assert rel.stored_state == "prepared"
    assert describe_deadline(rel, T0 + timedelta(days=10)) == "3 days left"
    assert describe_deadline(rel, T0 + timedelta(days=15)) == "expired 2 days ago"
    assert describe_deadline(rel, T0 + timedelta(days=9, minutes=1)) == "3 days 23 h left"
    assert describe_deadline(rel, T0 + timedelta(days=12, hours=20)) == "4 h left"


def test_disclose_after_deadline_is_refused_says_why_and_what_to_do(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0)
    with pytest.raises(PolicyRefusal) as exc:
        disclose(store, "r1", to="X", now=T0 + timedelta(days=21))
    text = exc.value.render()
    assert "expired" in text and "001 §8.4" in text and "+ 20 days" in text
    assert "re-run the check" in (exc.value.hint or "") and "apply" in (exc.value.hint or "")
    rel = get_release(store, "r1")
    assert rel.stored_state == "expired"  # recorded when the refusal found it
    assert _actions(store, "r1") == ["release.expired"]
    # a second attempt is refused the same way, without a second expiry entry
    with pytest.raises(PolicyRefusal):
        disclose(store, "r1", to="X", now=T0 + timedelta(days=22))
    assert _actions(store, "r1") == ["release.expired"]


def test_unknown_release_is_not_found_with_a_suggestion(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "rel-2026-03-02-a", checked_at=T0)
    with pytest.raises(NotFoundError) as exc:
        disclose(store, "rel-2026-03-02-b", to="X", now=T0)
    assert "rel-2026-03-02-a" in (exc.value.hint or "")


def test_withdrawn_release_cannot_be_disclosed(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0)
    rel = withdraw(store, "r1", reason="wrong cohort", actor="a", now=T0 + timedelta(days=1))
    assert rel.state() == "withdrawn"
    assert rel.details["withdrawn"]["reason"] == "wrong cohort"
    with pytest.raises(PolicyRefusal) as exc:
        disclose(store, "r1", to="X", now=T0 + timedelta(days=2))
    assert "withdrawn" in exc.value.message and "wrong cohort" in exc.value.message
    with pytest.raises(PolicyRefusal, match="already withdrawn"):
        withdraw(store, "r1", reason="again", now=T0 + timedelta(days=2))
    assert _actions(store, "r1") == ["release.withdrawn"]


def test_withdraw_needs_a_reason_and_cannot_undo_a_disclosure(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0)
    with pytest.raises(UsageError):
        withdraw(store, "r1", reason="  ", now=T0)
    disclose(store, "r1", to="X", now=T0)
    with pytest.raises(PolicyRefusal) as exc:
        withdraw(store, "r1", reason="changed mind", now=T0)
    assert "001 §8.3" in (exc.value.hint or "")


def test_an_expired_release_can_be_withdrawn(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0, source="cache")
    rel = withdraw(store, "r1", reason="too late", now=T0 + timedelta(days=30))
    assert rel.state() == "withdrawn"


def test_disclosed_once_second_time_refused_other_recipient_is_onward_sharing(
    store: Store, tmp_path: Path
) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0)
    disclose(store, "r1", to="Leeds", now=T0)
    with pytest.raises(PolicyRefusal, match="already disclosed"):
        disclose(store, "r1", to="leeds ", now=T0)
    with pytest.raises(PolicyRefusal) as exc:
        disclose(store, "r1", to="Someone Else Ltd", now=T0)
    assert "onward sharing" in exc.value.message and "001 §8.3" in (exc.value.hint or "")


def test_recipient_is_required(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0)
    with pytest.raises(UsageError):
        disclose(store, "r1", to=" ", now=T0)


@pytest.mark.parametrize(
    "tamper",
    ["change-data", "delete-data", "add-file", "change-manifest", "remove-folder"],
)
def test_a_tampered_release_folder_is_an_integrity_error(store: Store, tmp_path: Path, tamper: str) -> None:
    out = make_release(store, tmp_path, "r1", checked_at=T0)
    if tamper == "change-data":
        (out / "episodes.csv").write_text("id,age\n1,40\n2,52\n", encoding="utf-8")
    elif tamper == "delete-data":
        (out / "episodes.csv").unlink()
    elif tamper == "add-file":
        (out / "extra.csv").write_text("id\n3\n", encoding="utf-8")
    elif tamper == "change-manifest":
        m = json.loads((out / "release.json").read_text())
        m["files"][0]["sha256"] = "0" * 64
        (out / "release.json").write_text(json.dumps(m))
    else:
        import shutil

        shutil.rmtree(out)
    with pytest.raises(IntegrityError):
        disclose(store, "r1", to="X", now=T0)
    assert get_release(store, "r1").stored_state == "prepared"
    assert _actions(store, "r1") == []


def test_release_without_a_recorded_check_is_refused(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0, source="none")
    with pytest.raises(PolicyRefusal, match="deadline"):
        disclose(store, "r1", to="X", now=T0)


def test_list_filters_by_state_now(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "old", checked_at=T0 - timedelta(days=30))
    make_release(store, tmp_path, "new", checked_at=T0)
    make_release(store, tmp_path, "gone", checked_at=T0)
    withdraw(store, "gone", reason="x", now=T0)
    assert {r.id for r in list_releases(store, now=T0, state="expired")} == {"old"}
    assert {r.id for r in list_releases(store, now=T0, state="prepared")} == {"new"}
    assert {r.id for r in list_releases(store, now=T0)} == {"old", "new", "gone"}
    with pytest.raises(UsageError):
        list_releases(store, state="sent")


def test_now_must_be_timezone_aware(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0)
    with pytest.raises(UsageError):
        disclose(store, "r1", to="X", now=datetime(2026, 3, 3))


IDS = "patient_id,age\n" + "".join(f"P{i:04d},{i % 90}\n" for i in range(60))
ANON = "ref,score\n" + "".join(f"p{i:04d},{i}\n" for i in range(30, 90))
OTHER = "code,score\n" + "".join(f"C{i:04d},{i}\n" for i in range(60))


def test_not_upheld_files_sharing_identifiers_are_refused_unless_accepted(
    store: Store, tmp_path: Path
) -> None:
    make_release(
        store,
        tmp_path,
        "r1",
        checked_at=T0,
        files={"ids.csv": IDS, "anon.csv": ANON},
        not_upheld=["anon.csv"],
    )
    with pytest.raises(PolicyRefusal) as exc:
        disclose(store, "r1", to="X", now=T0)
    assert "001 §8.1" in exc.value.message and "patient_id" in exc.value.message
    assert "P0030" not in exc.value.render() and "p0030" not in exc.value.render()
    result = disclose(store, "r1", to="X", now=T0, accept_link_risk="DPO accepted: ref is re-keyed weekly")
    assert result.linkcheck is not None and not result.linkcheck.ok
    details = [e for e in audit.entries(store) if e.action == "release.disclosed"][-1].details_dict
    assert details["accepted_link_risk"].startswith("DPO accepted")
    assert details["files_not_upheld"] == ["anon.csv"]
    assert details["linkcheck"]["findings"][0]["overlap"] == 30


def test_not_upheld_files_without_common_identifiers_go(store: Store, tmp_path: Path) -> None:
    make_release(
        store,
        tmp_path,
        "r1",
        checked_at=T0,
        files={"ids.csv": IDS, "other.csv": OTHER},
        not_upheld=["other.csv"],
    )
    result = disclose(store, "r1", to="X", now=T0)
    assert result.linkcheck is not None and result.linkcheck.ok


def test_upheld_releases_skip_the_linkage_check(store: Store, tmp_path: Path) -> None:
    make_release(store, tmp_path, "r1", checked_at=T0, files={"ids.csv": IDS, "anon.csv": ANON})
    assert disclose(store, "r1", to="X", now=T0).linkcheck is None

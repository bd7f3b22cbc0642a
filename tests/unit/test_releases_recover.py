"""Settling releases an interrupted ``optout apply`` left ``preparing`` (optout.release.recover), and
why neither ``preparing`` nor ``failed`` can ever be disclosed or withdrawn."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.support.releases import make_preparing_release

from optout import audit
from optout.audit.evidence import build_evidence
from optout.errors import PolicyRefusal
from optout.release.lifecycle import disclose, get_release, list_releases, withdraw
from optout.release.recover import RECONCILED, Hold, Settled, reconcile
from optout.store import Store, releases

NOW = datetime.now(UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'meta.db'}")


def _actions(store: Store, rid: str) -> list[str]:
    return [e.action for e in audit.entries(store) if e.subject == rid]


def test_a_folder_in_place_becomes_prepared_once(store: Store, tmp_path: Path) -> None:
    out, _ = make_preparing_release(store, tmp_path, "rel-a", in_place=True)
    assert reconcile(store) == [Settled("rel-a", "prepared")]
    assert reconcile(store) == []  # idempotent
    rel = get_release(store, "rel-a")
    assert rel.stored_state == "prepared" and "apply" not in rel.details
    assert _actions(store, "rel-a") == ["release.preparing", "release.prepared"]
    entry = next(e for e in audit.entries(store) if e.action == "release.prepared")
    assert entry.details_dict["reason"] == RECONCILED
    assert out.is_dir() and audit.verify(store).ok


def test_a_folder_that_never_appeared_fails_and_its_staging_goes(store: Store, tmp_path: Path) -> None:
    out, staging = make_preparing_release(store, tmp_path, "rel-b", in_place=False)
    assert [s.state() for s in list_releases(store)] == ["failed"]  # listing settles it
    assert not staging.exists() and not out.exists()
    rel = get_release(store, "rel-b")
    assert RECONCILED in rel.details["failed"]["reason"]
    assert _actions(store, "rel-b") == ["release.preparing", "release.failed"]
    assert list_releases(store, state="failed")[0].id == "rel-b"


def test_a_folder_that_holds_another_release_is_not_this_one(store: Store, tmp_path: Path) -> None:
    out, staging = make_preparing_release(store, tmp_path, "rel-c", in_place=False)
    out.mkdir()
    (out / "release.json").write_text(json.dumps({"release_id": "rel-other"}))
    assert reconcile(store) == [Settled("rel-c", "failed")]
    assert (out / "release.json").exists() and not staging.exists()  # OUT itself is never touched


def test_a_running_apply_is_left_alone(store: Store, tmp_path: Path) -> None:
    _out, staging = make_preparing_release(store, tmp_path, "rel-d", in_place=False)
    hold = Hold(staging)  # what the applying process holds from before "preparing" until it ends
    try:
        assert reconcile(store) == []
        assert staging.exists() and get_release(store, "rel-d").stored_state == "preparing"
        assert [r.id for r in list_releases(store, state="preparing")] == ["rel-d"]
        with pytest.raises(PolicyRefusal, match="not complete"):
            disclose(store, "rel-d", to="X", actor="t")
        with pytest.raises(PolicyRefusal, match="not complete"):
            withdraw(store, "rel-d", reason="r", actor="t")
    finally:
        hold.release()
    assert reconcile(store) == [Settled("rel-d", "failed")]


def test_another_hosts_apply_is_left_alone(store: Store, tmp_path: Path) -> None:
    make_preparing_release(store, tmp_path, "rel-e", in_place=False, host="another-host.invalid")
    assert reconcile(store) == []
    assert get_release(store, "rel-e").stored_state == "preparing"


def test_failed_is_never_disclosed_or_withdrawn(store: Store, tmp_path: Path) -> None:
    make_preparing_release(store, tmp_path, "rel-f", in_place=False)
    reconcile(store)
    with pytest.raises(PolicyRefusal, match="failed"):
        disclose(store, "rel-f", to="X", actor="t")
    with pytest.raises(PolicyRefusal, match="failed"):
        withdraw(store, "rel-f", reason="r", actor="t")
    assert _actions(store, "rel-f") == ["release.preparing", "release.failed"]


def test_two_processes_reconciling_at_once_record_each_outcome_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'meta.db'}"
    first = Store(url)
    for i in range(6):
        make_preparing_release(first, tmp_path, f"rel-{i}", in_place=i % 2 == 0)
    stores = [Store(url) for _ in range(4)]  # a pool (connections) each, as separate processes have
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def run(s: Store) -> None:
        try:
            start.wait()
            reconcile(s)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reconcile(first)  # whatever a busy lock made one of them skip
    with first.begin() as conn:
        states = dict(conn.execute(sa.select(releases.c.id, releases.c.state)).all())
    assert states == {f"rel-{i}": "prepared" if i % 2 == 0 else "failed" for i in range(6)}
    settled = [e for e in audit.entries(first) if e.action in ("release.prepared", "release.failed")]
    assert sorted(e.subject or "" for e in settled) == [f"rel-{i}" for i in range(6)]
    assert audit.verify(first).ok


def test_the_evidence_pack_counts_releases_by_state(store: Store, tmp_path: Path) -> None:
    make_preparing_release(store, tmp_path, "rel-g", in_place=True)
    make_preparing_release(store, tmp_path, "rel-h", in_place=False)
    reconcile(store)
    data = build_evidence(store, start=NOW - timedelta(days=1), end=NOW + timedelta(days=1))
    assert data["summary"]["releases_by_state"] == {"failed": 1, "prepared": 1}
    assert {r["id"]: r["state"] for r in data["releases"]} == {"rel-g": "prepared", "rel-h": "failed"}

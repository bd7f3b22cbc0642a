"""Both ways of checking (001 §8) end to end over a real mesh-sandbox and the reference service.

The organisation side (``optout.check`` / ``optout.check.cache``) talks to the sandbox through
``MeshMailbox``; the central side is the reference ``Responder``, driven deterministically with
``run_once()`` (called from the client's ``sleep`` while it waits, or between steps).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import requests

from optout import audit, check
from optout.check import cache, state
from optout.check.cleaned_list import read_cleaned_list
from optout.check.cohort import Cohort
from optout.config import MeshSettings, Settings
from optout.dat import read_dat_bytes
from optout.errors import IntegrityError, PendingError, PolicyRefusal, TransportError, UsageError
from optout.mesh import MeshMailbox
from optout.nhs_number import synthetic
from optout.store import Store

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
POPULATION = 2000
SEED = 4


@pytest.fixture
def settings(tmp_path: Path, org_settings: MeshSettings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("OPTOUT_CACHE_KEY", raising=False)
    return Settings(home=tmp_path / "home", mesh=org_settings, actor="tester")


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.db_url)


@pytest.fixture
def service(central_service):  # type: ignore[no-untyped-def]
    central_service.register.seed(POPULATION, 0.1, seed=SEED)
    central_service.register.publish()
    return central_service


def _cohort_file(tmp_path: Path, n: int = 500, *, extra_rows: str = "") -> tuple[Path, np.ndarray]:
    people = synthetic(POPULATION, seed=SEED)[:n]
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "cohort.csv"
    p.write_text("id,nhs_number\n" + "".join(f"r{i},{v}\n" for i, v in enumerate(people)) + extra_rows)
    return p, np.sort(people)


def _sleeper(service):  # type: ignore[no-untyped-def]
    def sleep(_seconds: float) -> None:
        service.responder.run_once()

    return sleep


def _org_inbox(settings: Settings) -> list[str]:
    with MeshMailbox(settings.mesh) as box:
        return list(box.inbox())


def _service_sends(service, local_id: str, body: bytes, subject: str = "SUCCESS") -> str:  # type: ignore[no-untyped-def]
    """Make the service mailbox send something to the organisation (duplicates, strangers)."""
    from optout.service.sandbox import ORG_MAILBOX

    return service.mailbox.send(
        recipient=ORG_MAILBOX,
        data=body,
        workflow_id="SPINE_NTT_UPHOLDING",
        subject=subject,
        local_id=local_id,
    )


# --------------------------------------------------------------------------- mode 1


def test_one_off_end_to_end(tmp_path: Path, settings: Settings, store: Store, service) -> None:  # type: ignore[no-untyped-def]
    cohort, people = _cohort_file(tmp_path, extra_rows="r-bad,1234567890\nr-empty,\n")
    out = tmp_path / "cleaned.dat"
    res = check.check_cohort(
        cohort, out=out, settings=settings, store=store, now=T0, sleep=_sleeper(service), first_poll=0.01
    )
    assert res.state == "collected" and res.sent_count == 500
    assert res.cohort is not None and {c.reason for c in res.cohort.invalid} == {"bad check digit", "missing"}
    expected = np.sort(service.register.answer(people))
    al = read_cleaned_list(out)
    assert np.array_equal(al.numbers, expected) and 0 < len(expected) < 500
    assert al.source == "one-off" and al.checked_at == T0 and al.deadline == T0 + timedelta(days=20)
    side = json.loads((tmp_path / "cleaned.dat.json").read_text())
    assert side["local_id"] == res.local_id and side["returned_count"] == len(expected)
    assert side["request_message_id"] and len(side["reply_message_ids"]) == 2  # SUCCESS + the list
    assert out.read_bytes().count(b"\r") == 0
    assert _org_inbox(settings) == []  # everything acknowledged
    acts = [e.action for e in audit.entries(store)]
    assert acts == ["check.sent", "check.collected"]
    # and the release made from it gets the 20-day deadline (001 §8.4)
    from optout.release import apply_opt_outs

    table = tmp_path / "patients.csv"
    table.write_text("nhs_number,x\n" + "".join(f"{p},1\n" for p in people[:50]))
    apply_opt_outs(
        [table], out_dir=tmp_path / "rel", cleaned_list=out, store=store, now=T0 + timedelta(days=1)
    )
    manifest = json.loads((tmp_path / "rel" / "release.json").read_text())
    assert manifest["check"]["source"] == "one-off"
    assert manifest["check"]["deadline"].startswith("2026-03-22T10:00:00")


def test_chunked_request_no_wait_then_collect(
    tmp_path: Path, settings: Settings, store: Store, service
) -> None:  # type: ignore[no-untyped-def]
    cohort, people = _cohort_file(tmp_path, n=1500)  # 18 000 bytes: 5 chunks of 4 KiB
    out = tmp_path / "cleaned.dat"
    res = check.check_cohort(cohort, out=out, settings=settings, store=store, wait=None, max_chunk_size=4096)
    assert res.state == "sent" and not out.exists()
    with pytest.raises(PendingError) as exc:
        check.collect(res.local_id, settings=settings, store=store)
    assert exc.value.exit_code == 7
    assert service.responder.run_once() >= 1
    done = check.collect(res.local_id, settings=settings, store=store)
    assert done.state == "collected"
    assert np.array_equal(read_cleaned_list(out).numbers, np.sort(service.register.answer(people)))


def test_rejection_is_told_apart(tmp_path: Path, settings: Settings, store: Store, service) -> None:  # type: ignore[no-untyped-def]
    # our client never sends an invalid number; force one in to see the service's rejection handled
    good = synthetic(5, seed=SEED)
    bad = int(good[0]) + 1 if good[0] % 10 != 9 else int(good[0]) - 1
    forced = Cohort(np.sort(np.append(good, bad)).astype(np.int64), "forced", None, 6, 0)
    out = tmp_path / "cleaned.dat"
    with pytest.raises(TransportError, match="rejected") as exc:
        check.check_cohort(
            forced, out=out, settings=settings, store=store, sleep=_sleeper(service), first_poll=0.01
        )
    assert exc.value.exit_code == 6 and not out.exists()
    (req,) = state.list_requests(store)
    assert req.state == "rejected"
    assert "check.rejected" in [e.action for e in audit.entries(store)]
    assert _org_inbox(settings) == []


def test_non_delivery_report(tmp_path: Path, settings: Settings, store: Store, mesh) -> None:  # type: ignore[no-untyped-def]
    cohort, _ = _cohort_file(tmp_path, n=20)
    res = check.check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, wait=None)
    r = requests.post(
        f"{mesh.url}/messageexchange/admin/report",
        json={
            "mailbox_id": settings.mesh.mailbox,
            "code": "14",
            "description": "Undelivered message",
            "workflow_id": "SPINE_NTT_UPHOLDING",
            "local_id": res.local_id,
            "linked_message_id": res.request_message_id,
            "status": "undeliverable",
        },
        timeout=60,
    )
    r.raise_for_status()
    with pytest.raises(TransportError, match="could not deliver"):
        check.collect(res.local_id, settings=settings, store=store)
    assert state.get(store, res.local_id).state == "failed"


def test_crash_after_sending_then_resume(
    tmp_path: Path,
    settings: Settings,
    store: Store,
    service,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    cohort, people = _cohort_file(tmp_path, n=300)
    real = state.transition

    def crash(store_: Store, local_id: str, new: str, **kw: object):  # type: ignore[no-untyped-def]
        if new == "sent":
            raise KeyboardInterrupt("killed right after MESH accepted the request")
        return real(store_, local_id, new, **kw)

    monkeypatch.setattr(state, "transition", crash)
    out = tmp_path / "cleaned.dat"
    with pytest.raises(KeyboardInterrupt):
        check.check_cohort(cohort, out=out, settings=settings, store=store, now=T0)
    monkeypatch.setattr(state, "transition", real)
    (req,) = state.list_requests(store)
    assert req.state == "prepared"
    # the service had not answered yet: resume sends again, both sends are answered
    res = check.resume(
        req.local_id,
        settings=settings,
        store=store,
        now=T0 + timedelta(minutes=5),
        sleep=_sleeper(service),
        first_poll=0.01,
        wait=timedelta(minutes=4),  # generous (real MESH sandbox, busy machine): over once collected
    )
    assert res.state == "collected"
    assert np.array_equal(read_cleaned_list(out).numbers, np.sort(service.register.answer(people)))
    assert read_cleaned_list(out).checked_at == T0  # the first attempt: conservative
    # the second answer arrives as a duplicate: acknowledged and noted on the next poll
    service.responder.run_once()
    other, _ = _cohort_file(tmp_path / "other", n=10)
    check.check_cohort(
        other,
        out=tmp_path / "o.dat",
        settings=settings,
        store=store,
        sleep=_sleeper(service),
        first_poll=0.01,
    )
    assert _org_inbox(settings) == []
    dups = state.get(store, req.local_id).details.get("duplicates", [])
    assert {d["kind"] for d in dups} >= {"cleaned-list"}


def test_unknown_local_id_is_left_and_reported(
    tmp_path: Path, settings: Settings, store: Store, service
) -> None:  # type: ignore[no-untyped-def]
    stranger = _service_sends(service, "not-one-of-ours", b"9434765919,\n", subject="x")
    cohort, _ = _cohort_file(tmp_path, n=30)
    res = check.check_cohort(
        cohort,
        out=tmp_path / "c.dat",
        settings=settings,
        store=store,
        sleep=_sleeper(service),
        first_poll=0.01,
    )
    assert res.state == "collected"
    assert any("not-one-of-ours" in w for w in res.warnings)
    assert _org_inbox(settings) == [stranger]  # never lost


def test_duplicate_delivery_of_a_reply(tmp_path: Path, settings: Settings, store: Store, service) -> None:  # type: ignore[no-untyped-def]
    cohort, _ = _cohort_file(tmp_path, n=40)
    out = tmp_path / "c.dat"
    res = check.check_cohort(
        cohort, out=out, settings=settings, store=store, sleep=_sleeper(service), first_poll=0.01
    )
    before = out.read_bytes()
    _service_sends(service, res.local_id, before, subject="optout-one-off-check")  # delivered again
    _service_sends(service, res.local_id, b"9434765919,\n", subject="x")  # a different list: ignored too
    assert check.collect(res.local_id, settings=settings, store=store).state == "collected"
    other, _ = _cohort_file(tmp_path / "other", n=5)
    check.check_cohort(
        other,
        out=tmp_path / "o.dat",
        settings=settings,
        store=store,
        sleep=_sleeper(service),
        first_poll=0.01,
    )
    assert out.read_bytes() == before and _org_inbox(settings) == []
    assert len(state.get(store, res.local_id).details["duplicates"]) == 2


# --------------------------------------------------------------------------- mode 2


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    cache.keygen(settings.home / "cache.key")
    return settings


def test_cache_end_to_end(tmp_path: Path, keyed: Settings, store: Store, service) -> None:  # type: ignore[no-untyped-def]
    cohort, people = _cohort_file(tmp_path, n=POPULATION)
    res = check.refresh_cache(
        cohort, settings=keyed, store=store, now=T0, sleep=_sleeper(service), first_poll=0.01
    )
    assert res.state == "collected" and res.mode == "cache" and res.out is None
    assert res.deadline == T0 + timedelta(days=13)
    # nothing but the encrypted cache was kept: no request file, no plaintext list
    assert not any((keyed.home / "check" / "requests").iterdir())
    blob = cache.cache_file(keyed).read_bytes()
    assert not any(str(int(p)).encode() in blob for p in people[:100])
    st = cache.status(keyed, now=T0 + timedelta(days=2))
    assert st.state == "fresh" and st.meta is not None and st.meta.cohort_size == POPULATION
    al = cache.load_allow_list(keyed, now=T0 + timedelta(days=6, hours=23), store=store)
    assert al.source == "cache" and al.checked_at == T0 and al.deadline == T0 + timedelta(days=13)
    assert np.array_equal(al.numbers, np.sort(service.register.answer(people)))
    # 001 §8.4: refresh at least every 7 days
    with pytest.raises(PolicyRefusal, match="expired at 2026-03-09T10:00:00Z"):
        cache.load_allow_list(keyed, now=T0 + timedelta(days=7), store=store)
    # a release made with the cache: 13-day deadline in its manifest
    from optout.release import apply_opt_outs

    table = tmp_path / "patients.csv"
    table.write_text("nhs_number,x\n" + "".join(f"{p},1\n" for p in people[:50]))
    apply_opt_outs([table], out_dir=tmp_path / "rel", allow_list=al, store=store, now=T0 + timedelta(days=1))
    manifest = json.loads((tmp_path / "rel" / "release.json").read_text())
    assert manifest["check"]["source"] == "cache"
    assert manifest["check"]["deadline"].startswith("2026-03-15T10:00:00")
    acts = [e.action for e in audit.entries(store)]
    assert acts.count("cache.refresh") == 1 and acts.count("cache.read") == 1


def test_cache_tampered_or_wrong_key(
    tmp_path: Path, keyed: Settings, store: Store, service, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    cohort, _ = _cohort_file(tmp_path, n=200)
    check.refresh_cache(cohort, settings=keyed, store=store, now=T0, sleep=_sleeper(service), first_poll=0.01)
    path = cache.cache_file(keyed)
    good = path.read_bytes()
    path.write_bytes(good[:-40] + bytes([good[-40] ^ 0xFF]) + good[-39:])
    with pytest.raises(IntegrityError) as exc:
        cache.load_allow_list(keyed, now=T0, store=store)
    assert exc.value.exit_code == 8
    path.write_bytes(good)
    import base64
    import os

    monkeypatch.setenv("OPTOUT_CACHE_KEY", base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(IntegrityError, match="different key"):
        cache.load_allow_list(keyed, now=T0, store=store)


def test_cache_refresh_refuses_an_unsafe_key_before_sending(
    tmp_path: Path, settings: Settings, store: Store, service_settings: MeshSettings
) -> None:
    import os

    key = cache.keygen(settings.home / "cache.key")
    os.chmod(key, 0o644)
    cohort, _ = _cohort_file(tmp_path, n=10)
    with pytest.raises(UsageError, match="other users") as exc:
        check.refresh_cache(cohort, settings=settings, store=store)
    assert f"chmod 600 {key}" in (exc.value.hint or "")
    assert state.list_requests(store) == []
    with MeshMailbox(service_settings) as box:  # nothing went to the service
        assert list(box.inbox()) == []


def test_reply_body_matches_what_the_service_sent(
    tmp_path: Path, settings: Settings, store: Store, service
) -> None:  # type: ignore[no-untyped-def]
    """The cleaned list on disk is byte-for-byte a valid .dat of the service's answer."""
    cohort, people = _cohort_file(tmp_path, n=100)
    out = tmp_path / "c.dat"
    check.check_cohort(
        cohort, out=out, settings=settings, store=store, sleep=_sleeper(service), first_poll=0.01
    )
    assert np.array_equal(
        read_dat_bytes(out.read_bytes(), source_name="c"), np.sort(service.register.answer(people))
    )

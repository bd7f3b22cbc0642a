"""Data at rest: what optout leaves on disk is owner-only, whatever the umask, and nothing
patient-level outlives its purpose.

Each test runs with a permissive umask (000), as a new user on a shared machine might have, and
asserts that no file or folder holding patient-level or opt-out data (and neither the metadata
database nor OPTOUT_HOME) has a group or other permission bit.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from tests.unit.test_check_exchange import FakeMailbox

from optout import atomic, audit, tables
from optout.check import check_cohort, collect, list_requests, state
from optout.check.request import dat_bytes
from optout.config import MeshSettings, Settings
from optout.dat import write_dat
from optout.errors import PendingError, TransportError, UsageError
from optout.nhs_number import synthetic
from optout.service import Register
from optout.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def open_to_others(root: Path) -> list[str]:
    """Every path under ``root`` (``root`` included) with a group or other permission bit."""
    found = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if not p.is_symlink() and mode & 0o077:
            found.append(f"{p.relative_to(root.parent)} {mode:04o}")
    return found


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("OPTOUT_CACHE_KEY", raising=False)
    monkeypatch.setenv("OPTOUT_MESH_NO_SANDBOX", "1")  # never fall back to a developer's sandbox
    return Settings(home=tmp_path / "home", actor="tester")


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    p = tmp_path / "cohort.csv"
    p.write_text("nhs_number\n" + "".join(f"{n}\n" for n in synthetic(50, seed=3)))
    return p


def _request_files(settings: Settings) -> list[Path]:
    d = settings.home / "check" / "requests"
    return sorted(d.iterdir()) if d.is_dir() else []


# --------------------------------------------------------------------------- modes


def test_service_register_and_snapshots_are_owner_only(tmp_path: Path, umask_000: None) -> None:
    home = tmp_path / "home"
    with Register(home / "service") as reg:
        reg.record_many(synthetic(20, seed=1), True, at=T0)
        reg.publish()
    assert (home / "service" / "register.sqlite").exists()
    assert open_to_others(home) == []


def test_register_made_by_an_older_version_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "service"
    Register(path).close()
    os.chmod(path, 0o755)
    os.chmod(path / "register.sqlite", 0o644)
    Register(path).close()
    assert open_to_others(path) == []


def test_metadata_database_and_home_are_owner_only(tmp_path: Path, umask_000: None) -> None:
    home = tmp_path / "deep" / "home"
    store = Store(f"sqlite:///{home / 'optout.db'}")
    audit.record(store, "test.entry", actor="tester", details={"n": 1})
    store.dispose()
    assert (home / "optout.db").exists()
    assert open_to_others(tmp_path / "deep") == []


def test_request_folder_is_owner_only(
    tmp_path: Path, settings: Settings, cohort: Path, umask_000: None
) -> None:
    box = FakeMailbox()
    store = Store(settings.db_url)
    res = check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, wait=None)
    assert len(_request_files(settings)) == 1  # kept while the reply is awaited
    assert open_to_others(settings.home) == []
    box.answer()
    collect(res.local_id, settings=settings, store=store, mailbox=box)
    assert _request_files(settings) == []  # the cohort is not kept once the reply is in
    assert stat.S_IMODE((tmp_path / "c.dat").stat().st_mode) == 0o600


def test_duckdb_spills_into_a_private_folder_not_the_working_directory(umask_000: None) -> None:
    con = tables.connect()
    try:
        (spill,) = con.execute("SELECT current_setting('temp_directory')").fetchone()
    finally:
        con.close()
    assert spill not in ("", ".tmp") and Path(spill).is_absolute()
    assert Path(spill).is_dir() and stat.S_IMODE(Path(spill).stat().st_mode) == 0o700


def test_spill_folders_of_dead_processes_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(dead.stdout)
    left = Path(tempfile.gettempdir()) / f"{atomic.SPILL_PREFIX}{pid}-crashed"
    left.mkdir(mode=0o700)
    (left / "duckdb_temp_block").write_bytes(b"x")
    mine = Path(tempfile.gettempdir()) / f"{atomic.SPILL_PREFIX}{os.getpid()}-running"
    mine.mkdir(mode=0o700)
    try:
        with atomic.private_tempdir(atomic.SPILL_PREFIX) as tmp:
            assert (
                stat.S_IMODE(tmp.stat().st_mode) == 0o700
                and f"-{os.getpid()}-" in f"-{tmp.name[len(atomic.SPILL_PREFIX) :]}"
            )
        assert not tmp.exists()  # removed on exit
        assert not left.exists()  # a crash's leftovers: swept
        assert mine.exists()  # a live process's folder: kept
    finally:
        for p in (left, mine):
            if p.exists():
                for f in p.iterdir():
                    f.unlink()
                p.rmdir()


def test_release_files_are_owner_only(tmp_path: Path, umask_000: None) -> None:
    from optout.release import apply_opt_outs

    people = synthetic(40, seed=7)
    extract = tmp_path / "episodes.csv"
    extract.write_text("nhs_number,los\n" + "".join(f"{n},{i % 9}\n" for i, n in enumerate(people)))
    cleaned = tmp_path / "cleaned.dat"
    write_dat(cleaned, np.sort(people[:35]))
    store = Store(f"sqlite:///{tmp_path / 'home' / 'optout.db'}")
    apply_opt_outs(
        [extract], out_dir=tmp_path / "out", cleaned_list=cleaned, checked_at=T0, store=store, now=T0
    )
    assert open_to_others(tmp_path / "out") == []  # fail closed: owner-only until deliberately shared
    assert open_to_others(tmp_path / "home") == []


def test_registry_collection_output_is_owner_only(tmp_path: Path, umask_000: None) -> None:
    from optout.check.cleaned_list import AllowList
    from optout.registry.gate import collect as collect_submission

    n = synthetic(6, seed=5)
    sub = tmp_path / "sub.csv"
    sub.write_text("nhs,consent,cleft_type,speech\n" + "".join(f"{x},Yes,A,1\n" for x in n))
    profile = tmp_path / "mini.yaml"
    profile.write_text(
        "format: optout-collection-profile/1\nname: mini\nnhs_number_column: nhs\n"
        'consent: {column: consent, yes_values: ["Yes"], no_values: ["No"]}\n'
        "registry_fields: [nhs, cleft_type]\naudit_fields: [speech]\n"
    )
    al = AllowList(numbers=np.sort(n), checked_at=T0, source="one-off", sha256="0" * 64, origin="test")
    out = tmp_path / "collected.csv"
    collect_submission(
        sub, profile=profile, out=out, allow_list=al, record_audit=False, now=T0 + timedelta(days=1)
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


# --------------------------------------------------------------------------- nothing left behind


def test_request_file_removed_when_mesh_is_not_configured(
    tmp_path: Path, settings: Settings, cohort: Path
) -> None:
    store = Store(settings.db_url)
    with pytest.raises(UsageError, match="MESH is not configured"):
        check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, now=T0)
    assert _request_files(settings) == []
    (req,) = state.list_requests(store)
    assert req.state == "discarded" and req.final
    assert [e.action for e in audit.entries(store)] == ["check.discarded"]
    assert "never sent" in audit.entries(store)[0].details


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_request_file_removed_when_mesh_cannot_be_reached(
    tmp_path: Path, settings: Settings, cohort: Path
) -> None:
    settings.mesh = MeshSettings(
        url=f"http://127.0.0.1:{_closed_port()}", mailbox="X26ORG001", password="p", shared_key="k"
    )
    store = Store(settings.db_url)
    with pytest.raises(TransportError):
        check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, now=T0)
    assert _request_files(settings) == []
    assert [r.state for r in list_requests(settings=settings, store=store)] == ["discarded"]


def test_request_file_kept_when_it_may_have_gone_out(
    tmp_path: Path, settings: Settings, cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the send began: the reply must be checked against it, so it stays (resume)."""
    box = FakeMailbox()
    real = state.transition

    def crash(store_: Store, local_id: str, new: str, **kw: object):  # type: ignore[no-untyped-def]
        if new == "sent":
            raise KeyboardInterrupt("killed right after MESH accepted the request")
        return real(store_, local_id, new, **kw)

    monkeypatch.setattr(state, "transition", crash)
    store = Store(settings.db_url)
    with pytest.raises(KeyboardInterrupt):
        check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, now=T0)
    assert len(_request_files(settings)) == 1
    assert state.list_requests(store)[0].state == "prepared"


def _prepared(settings: Settings, store: Store, local_id: str, at: datetime, *, sent: bool = False) -> Path:
    """A request left as a crash leaves it: its file written, its row prepared (or sent)."""
    body = dat_bytes(np.sort(synthetic(5, seed=len(local_id))))
    path = settings.home / "check" / "requests" / f"{local_id}.dat"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    import hashlib

    state.create(
        store,
        local_id=local_id,
        mode="one-off",
        created_at=at,
        cohort_sha256=hashlib.sha256(body).hexdigest(),
        cohort_size=5,
        out_path=None,
        details={"request_path": str(path)},
    )
    if sent:
        state.transition(store, local_id, "sent", sent_at=at, request_message_id="OUT0")
    return path


def test_stale_prepared_requests_are_cleaned_up_by_the_next_check(
    tmp_path: Path, settings: Settings, cohort: Path
) -> None:
    store = Store(settings.db_url)
    now = T0 + timedelta(days=3)
    old = _prepared(settings, store, "optout-oneoff-old", T0)
    young = _prepared(settings, store, "optout-oneoff-young", now - timedelta(hours=23))
    waiting = _prepared(settings, store, "optout-oneoff-waiting", now - timedelta(days=2), sent=True)
    box = FakeMailbox()
    check_cohort(
        cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, wait=None, now=now
    )
    assert not old.exists() and young.exists() and waiting.exists()
    assert state.get(store, "optout-oneoff-old").state == "discarded"
    assert state.get(store, "optout-oneoff-young").state == "prepared"
    assert state.get(store, "optout-oneoff-waiting").state == "sent"
    (entry,) = [e for e in audit.entries(store) if e.action == "check.discarded"]
    assert entry.subject == "optout-oneoff-old"


def test_leftover_file_of_a_finished_request_is_removed_by_the_next_check(
    tmp_path: Path, settings: Settings, cohort: Path
) -> None:
    store = Store(settings.db_url)
    path = _prepared(settings, store, "optout-oneoff-done", T0)
    state.transition(store, "optout-oneoff-done", "failed")  # a crash between the state and the unlink
    check_cohort(
        cohort,
        out=tmp_path / "c.dat",
        settings=settings,
        store=store,
        mailbox=FakeMailbox(),
        wait=None,
        now=T0,
    )
    assert not path.exists()


def test_unanswered_after_a_week_is_discarded_and_a_late_reply_ignored(
    tmp_path: Path, settings: Settings, cohort: Path
) -> None:
    store = Store(settings.db_url)
    box = FakeMailbox()
    res = check_cohort(
        cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, wait=None, now=T0
    )
    assert len(_request_files(settings)) == 1
    later = T0 + timedelta(days=7, hours=1)
    assert [r.state for r in list_requests(settings=settings, store=store, now=later)] == ["discarded"]
    assert _request_files(settings) == []
    with pytest.raises(UsageError, match="discarded"):
        collect(res.local_id, settings=settings, store=store, mailbox=box, now=later)
    # the service's answer arrives after all: acknowledged and noted, never written out
    box.answer()
    other = check_cohort(
        cohort, out=tmp_path / "d.dat", settings=settings, store=store, mailbox=box, wait=None, now=later
    )
    with pytest.raises(PendingError):
        collect(other.local_id, settings=settings, store=store, mailbox=box, now=later)
    assert not (tmp_path / "c.dat").exists() and box.inbox_msgs == {}
    kinds = {d["kind"] for d in state.get(store, res.local_id).details["duplicates"]}
    assert kinds == {"notification", "cleaned-list"}


def test_orphan_request_files_and_crash_temporaries_are_removed(
    tmp_path: Path, settings: Settings, cohort: Path
) -> None:
    store = Store(settings.db_url)
    folder = atomic.private_dir(settings.home / "check" / "requests")
    orphan = folder / "optout-oneoff-nobody.dat"
    tmp = folder / ".optout-oneoff-x.dat.abc123.tmp"
    young = folder / "optout-oneoff-just-written.dat"
    for p in (orphan, tmp, young):
        p.write_bytes(b"x")
    old = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    os.utime(orphan, (old, old))
    os.utime(tmp, (old, old))
    list_requests(settings=settings, store=store)
    assert not orphan.exists() and not tmp.exists()
    assert young.exists()  # another check may be about to record it
    assert sorted(e.details for e in audit.entries(store) if e.action == "check.leftover-removed") == sorted(
        [
            '{"file":"optout-oneoff-nobody.dat","kind":"orphan"}',
            '{"file":".optout-oneoff-x.dat.abc123.tmp","kind":"temp"}',
        ]
    )

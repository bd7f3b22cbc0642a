"""A release is recorded before it is visible, and settled after a crash.

``optout apply`` writes a release in a hidden staging folder beside ``OUT`` and renames it into
place in one step (:mod:`optout.release.manifest`). So that no release folder can ever exist
without a record and an audit entry, the store follows it through two more states:

    (staging folder written)  ->  preparing  ->  (rename into OUT)  ->  prepared
                                       \\-> failed  (the folder never appeared)

1. **preparing** is written, with its audit entry ``release.preparing``, *before* the rename: the
   release id, ``OUT``, the SHA-256 of the ``release.json`` about to be written, and where the
   staging folder is (``details.apply``: folder, process id, host). The applying process holds an
   exclusive lock (``flock``) on the staging folder from then on; the lock moves with the folder
   when it is renamed into place and the kernel drops it when the process ends, however it ends.
2. **prepared** (``release.prepared``) once the folder is in place.
3. an apply that fails after step 1 (an error, Ctrl-C, SIGTERM) removes its folder and marks the
   release **failed** (``release.failed``) itself.

A SIGKILL or power cut can stop it anywhere. :func:`reconcile` (run by ``optout apply`` and
``optout release list``, and by :func:`optout.release.lifecycle.list_releases`) settles every
release still ``preparing`` whose apply is no longer running (its folders are not locked):

- ``OUT`` holds the release (``release.json`` with the same ``release_id`` and SHA-256): it becomes
  ``prepared``, audited with the reason "reconciled after an interrupted apply"; the release it
  replaced (``--force``) is deleted, as the apply would have done;
- otherwise the folder never appeared: the staging folder, if left over, is removed, a release
  that ``--force`` had moved aside is put back, and the release becomes ``failed`` (audited).

``optout apply`` also deletes, before it starts, a release that ``--force`` replaced at the same
``OUT`` but a killed apply left aside (:func:`sweep_replaced`).

Each change of state and its audit entry are one transaction, and a compare-and-set on the state,
so reconciling twice, or in two processes at once, records each outcome once. A ``preparing``
release made on another host is left alone (whether its apply still runs cannot be told from
here); neither ``preparing`` nor ``failed`` can ever be disclosed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from optout import audit
from optout.errors import OptoutError
from optout.release.manifest import MANIFEST_NAME, _pid_alive
from optout.store import Store, releases

__all__ = [
    "RECONCILED",
    "Attempt",
    "Hold",
    "Settled",
    "apply_info",
    "attempt",
    "mark_failed",
    "mark_prepared",
    "reconcile",
    "sweep_replaced",
]

RECONCILED = "reconciled after an interrupted apply"
NEVER_APPEARED = "its release folder never appeared"


def _iso(t: datetime | None) -> str:
    return (t or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")


# --- the applying process's lock ---------------------------------------------------------------


class Hold:
    """An exclusive lock on the staging folder, held by the apply making the release in it.

    ``flock`` belongs to the open folder (its inode), so it stays with the folder when it is
    renamed into place, and ends with the process however it ends (SIGKILL included).
    """

    def __init__(self, folder: Path) -> None:
        self.fd: int | None = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        # on a file system without locks, reconcile treats the release as in use (fail closed)
        with contextlib.suppress(OSError):
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def apply_info(staging: Path) -> dict[str, Any]:
    """What :func:`reconcile` needs to find what an interrupted apply left (``details.apply``)."""
    return {"staging": str(staging), "pid": os.getpid(), "host": socket.gethostname()}


@contextlib.contextmanager
def _unless_in_use(folders: Sequence[Path]) -> Iterator[bool]:
    """Lock each existing folder; yield False when any is held by a running apply."""
    fds: list[int] = []
    free = True
    try:
        for folder in folders:
            try:
                fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except OSError:
                continue  # not there (or not a folder): nothing holds it
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held by a running apply, or no locks here: cannot tell, leave it
                free = False
                break
        yield free
    finally:
        for fd in fds:
            os.close(fd)


# --- state changes, each with its audit entry in the same transaction ---------------------------


def _row(store: Store, release_id: str) -> Any:
    with store.begin() as conn:
        return conn.execute(sa.select(releases).where(releases.c.id == release_id)).first()


def _compare_and_set(
    release_id: str, states: Sequence[str], values: dict[str, Any]
) -> Callable[[Connection], bool]:
    def change(conn: Connection) -> bool:
        res = conn.execute(
            releases.update()
            .where(releases.c.id == release_id, releases.c.state.in_(tuple(states)))
            .values(**values)
        )
        return bool(res.rowcount == 1)

    return change


def mark_prepared(
    store: Store,
    release_id: str,
    *,
    reason: str | None = None,
    now: datetime | None = None,
    actor: str | None = None,
) -> bool:
    """preparing -> prepared, audited (``release.prepared``); False when it was not preparing."""
    row = _row(store, release_id)
    if row is None or row.state != "preparing":
        return False
    details = {k: v for k, v in dict(row.details or {}).items() if k != "apply"}
    entry = {**details, "deadline": row.deadline, "manifest_sha256": row.manifest_sha256}
    if reason:
        entry["reason"] = reason
    change = _compare_and_set(release_id, ("preparing",), {"state": "prepared", "details": details})
    return (
        audit.record_change(
            store,
            "release.prepared",
            change,
            actor=actor,
            subject=release_id,
            details=entry,
            at=_iso(now) if now else None,
        )
        is not None
    )


def mark_failed(
    store: Store,
    release_id: str,
    *,
    reason: str,
    states: Sequence[str] = ("preparing",),
    now: datetime | None = None,
    actor: str | None = None,
) -> bool:
    """``states`` -> failed, audited (``release.failed``); False when it was in none of them."""
    row = _row(store, release_id)
    if row is None or row.state not in states:
        return False
    at = _iso(now)
    details = {**dict(row.details or {}), "failed": {"at": at, "reason": reason}}
    entry = {
        "reason": reason,
        "previous_state": row.state,
        "flow_id": row.flow_id,
        "manifest_sha256": row.manifest_sha256,
    }
    change = _compare_and_set(release_id, (row.state,), {"state": "failed", "details": details})
    return (
        audit.record_change(
            store, "release.failed", change, actor=actor, subject=release_id, details=entry, at=at
        )
        is not None
    )


# --- reconciliation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settled:
    release_id: str
    state: str  # prepared | failed


def _holds_release(out: Path, row: Any) -> bool:
    """OUT is a folder whose release.json is this release's (same id and SHA-256)."""
    try:
        data = (out / MANIFEST_NAME).read_bytes()
    except OSError:
        return False
    if row.manifest_sha256 is None or hashlib.sha256(data).hexdigest() != row.manifest_sha256:
        return False
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("release_id") == row.id


def _staging_of(out: Path, info: dict[str, Any]) -> Path | None:
    """The staging folder recorded for the release, only if it is one (beside OUT, hidden, ours)."""
    raw = info.get("staging")
    if not isinstance(raw, str):
        return None
    p = Path(raw)
    if p.parent != out.parent or not p.name.startswith(f".{out.name}.tmp-"):
        return None
    return p


def _moved_aside(out: Path, pid: Any) -> list[Path]:
    """Releases ``--force`` moved aside (``.OUT.old-PID-*``) in the apply with process id ``pid``."""
    if not isinstance(pid, int):
        return []
    prefix = f".{out.name}.old-{pid}-"
    with contextlib.suppress(OSError):
        return sorted(p for p in out.parent.iterdir() if p.name.startswith(prefix) and p.is_dir())
    return []


def _settle(store: Store, row: Any, now: datetime | None) -> Settled | None:
    info = (row.details or {}).get("apply") or {}
    if not row.out_dir or info.get("host") != socket.gethostname():
        return None  # made elsewhere (or before this was recorded): whether it still runs is unknown
    out = Path(row.out_dir)
    staging = _staging_of(out, info)
    with _unless_in_use([out] + ([staging] if staging else [])) as free:
        if not free:
            return None  # its apply is still running
        aside = _moved_aside(out, info.get("pid"))
        if _holds_release(out, row):
            for old in aside:  # what the apply would have deleted after recording the release
                shutil.rmtree(old, ignore_errors=True)
            if mark_prepared(store, row.id, reason=RECONCILED, now=now):
                return Settled(row.id, "prepared")
            return None
        if staging is not None and staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging, ignore_errors=True)
        if len(aside) == 1 and not os.path.lexists(out):
            with contextlib.suppress(OSError):  # put back the release --force had moved aside
                os.rename(aside[0], out)
        if mark_failed(store, row.id, reason=f"{RECONCILED}: {NEVER_APPEARED}", now=now):
            return Settled(row.id, "failed")
        return None


def reconcile(store: Store, *, now: datetime | None = None) -> list[Settled]:
    """Settle every release left ``preparing`` by an apply that is no longer running.

    Idempotent, and safe when several processes run it at once (see the module docstring).
    Returns the releases it settled, with their new state.
    """
    with store.begin() as conn:
        rows = conn.execute(sa.select(releases).where(releases.c.state == "preparing")).all()
    settled = []
    for row in rows:
        done = _settle(store, row, now)
        if done is not None:
            settled.append(done)
    return settled


def sweep_replaced(out: Path) -> None:
    """Delete releases ``--force`` replaced at OUT that a killed apply left aside (``.OUT.old-PID-*``).

    What that apply would have deleted itself. Only while OUT exists (a release whose apply was
    killed between its two renames has been put back by :func:`reconcile` by then) and only when
    the process that moved it aside has ended.
    """
    if not out.is_dir():
        return
    prefix = f".{out.name}.old-"
    with contextlib.suppress(OSError):
        for p in out.parent.iterdir():
            if not p.name.startswith(prefix) or p.is_symlink() or not p.is_dir():
                continue
            try:
                pid = int(p.name[len(prefix) :].split("-", 1)[0])
            except ValueError:
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)


# --- one apply's attempt --------------------------------------------------------------------------


class Attempt:
    """One apply's release, from its staging folder to ``prepared`` (see the module docstring)."""

    def __init__(self, store: Store, release_id: str, actor: str | None = None) -> None:
        self.store = store
        self.release_id = release_id
        self.actor = actor  # who is making it (the web app's user); None: the settings' actor
        self.hold: Hold | None = None
        self.recorded = False

    def preparing(self, staging: Path, record: Callable[[dict[str, Any]], None]) -> None:
        """Lock the staging folder, then ``record(apply_info)``: the preparing row and its entry."""
        self.hold = Hold(staging)
        record(apply_info(staging))
        self.recorded = True

    def prepared(self) -> None:
        """The folder is in place: preparing -> prepared (audited)."""
        if not mark_prepared(self.store, self.release_id, actor=self.actor):
            raise OptoutError(
                f"release {self.release_id} changed while it was being recorded",
                hint=f"look at `optout release show {self.release_id}`",
            )


@contextlib.contextmanager
def attempt(store: Store, release_id: str, *, actor: str | None = None) -> Iterator[Attempt]:
    """Track one apply's release; on an error after ``preparing`` was recorded that leaves no
    release folder in place, mark it failed (from ``prepared`` too: the folder was rolled back).

    Enter it *before* the staging folder (``with attempt(...) as a, staged_release(...) as s:``)
    so the folder is already rolled back when this looks, and the lock is held until then.
    """
    a = Attempt(store, release_id, actor)
    try:
        yield a
    except BaseException as exc:
        if a.recorded:
            with contextlib.suppress(Exception):  # the original error matters; reconcile catches up
                row = _row(store, release_id)
                if row is not None and not _holds_release(Path(row.out_dir or ""), row):
                    mark_failed(
                        store,
                        release_id,
                        reason=f"apply stopped before the release was complete ({type(exc).__name__})",
                        states=("preparing", "prepared"),
                        actor=actor,
                    )
        raise
    finally:
        if a.hold is not None:
            a.hold.release()

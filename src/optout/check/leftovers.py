"""Request files left on disk: found, and cleaned up, so nothing patient-level outlives its purpose.

A request file (``<home>/check/requests/<LocalID>.dat``, owner-only) holds the cohort's NHS
numbers. It is needed only to send the request (again, after a crash: ``optout check --resume``)
and to check that the reply lists nothing that was not sent. So:

- a request that was **never sent** because the command failed first (MESH not configured or not
  reachable, Ctrl-C before sending) has its file removed there and then, and is ``discarded``;
- a **finished** request's file (collected, rejected, failed, discarded) is removed by the exchange;
  a crash between the two leaves it, and it is removed here;
- a request still **prepared a day** after it was made (the program stopped before or while
  sending it, and nobody resumed it) is discarded: a cohort a day old is stale;
- a request **sent a week ago and unanswered** is discarded: the service answers within a day
  and MESH deletes an unacknowledged reply after 5 days, so no usable reply can come;
- a file **no request names** (a crash between writing it and recording the request), a day old,
  and a hidden temporary file of an atomic write (``.NAME.*.tmp``) an hour old, are removed.

:func:`find` lists them without changing anything (``optout doctor`` reports them); :func:`sweep`
cleans them up at the start of each ``optout check`` (and ``--collect`` / ``--resume``), and
records each in the audit trail (``check.discarded``, ``check.leftover-removed``), with LocalIDs,
file names and counts, never a number. A late reply to a discarded request is acknowledged and
noted as a duplicate, never applied.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout import audit
from optout.check import state

if TYPE_CHECKING:
    from optout.config import Settings
    from optout.store import Store

__all__ = [
    "NEVER_SENT",
    "PREPARED_TTL",
    "UNANSWERED_TTL",
    "Leftover",
    "discard",
    "find",
    "requests_dir",
    "sweep",
]

PREPARED_TTL = timedelta(days=1)  # a request not (known to be) sent a day after it was made
UNANSWERED_TTL = timedelta(days=7)  # answered within a day; MESH deletes unacknowledged after 5 days
ORPHAN_TTL = timedelta(days=1)  # a file no request names (time for the writer to record it)
TEMP_TTL = timedelta(hours=1)  # a temporary file of an atomic write

NEVER_SENT = "never sent: the command failed before sending it"
_STALE = "still prepared a day after it was made (the program stopped before or while sending it)"
_UNANSWERED = "unanswered a week after it was sent (no usable reply can come any more)"
_LATE = "; a late reply is acknowledged and ignored"


@dataclass(frozen=True)
class Leftover:
    """One thing left on disk: ``kind`` is stale-prepared, unanswered, finished, orphan or temp."""

    kind: str
    path: Path | None  # the request file (None when it is already gone)
    local_id: str | None
    age: timedelta
    state: str | None = None

    def describe(self) -> str:
        days = self.age.total_seconds() / 86400
        age = f"{days:.1f} days" if days >= 1 else f"{self.age.total_seconds() / 3600:.1f} hours"
        what = {
            "stale-prepared": f"request {self.local_id} is still prepared after {age}, unsent",
            "unanswered": f"request {self.local_id} is unanswered {age} after it was sent",
            "finished": f"the request file of {self.local_id} ({self.state}) was not removed",
            "orphan": f"the request file {self.path.name if self.path else ''} belongs to no request "
            f"({age} old)",
            "temp": f"a temporary file {self.path.name if self.path else ''} was left by a crash ({age} old)",
        }[self.kind]
        return what

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "local_id": self.local_id,
            "file": self.path.name if self.path else None,
            "age_hours": round(self.age.total_seconds() / 3600, 1),
            "state": self.state,
        }


def requests_dir(settings: Settings) -> Path:
    return settings.home / "check" / "requests"


def _file_age(path: Path) -> timedelta:
    try:
        return timedelta(seconds=max(0.0, time.time() - path.stat().st_mtime))
    except OSError:
        return timedelta(0)


def find(settings: Settings, store: Store | None, *, now: datetime) -> list[Leftover]:
    """What should not be on disk any more (nothing is changed). ``store`` None: files only."""
    rows = {r.local_id: r for r in state.list_requests(store)} if store is not None else {}
    found: list[Leftover] = []
    named: set[Path] = set()
    for r in rows.values():
        path = Path(r.details["request_path"]) if r.details.get("request_path") else None
        if path is not None:
            named.add(path)
        exists = path is not None and path.exists()
        if r.state == "prepared" and now - r.created_at >= PREPARED_TTL:
            found.append(
                Leftover("stale-prepared", path if exists else None, r.local_id, now - r.created_at, r.state)
            )
        elif r.state in ("sent", "answered"):
            since = r.sent_at or r.created_at
            if now - since >= UNANSWERED_TTL:
                found.append(
                    Leftover("unanswered", path if exists else None, r.local_id, now - since, r.state)
                )
        elif r.final and exists:
            assert path is not None
            found.append(Leftover("finished", path, r.local_id, now - r.created_at, r.state))
    folder = requests_dir(settings)
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p in named or not p.is_file():
                continue
            age = _file_age(p)
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                if age >= TEMP_TTL:
                    found.append(Leftover("temp", p, None, age))
            elif p.suffix == ".dat" and p.stem not in rows and age >= ORPHAN_TTL:
                found.append(Leftover("orphan", p, None, age))
    return found


def _unlink(path: Path | None) -> bool:
    if path is None:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def discard(
    store: Store, req: state.CheckRequest, *, reason: str, now: datetime, actor: str
) -> state.CheckRequest:
    """Remove a request's file, then mark it ``discarded`` and record why (``check.discarded``).

    The file goes first: should the database fail next, the NHS numbers are gone all the same.
    """
    path = req.details.get("request_path")
    removed = _unlink(Path(path)) if path else False
    done = state.transition(
        store,
        req.local_id,
        "discarded",
        details={"discarded": {"at": state.iso(now), "reason": reason, "was": req.state}},
    )
    audit.record(
        store,
        "check.discarded",
        actor=actor,
        subject=req.local_id,
        details={
            "mode": req.mode,
            "was": req.state,
            "reason": reason,
            "sent_count": req.sent_count,
            "send_attempted": bool(req.details.get("send_attempted_at")),
            "request_file_removed": removed,
        },
        at=state.iso(now),
    )
    return done


def sweep(
    settings: Settings, store: Store, *, now: datetime, actor: str, keep: Collection[str] = ()
) -> list[Leftover]:
    """Clean up what :func:`find` lists (except the requests named in ``keep``); returns it."""
    done: list[Leftover] = []
    for left in find(settings, store, now=now):
        if left.local_id is not None and left.local_id in keep:
            continue
        if left.kind in ("stale-prepared", "unanswered"):
            assert left.local_id is not None
            req = state.get(store, left.local_id)
            reason = _STALE if left.kind == "stale-prepared" else _UNANSWERED
            if left.kind == "stale-prepared" and not req.details.get("send_attempted_at"):
                reason = "never sent: " + _STALE
            discard(store, req, reason=reason + _LATE, now=now, actor=actor)
        else:
            try:
                removed = _unlink(left.path)
            except OSError:
                removed = False  # e.g. permissions: `optout doctor` goes on reporting it
            if not removed:
                continue
            audit.record(
                store,
                "check.leftover-removed",
                actor=actor,
                subject=left.local_id,
                details={"kind": left.kind, "file": left.path.name if left.path else None},
                at=state.iso(now),
            )
        done.append(left)
    return done

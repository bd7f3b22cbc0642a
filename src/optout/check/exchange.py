"""The exchange with the check service over MESH: send a request, wait, collect the reply.

Used by both ways of using the service (001 §8):

- **one-off cleaned list** (``mode="one-off"``): the reply is written to the file the user named
  (``cleaned.dat``) with its sidecar ``cleaned.dat.json``; data checked this way must be disclosed
  within 20 days of the check (001 §8.4);
- **temporary cache** (``mode="cache"``): the reply is encrypted into the cache
  (:mod:`optout.check.cache`); data processed with it must be disclosed within 13 days of the refresh.

Durability: the request row is committed before sending, and each reply is saved (the cleaned
list written and fsynced, the state committed) before its MESH message is acknowledged. A reply
whose LocalID is not one of ours is left in the inbox, unacknowledged, and reported. A reply for a
request that is already finished (a duplicate delivery, or the answer to a repeated send after a
crash) is acknowledged and noted, never applied twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optout import atomic, audit
from optout.check import leftovers, state
from optout.check.cleaned_list import SIDECAR_FORMAT, AllowList
from optout.check.cohort import Cohort, read_cohort
from optout.check.request import (
    ReplyKind,
    classify_reply,
    dat_bytes,
    default_subject,
    format_duration,
    new_local_id,
    notification_summary,
    require_safe,
)
from optout.dat import read_dat_bytes, write_dat
from optout.errors import (
    InputError,
    IntegrityError,
    Location,
    OptoutError,
    OutputError,
    PendingError,
    TransportError,
    UsageError,
)
from optout.text import guard_free_text

if TYPE_CHECKING:
    from optout.config import Settings
    from optout.store import Store

__all__ = ["DEFAULT_WAIT", "CheckResult", "check_cohort", "collect", "list_requests", "resume"]

DEFAULT_WAIT = timedelta(hours=2)
FIRST_POLL = 1.0  # seconds; doubles up to max_poll
MAX_POLL = 300.0  # MESH guidance: poll about every 5 minutes


@dataclass
class CheckResult:
    """What happened to one check request (counts, ids and paths; never numbers)."""

    local_id: str
    mode: str
    state: str  # prepared | sent | answered (pending) | collected | rejected | failed
    sent_count: int | None = None
    returned_count: int | None = None
    checked_at: datetime | None = None
    out: Path | None = None
    request_message_id: str | None = None
    reply_message_ids: list[str] = field(default_factory=list)
    cohort: Cohort | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return self.state in ("prepared", "sent", "answered")

    @property
    def deadline(self) -> datetime | None:
        from optout.check.cleaned_list import CACHE_WINDOW, ONE_OFF_WINDOW

        if self.checked_at is None or self.state != "collected":
            return None
        return self.checked_at + (CACHE_WINDOW if self.mode == "cache" else ONE_OFF_WINDOW)

    def to_dict(self) -> dict[str, Any]:
        return {
            "local_id": self.local_id,
            "mode": self.mode,
            "state": self.state,
            "sent_count": self.sent_count,
            "returned_count": self.returned_count,
            "checked_at": state.iso(self.checked_at) if self.checked_at else None,
            "deadline": state.iso(self.deadline) if self.deadline else None,
            "out": str(self.out) if self.out else None,
            "request_message_id": self.request_message_id,
            "reply_message_ids": self.reply_message_ids,
            "cohort": self.cohort.summary() if self.cohort else None,
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------- plumbing


def _settings(settings: Settings | None) -> Settings:
    """The settings to use; with no MESH URL configured, a running local sandbox's mailbox."""
    from optout.mesh import with_local_sandbox

    if settings is None:
        from optout.config import load_settings

        settings = load_settings()
    return with_local_sandbox(settings)


def _store(settings: Settings, store: Store | None) -> Store:
    if store is not None:
        return store
    from optout.store import open_store

    return open_store(settings.db_url)


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


@contextlib.contextmanager
def _mailbox(settings: Settings, mailbox: Any, max_chunk_size: int | None) -> Iterator[Any]:
    if mailbox is not None:
        yield mailbox
        return
    from optout.mesh import MeshMailbox

    box = MeshMailbox(settings.mesh, max_chunk_size=max_chunk_size)
    try:
        box.handshake()  # MESH guidance: at start, and at least daily
        yield box
    finally:
        box.close()


def _poll_cap(settings: Settings, max_poll: float) -> float:
    """A local sandbox answers in seconds: poll it every 2 s at most (real MESH: every 5 minutes)."""
    from urllib.parse import urlparse

    host = urlparse(str(settings.mesh.url or "")).hostname or ""
    return min(max_poll, 2.0) if host in ("127.0.0.1", "localhost", "::1") else max_poll


def _requests_dir(settings: Settings) -> Path:
    return leftovers.requests_dir(settings)


def _write_private(path: Path, data: bytes) -> None:
    """Atomic write (temp file in the same folder, fsync, rename), readable by the owner only,
    in an owner-only folder (made so whatever the umask; tightened if an older version did not)."""
    atomic.private_dir(path.parent)
    atomic.write_bytes(path, data, private=True)


def _write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
    atomic.write_bytes(path, data)


def _result(
    req: state.CheckRequest, cohort: Cohort | None = None, warnings: list[str] | None = None
) -> CheckResult:
    replies = [m for m in (req.notification_message_id, req.reply_message_id) if m]
    checked = state.parse_iso(req.details.get("send_attempted_at")) or req.sent_at
    return CheckResult(
        local_id=req.local_id,
        mode=req.mode,
        state=req.state,
        sent_count=req.sent_count,
        returned_count=req.returned_count,
        checked_at=checked,
        out=Path(req.out_path) if req.out_path else None,
        request_message_id=req.request_message_id,
        reply_message_ids=replies,
        cohort=cohort,
        warnings=list(warnings or []),
    )


# --------------------------------------------------------------------------- sending


def _prepare(
    cohort: Cohort,
    *,
    mode: str,
    out: Path | None,
    settings: Settings,
    store: Store,
    subject: str | None,
    local_id: str | None,
    now: datetime,
) -> state.CheckRequest:
    cohort.require_something_to_send()  # empty / 100 % invalid: exit 3 before anything is sent
    subject = require_safe(subject or default_subject(mode), what="Subject")
    local_id = require_safe(local_id, what="LocalID") if local_id else new_local_id(mode, now=now)
    guard_free_text("the Subject (--subject)", subject, error=UsageError)  # sent, stored, printed
    guard_free_text("the LocalID", local_id, error=UsageError)
    if state.find(store, local_id) is not None:
        raise UsageError(
            f"a check request with LocalID {local_id} exists already", hint="LocalIDs must be unique"
        )
    body = dat_bytes(cohort.numbers)
    cohort_sha = hashlib.sha256(body).hexdigest()
    request_path = _requests_dir(settings) / f"{local_id}.dat"
    try:
        _write_private(request_path, body)
    except OSError as exc:
        raise OutputError(
            f"cannot write the request file in {request_path.parent}: {exc.strerror}",
            where=Location(file=request_path),
            hint="set OPTOUT_HOME to a writable folder",
        ) from None
    try:
        return state.create(
            store,
            local_id=local_id,
            mode=mode,
            created_at=now,
            cohort_sha256=cohort_sha,
            cohort_size=cohort.size,
            out_path=str(out) if out is not None else None,
            details={
                "subject": subject,
                "request_path": str(request_path),
                "cohort": cohort.summary(),
                "recipient": settings.mesh.recipient,
                "workflow_id": settings.mesh.workflow_id,
            },
        )
    except BaseException:
        request_path.unlink(missing_ok=True)  # no request names it: it would be left behind
        raise


def _discard_if_unsent(local_id: str, settings: Settings, store: Store, now: datetime) -> None:
    """The command failed: a request that was never sent goes, with its file (the cohort).

    One whose send began is kept: it may have reached MESH, so ``--resume`` must be able to send
    it again and check the reply against it (a day later, the next check discards it).
    Best effort: never hides the failure that brought us here.
    """
    with contextlib.suppress(Exception):
        req = state.find(store, local_id)
        if req is not None and req.state == "prepared" and not req.details.get("send_attempted_at"):
            leftovers.discard(store, req, reason=leftovers.NEVER_SENT, now=now, actor=settings.actor)


def _send(
    req: state.CheckRequest, box: Any, settings: Settings, store: Store, now: datetime
) -> state.CheckRequest:
    path = Path(req.details["request_path"])
    try:
        body = path.read_bytes()
    except OSError:
        raise InputError(
            f"the request file for {req.local_id} is missing, so it cannot be sent again",
            where=Location(file=path),
            hint="start a new check (`optout check COHORT --out FILE`)",
        ) from None
    if hashlib.sha256(body).hexdigest() != req.cohort_sha256:
        raise IntegrityError(
            f"the request file for {req.local_id} changed after it was prepared",
            where=Location(file=path),
            hint="start a new check (`optout check COHORT --out FILE`)",
        )
    if not req.details.get("send_attempted_at"):
        # the check time (001 §8.4 windows run from it) is the FIRST attempt: conservative if a
        # crash hid whether that attempt went out
        req = state.update(store, req.local_id, details={"send_attempted_at": state.iso(now)})
    message_id = box.send(
        recipient=settings.mesh.recipient,
        data=body,
        workflow_id=settings.mesh.workflow_id,
        subject=req.details.get("subject") or default_subject(req.mode),
        local_id=req.local_id,
        filename=f"{req.local_id}.dat",
    )
    sends = [*list(req.details.get("sends") or []), {"message_id": message_id, "at": state.iso(now)}]
    req = state.transition(
        store, req.local_id, "sent", sent_at=now, request_message_id=message_id, details={"sends": sends}
    )
    audit.record(
        store,
        "check.sent",
        actor=settings.actor,
        subject=req.local_id,
        details={
            "mode": req.mode,
            "sent_count": req.sent_count,
            "cohort_sha256": req.cohort_sha256,
            "request_message_id": message_id,
            "recipient": settings.mesh.recipient,
            "resent": len(sends) > 1,
            "withheld_invalid": (req.details.get("cohort") or {}).get("withheld_invalid", 0),
        },
        at=state.iso(now),
    )
    return req


# --------------------------------------------------------------------------- receiving


@dataclass
class _Poller:
    """One pass over the inbox; remembers what it left unacknowledged so it is fetched once."""

    box: Any
    settings: Settings
    store: Store
    now: Callable[[], datetime]
    skipped: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def poll(self) -> int:
        """Retrieve and handle every waiting message; returns how many were handled."""
        handled = 0
        for message_id in list(self.box.inbox(workflow_id=self.settings.mesh.workflow_id)):
            if message_id in self.skipped:
                continue
            rec = self.box.retrieve(message_id)
            req = state.find(self.store, rec.local_id) if rec.local_id else None
            linked = getattr(rec, "linked_message_id", None)
            if req is None and linked and (rec.message_type or "").upper() == "REPORT":
                req = state.find_by_request_message(self.store, linked)
            if req is None:
                self.skipped.add(message_id)
                self.warn(
                    f"message {message_id} (LocalID {rec.local_id or 'none'}) is not the reply to any "
                    "request made here; it was left in the MESH inbox, unacknowledged (it expires after "
                    "5 days): check whether another system shares this mailbox"
                )
                audit.record(
                    self.store,
                    "check.unknown-reply",
                    actor=self.settings.actor,
                    subject=rec.local_id,
                    details={
                        "message_id": message_id,
                        "message_type": rec.message_type,
                        "bytes": len(rec.body),
                    },
                    at=state.iso(self.now()),
                )
                continue
            try:
                if self._handle(req, rec):
                    handled += 1
            except OptoutError as exc:
                self.skipped.add(message_id)
                self.warn(
                    f"the reply {message_id} to {req.local_id} could not be saved and was left in the "
                    f"inbox: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
                )
        return handled

    # one message ------------------------------------------------------------------------------
    def _ack(self, message_id: str) -> None:
        self.box.acknowledge(message_id)

    @staticmethod
    def _forget_request_file(req: state.CheckRequest) -> None:
        """Once a request is final its cohort file is not needed: it is not kept."""
        with contextlib.suppress(OSError, KeyError):
            Path(req.details["request_path"]).unlink()

    def _duplicate(self, req: state.CheckRequest, rec: Any, kind: str) -> bool:
        dups = list(req.details.get("duplicates") or [])
        if not any(d.get("message_id") == rec.message_id for d in dups):
            dups.append({"message_id": rec.message_id, "kind": kind, "at": state.iso(self.now())})
            state.update(self.store, req.local_id, details={"duplicates": dups})
        self._ack(rec.message_id)
        return True

    def _handle(self, req: state.CheckRequest, rec: Any) -> bool:
        c = classify_reply(
            message_type=rec.message_type, subject=rec.subject, body=rec.body, status=rec.status
        )
        now = self.now()
        if c.kind == ReplyKind.REPORT:
            if req.final:
                return self._duplicate(req, rec, c.kind)
            state.transition(
                self.store,
                req.local_id,
                "failed",
                answered_at=now,
                reply_message_id=rec.message_id,
                details={
                    "report": {
                        "message_id": rec.message_id,
                        "status": rec.status,
                        "subject": rec.subject,
                        "description": getattr(rec, "status_description", None),
                    }
                },
            )
            self._ack(rec.message_id)
            self._forget_request_file(req)
            audit.record(
                self.store,
                "check.failed",
                actor=self.settings.actor,
                subject=req.local_id,
                details={"report_message_id": rec.message_id, "status": rec.status},
                at=state.iso(now),
            )
            return True
        if c.kind == ReplyKind.REJECTION:
            if req.final:
                return self._duplicate(req, rec, c.kind)
            state.transition(
                self.store, req.local_id, "rejected", answered_at=now, reply_message_id=rec.message_id
            )
            self._ack(rec.message_id)
            self._forget_request_file(req)
            audit.record(
                self.store,
                "check.rejected",
                actor=self.settings.actor,
                subject=req.local_id,
                details={"reply_message_id": rec.message_id, "sent_count": req.sent_count},
                at=state.iso(now),
            )
            return True
        if c.kind == ReplyKind.NOTIFICATION:
            if req.final or req.notification_message_id:
                return self._duplicate(req, rec, c.kind)
            state.transition(
                self.store,
                req.local_id,
                "answered",
                answered_at=now,
                notification_message_id=rec.message_id,
                details={"notification": notification_summary(rec.body)},
            )
            self._ack(rec.message_id)
            return True
        # the cleaned list
        if req.final:
            return self._duplicate(req, rec, c.kind)
        numbers = read_dat_bytes(rec.body, source_name=f"the reply to {req.local_id}")
        self._check_subset(req, numbers)
        if req.mode == "cache":
            self._save_cache(req, rec, numbers, now)
        else:
            self._save_cleaned_list(req, rec, numbers, now)
        req = state.transition(
            self.store,
            req.local_id,
            "collected",
            answered_at=req.answered_at or now,
            reply_message_id=rec.message_id,
            returned_count=int(numbers.shape[0]),
        )
        self._ack(rec.message_id)
        self._forget_request_file(req)
        audit.record(
            self.store,
            "cache.refresh" if req.mode == "cache" else "check.collected",
            actor=self.settings.actor,
            subject=req.local_id,
            details={
                "mode": req.mode,
                "sent_count": req.sent_count,
                "returned_count": req.returned_count,
                "cohort_sha256": req.cohort_sha256,
                "request_message_id": req.request_message_id,
                "reply_message_ids": [m for m in (req.notification_message_id, rec.message_id) if m],
                "checked_at": req.details.get("send_attempted_at"),
                "out": Path(req.out_path).name if req.out_path else None,
            },
            at=state.iso(now),
        )
        return True

    def _check_subset(self, req: state.CheckRequest, numbers: np.ndarray) -> None:
        """The cleaned list can only hold numbers we sent (a stray list would release others)."""
        path = Path(req.details.get("request_path", ""))
        try:
            sent = read_dat_bytes(path.read_bytes(), source_name=path.name)
        except OSError:
            raise IntegrityError(
                f"the request file for {req.local_id} is missing, so the reply cannot be checked "
                "against what was sent",
                where=Location(file=path),
                hint="start a new check",
            ) from None
        # both sorted and unique: a binary search per returned number, no re-sort
        pos = np.minimum(np.searchsorted(sent, numbers), max(sent.size - 1, 0))
        extra = numbers[sent[pos] != numbers] if sent.size else numbers
        if extra.size:
            raise IntegrityError(
                f"the reply to {req.local_id} lists {extra.size} number(s) that were not sent: it is not "
                "the answer to this request",
                hint="ask the service desk about the reply; nothing was saved from it",
            )

    def _checked_at(self, req: state.CheckRequest) -> datetime:
        return state.parse_iso(req.details.get("send_attempted_at")) or req.sent_at or req.created_at

    def _save_cleaned_list(
        self, req: state.CheckRequest, rec: Any, numbers: np.ndarray, now: datetime
    ) -> None:
        if not req.out_path:
            raise UsageError(f"request {req.local_id} has no output file", hint="this is a bug")
        out = Path(req.out_path)
        sha = write_dat(out, numbers)
        sidecar = {
            "format": SIDECAR_FORMAT,
            "mode": "one-off",
            "checked_at": state.iso(self._checked_at(req)),
            "collected_at": state.iso(now),
            "local_id": req.local_id,
            "request_message_id": req.request_message_id,
            "reply_message_ids": [m for m in (req.notification_message_id, rec.message_id) if m],
            "sent_count": req.sent_count,
            "returned_count": int(numbers.shape[0]),
            "cohort_sha256": req.cohort_sha256,
            "withheld_invalid": (req.details.get("cohort") or {}).get("withheld_invalid", 0),
            "sha256": sha,
        }
        _write_json_atomic(out.with_name(out.name + ".json"), sidecar)

    def _save_cache(self, req: state.CheckRequest, rec: Any, numbers: np.ndarray, now: datetime) -> None:
        from optout.check import cache

        refreshed_at = self._checked_at(req)
        path = cache.cache_file(self.settings)
        if path.exists():
            try:
                _n, current, _s = cache.read_cache(self.settings)
            except IntegrityError:
                current = None  # a damaged cache is replaced by a good one
            if current is not None and current.refreshed_at > refreshed_at:
                self.warn(
                    f"the reply to {req.local_id} is older than the cache already held (refreshed "
                    f"{state.iso(current.refreshed_at)}); the newer cache was kept"
                )
                state.update(self.store, req.local_id, details={"superseded": True})
                return
        cache.write_cache(
            numbers,
            refreshed_at=refreshed_at,
            cohort_sha256=req.cohort_sha256 or "",
            cohort_size=req.cohort_size or 0,
            local_id=req.local_id,
            request_message_id=req.request_message_id,
            reply_message_ids=[m for m in (req.notification_message_id, rec.message_id) if m],
            settings=self.settings,
            now=now,
        )


def _wait(
    local_id: str,
    *,
    box: Any,
    settings: Settings,
    store: Store,
    wait: timedelta,
    now: Callable[[], datetime],
    sleep: Callable[[float], None],
    first_poll: float,
    max_poll: float,
    progress: bool,
    warnings: list[str],
) -> state.CheckRequest:
    poller = _Poller(box, settings, store, now)
    interval = first_poll
    started = time.monotonic()
    limit = wait.total_seconds()
    polls = 0
    last_error: TransportError | None = None
    display = _Progress(local_id, limit) if progress else None
    try:
        while True:
            try:
                poller.poll()
                last_error = None
            except TransportError as exc:
                if polls == 0:
                    raise
                last_error = exc  # e.g. the MESH server restarted: keep trying until the wait ends
            polls += 1
            req = state.get(store, local_id)
            if req.final:
                return req
            elapsed = time.monotonic() - started
            if elapsed >= limit:
                if last_error is not None:
                    raise TransportError(
                        last_error.message,
                        hint=f"{last_error.hint or ''}; the request was sent: collect the reply later with "
                        f"`optout check --collect {local_id}`".lstrip("; "),
                    )
                notes = "".join(f"\n  warning: {w}" for w in poller.warnings)
                raise PendingError(
                    f"no reply to {local_id} yet (state: {req.state}; waited "
                    f"{format_duration(timedelta(seconds=elapsed))}). The service can take an hour, "
                    f"sometimes a day{notes}",
                    hint=f"collect it later with `optout check --collect {local_id}` (or --resume); "
                    "unanswered requests are kept",
                )
            pause = min(interval, max(0.0, limit - elapsed))
            if display is not None:
                display.update(req.state, polls, pause, last_error)
            sleep(pause)
            interval = min(interval * 2, max_poll)
    finally:
        warnings.extend(w for w in poller.warnings if w not in warnings)
        if display is not None:
            display.stop()


class _Progress:
    """A Rich status line on stderr: what we are waiting for, how long, when we poll next."""

    def __init__(self, local_id: str, limit: float) -> None:
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.limit = limit
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task(f"waiting for the reply to {local_id}", total=None)
        self.local_id = local_id
        self.started = time.monotonic()
        self.progress.start()

    def update(self, req_state: str, polls: int, pause: float, error: Exception | None) -> None:
        left = max(0.0, self.limit - (time.monotonic() - self.started))
        what = (
            "SUCCESS received, waiting for the cleaned list"
            if req_state == "answered"
            else "waiting for the reply"
        )
        extra = " (MESH unreachable, retrying)" if error else ""
        self.progress.update(
            self.task,
            description=f"{what} to {self.local_id}{extra}: poll {polls}, next in "
            f"{format_duration(timedelta(seconds=pause))}, "
            f"gives up in {format_duration(timedelta(seconds=left))}",
        )

    def stop(self) -> None:
        self.progress.stop()


# --------------------------------------------------------------------------- public entry points


def _final_or_raise(
    req: state.CheckRequest, warnings: list[str], cohort: Cohort | None = None
) -> CheckResult:
    if req.state == "rejected":
        raise TransportError(
            f"the check service rejected request {req.local_id}: 'The file contains one or more invalid "
            "NHS Numbers.' Nothing was cleared",
            hint="this should not happen (invalid numbers are withheld before sending): check the cohort "
            "with `optout nhs-number check` and report it; then run the check again",
        )
    if req.state == "discarded":
        why = (req.details.get("discarded") or {}).get("reason") or "discarded"
        raise UsageError(
            f"request {req.local_id} was discarded ({why}); there is nothing to collect",
            hint="start a new check (`optout check COHORT --out FILE`)",
        )
    if req.state == "failed":
        report = req.details.get("report") or {}
        raise TransportError(
            f"MESH could not deliver request {req.local_id} to the check service (non-delivery report "
            f"{report.get('message_id')}, status {report.get('status')}"
            + (f": {report['description']}" if report.get("description") else "")
            + "). Nothing was cleared",
            hint="check OPTOUT_MESH_RECIPIENT (the service's mailbox, X26HC065 by default) and the "
            "workflow id, then run the check again",
        )
    if req.details.get("superseded"):
        warnings = [*warnings, "this refresh was older than the cache already held, which was kept"]
    return _result(req, cohort, warnings)


def check_cohort(
    cohort: str | Path | Cohort,
    *,
    out: str | Path | None,
    settings: Settings | None = None,
    wait: timedelta | None = DEFAULT_WAIT,
    mode: str = "one-off",
    column: str | None = None,
    chi: bool = False,
    subject: str | None = None,
    local_id: str | None = None,
    force: bool = False,
    store: Store | None = None,
    mailbox: Any = None,
    max_chunk_size: int | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    first_poll: float = FIRST_POLL,
    max_poll: float = MAX_POLL,
    progress: bool = False,
) -> CheckResult:
    """Check a cohort with the service: validate, send, (wait,) collect.

    ``wait=None`` sends and returns at once (state ``sent``); collect later with :func:`collect`.
    Otherwise waits up to ``wait`` and raises :class:`PendingError` (exit 7) when no reply came.
    """
    settings = _settings(settings)
    if mode not in ("one-off", "cache"):
        raise UsageError(f"mode must be one-off or cache, not {mode!r}")
    out_path: Path | None = None
    if mode == "one-off":
        if out is None:
            raise UsageError("where should the cleaned list go?", hint="give --out cleaned.dat")
        out_path = Path(out).absolute()
        atomic.require_new_target(out_path, force=force)
    coh = cohort if isinstance(cohort, Cohort) else read_cohort(cohort, column=column, chi=chi)
    coh.require_something_to_send()
    store = _store(settings, store)
    clock = (lambda: _now(now)) if now is not None else (lambda: datetime.now(UTC))
    leftovers.sweep(settings, store, now=clock(), actor=settings.actor)  # what earlier runs left
    req = _prepare(
        coh,
        mode=mode,
        out=out_path,
        settings=settings,
        store=store,
        subject=subject,
        local_id=local_id,
        now=clock(),
    )
    warnings: list[str] = []
    try:
        with _mailbox(settings, mailbox, max_chunk_size) as box:
            req = _send(req, box, settings, store, clock())
            if wait is None:
                return _result(req, coh, warnings)
            req = _wait(
                req.local_id,
                box=box,
                settings=settings,
                store=store,
                wait=wait,
                now=clock,
                sleep=sleep,
                first_poll=first_poll,
                max_poll=_poll_cap(settings, max_poll),
                progress=progress,
                warnings=warnings,
            )
    except BaseException:
        _discard_if_unsent(req.local_id, settings, store, clock())  # e.g. MESH not configured
        raise
    return _final_or_raise(req, warnings, coh)


def collect(
    local_id: str,
    *,
    settings: Settings | None = None,
    wait: timedelta | None = None,
    store: Store | None = None,
    mailbox: Any = None,
    max_chunk_size: int | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    first_poll: float = FIRST_POLL,
    max_poll: float = MAX_POLL,
    progress: bool = False,
) -> CheckResult:
    """Collect the reply to a request sent earlier (``--no-wait``). Raises PendingError if none yet."""
    return _drive(
        local_id,
        resend=False,
        settings=settings,
        wait=wait,
        store=store,
        mailbox=mailbox,
        max_chunk_size=max_chunk_size,
        now=now,
        sleep=sleep,
        first_poll=first_poll,
        max_poll=max_poll,
        progress=progress,
    )


def resume(
    local_id: str,
    *,
    settings: Settings | None = None,
    wait: timedelta | None = DEFAULT_WAIT,
    store: Store | None = None,
    mailbox: Any = None,
    max_chunk_size: int | None = None,
    now: datetime | None = None,
    sleep: Callable[[float], None] = time.sleep,
    first_poll: float = FIRST_POLL,
    max_poll: float = MAX_POLL,
    progress: bool = False,
) -> CheckResult:
    """Carry on with a request after a crash: send it if it may not have gone out, then wait.

    A request still ``prepared`` may or may not have reached MESH before the crash; the inbox is
    checked first and, if no reply is there, it is sent (again). Should both sends be answered, the
    second answer is a duplicate and is only noted.
    """
    return _drive(
        local_id,
        resend=True,
        settings=settings,
        wait=wait,
        store=store,
        mailbox=mailbox,
        max_chunk_size=max_chunk_size,
        now=now,
        sleep=sleep,
        first_poll=first_poll,
        max_poll=max_poll,
        progress=progress,
    )


def _drive(
    local_id: str,
    *,
    resend: bool,
    settings: Settings | None,
    wait: timedelta | None,
    store: Store | None,
    mailbox: Any,
    max_chunk_size: int | None,
    now: datetime | None,
    sleep: Callable[[float], None],
    first_poll: float,
    max_poll: float,
    progress: bool,
) -> CheckResult:
    settings = _settings(settings)
    store = _store(settings, store)
    clock = (lambda: _now(now)) if now is not None else (lambda: datetime.now(UTC))
    req = state.get(store, local_id)
    leftovers.sweep(settings, store, now=clock(), actor=settings.actor, keep={local_id})
    warnings: list[str] = []
    if req.final:
        return _final_or_raise(req, warnings)
    if req.mode == "cache":
        from optout.check.cache import load_key

        load_key(settings)  # fail before touching the inbox if the reply could not be stored
    with _mailbox(settings, mailbox, max_chunk_size) as box:
        if req.state == "prepared":
            if not resend:
                raise PendingError(
                    f"request {local_id} was prepared but may not have been sent (the program stopped)",
                    hint=f"run `optout check --resume {local_id}` to send it",
                )
            poller = _Poller(box, settings, store, clock)
            poller.poll()
            warnings.extend(poller.warnings)
            req = state.get(store, local_id)
            if req.state == "prepared":
                req = _send(req, box, settings, store, clock())
        req = _wait(
            local_id,
            box=box,
            settings=settings,
            store=store,
            wait=wait or timedelta(0),
            now=clock,
            sleep=sleep,
            first_poll=first_poll,
            max_poll=_poll_cap(settings, max_poll),
            progress=progress and bool(wait),
            warnings=warnings,
        )
    return _final_or_raise(req, warnings)


def list_requests(
    *,
    settings: Settings | None = None,
    store: Store | None = None,
    mode: str | None = None,
    now: datetime | None = None,
) -> list[CheckResult]:
    """The requests made here, newest first, after cleaning up what earlier runs left
    (:func:`optout.check.leftovers.sweep`: stale requests discarded, leftover files removed)."""
    settings = _settings(settings)
    store = _store(settings, store)
    leftovers.sweep(settings, store, now=_now(now), actor=settings.actor)
    return [_result(r) for r in state.list_requests(store, mode=mode)]


def allow_list_of(result: CheckResult) -> AllowList:
    """The allow-list a collected one-off check wrote (read back from its file and sidecar)."""
    from optout.check.cleaned_list import read_cleaned_list

    if result.state != "collected" or result.out is None:
        raise PendingError(f"request {result.local_id} has not been collected", hint="collect it first")
    return read_cleaned_list(result.out)


def refresh_cache(cohort: Any, **kwargs: Any) -> CheckResult:
    """Refresh the temporary cache: check the whole legitimate-relationship cohort, keep the answer.

    Takes the same arguments as :func:`check_cohort` (without ``out``). The cache key is loaded
    *before* anything is sent, so a missing or unsafe key is found first. The reply is stored,
    encrypted, by :mod:`optout.check.cache` when it is collected.
    """
    from optout.check.cache import load_key

    settings = _settings(kwargs.get("settings"))
    kwargs["settings"] = settings
    load_key(settings)
    return check_cohort(cohort, out=None, mode="cache", **kwargs)

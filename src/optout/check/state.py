"""The state of each check request, kept in the metadata store (table ``check_requests``).

One row per LocalID. The state moves one way::

    prepared ──send──> sent ──SUCCESS notification──> answered ──cleaned list──> collected
        │                │                               │
        └─(crash: resume re-sends; the service answers a repeat as a duplicate, which we ignore)
                         ├──────── rejection ────────────┴──> rejected   (file had an invalid number)
                         └──────── MESH report ──────────────> failed     (never reached the service)
    prepared | sent | answered ──> discarded  (never sent: the command failed before sending; or
                                   left unsent a day, unanswered a week: cleaned up by the next check)

Each step is committed *before* the MESH message that caused it is acknowledged, so a crash at
any point loses nothing: the message is still in the inbox and ``optout check --resume`` picks it
up. The row never holds an NHS number: counts, hashes, message ids and paths only.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from optout.errors import NotFoundError, OptoutError
from optout.store import Store, check_requests

__all__ = ["STATES", "TRANSITIONS", "CheckRequest", "create", "get", "list_requests", "transition", "update"]

STATES = ("prepared", "sent", "answered", "collected", "rejected", "failed", "discarded")
FINAL = ("collected", "rejected", "failed", "discarded")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "prepared": ("prepared", "sent", "answered", "collected", "rejected", "failed", "discarded"),
    "sent": ("sent", "answered", "collected", "rejected", "failed", "discarded"),
    "answered": ("answered", "collected", "rejected", "failed", "discarded"),
    "collected": (),
    "rejected": (),
    "failed": (),
    "discarded": (),
}


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass
class CheckRequest:
    local_id: str
    mode: str  # one-off | cache
    state: str
    created_at: datetime
    sent_at: datetime | None = None
    answered_at: datetime | None = None
    cohort_sha256: str | None = None
    cohort_size: int | None = None
    sent_count: int | None = None
    returned_count: int | None = None
    request_message_id: str | None = None
    notification_message_id: str | None = None
    reply_message_id: str | None = None
    out_path: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in vars(self).items():
            out[k] = iso(v) if isinstance(v, datetime) else v
        return out


def _from_row(row: Any) -> CheckRequest:
    return CheckRequest(
        local_id=row.local_id,
        mode=row.mode,
        state=row.state,
        created_at=parse_iso(row.created_at) or datetime.now(UTC),
        sent_at=parse_iso(row.sent_at),
        answered_at=parse_iso(row.answered_at),
        cohort_sha256=row.cohort_sha256,
        cohort_size=row.cohort_size,
        sent_count=row.sent_count,
        returned_count=row.returned_count,
        request_message_id=row.request_message_id,
        notification_message_id=row.notification_message_id,
        reply_message_id=row.reply_message_id,
        out_path=row.out_path,
        details=dict(row.details or {}),
    )


def create(
    store: Store,
    *,
    local_id: str,
    mode: str,
    created_at: datetime,
    cohort_sha256: str,
    cohort_size: int,
    out_path: str | None,
    details: dict[str, Any],
) -> CheckRequest:
    with store.begin() as conn:
        conn.execute(
            check_requests.insert().values(
                local_id=local_id,
                mode=mode,
                state="prepared",
                created_at=iso(created_at),
                cohort_sha256=cohort_sha256,
                cohort_size=cohort_size,
                sent_count=cohort_size,
                out_path=out_path,
                details=details,
            )
        )
    return get(store, local_id)


def get(store: Store, local_id: str) -> CheckRequest:
    with store.begin() as conn:
        row = conn.execute(sa.select(check_requests).where(check_requests.c.local_id == local_id)).first()
        if row is None:
            ids = [r[0] for r in conn.execute(sa.select(check_requests.c.local_id)).all()]
    if row is None:
        close = difflib.get_close_matches(local_id, ids, n=1)
        hint = f"did you mean {close[0]}?" if close else "`optout check --list` shows the requests made here"
        raise NotFoundError(f"no check request with LocalID {local_id!r} in this metadata store", hint=hint)
    return _from_row(row)


def find(store: Store, local_id: str) -> CheckRequest | None:
    with store.begin() as conn:
        row = conn.execute(sa.select(check_requests).where(check_requests.c.local_id == local_id)).first()
    return None if row is None else _from_row(row)


def find_by_request_message(store: Store, message_id: str) -> CheckRequest | None:
    """The request a MESH report is about (reports name the message they concern)."""
    with store.begin() as conn:
        row = conn.execute(
            sa.select(check_requests).where(check_requests.c.request_message_id == message_id)
        ).first()
    return None if row is None else _from_row(row)


def list_requests(store: Store, *, mode: str | None = None, state: str | None = None) -> list[CheckRequest]:
    q = sa.select(check_requests).order_by(check_requests.c.created_at.desc())
    if mode:
        q = q.where(check_requests.c.mode == mode)
    if state:
        q = q.where(check_requests.c.state == state)
    with store.begin() as conn:
        return [_from_row(r) for r in conn.execute(q).all()]


def update(
    store: Store, local_id: str, *, details: dict[str, Any] | None = None, **fields: Any
) -> CheckRequest:
    """Change columns (datetimes stored as ISO text) and merge ``details``; one transaction."""
    values = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in fields.items()}
    with store.begin() as conn:
        row = conn.execute(sa.select(check_requests).where(check_requests.c.local_id == local_id)).first()
        if row is None:
            raise NotFoundError(f"no check request with LocalID {local_id!r}", hint="this is a bug")
        if "state" in values:
            new = values["state"]
            if new not in TRANSITIONS.get(row.state, ()):
                raise OptoutError(
                    f"check request {local_id} cannot go from {row.state} to {new}",
                    hint="this is a bug; the request's state is unchanged",
                )
        if details:
            merged = dict(row.details or {})
            merged.update(details)
            values["details"] = merged
        if values:
            conn.execute(
                check_requests.update().where(check_requests.c.local_id == local_id).values(**values)
            )
    return get(store, local_id)


def transition(store: Store, local_id: str, state: str, **fields: Any) -> CheckRequest:
    return update(store, local_id, state=state, **fields)

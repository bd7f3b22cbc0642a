"""The audit trail: an append-only, hash-chained log of checks, cache refreshes and reads,
releases, disclosures and flow changes (who, what, when) — never an NHS number.

Each entry carries the SHA-256 of the previous entry (``prev_hash``) and its own ``hash`` over
a canonical JSON form of all its fields, so a changed, deleted, inserted or reordered entry
breaks the chain (see ``verify``; export of evidence packs builds on the same entries).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from optout.errors import OptoutError
from optout.store import Store, audit_log

GENESIS = "0" * 64


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    actor: str
    action: str
    subject: str | None
    details: str  # canonical JSON text
    prev_hash: str
    hash: str

    @property
    def details_dict(self) -> dict[str, Any]:
        return json.loads(self.details)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def entry_hash(
    seq: int, at: str, actor: str, action: str, subject: str | None, details: str, prev_hash: str
) -> str:
    body = canonical(
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "action": action,
            "subject": subject,
            "details": details,
            "prev_hash": prev_hash,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _refuse_nhs_numbers(obj: Any, path: str = "details") -> None:
    """Belt and braces: an audit entry must never carry an NHS number."""
    from optout.nhs_number import parse

    if isinstance(obj, dict):
        for k, v in obj.items():
            _refuse_nhs_numbers(v, f"{path}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _refuse_nhs_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, bool):
        return
    elif isinstance(obj, int) or (isinstance(obj, str) and obj.strip().replace(" ", "").isdigit()):
        text = str(obj).strip().replace(" ", "")
        if len(text) == 10 and parse(text).ok:
            raise OptoutError(
                f"refusing to write what looks like an NHS number to the audit log ({path})",
                hint="this is a bug: audit entries carry counts and hashes, never identifiers",
            )


def record(
    store: Store,
    action: str,
    *,
    actor: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    at: str | None = None,
) -> Entry:
    """Append one entry to the chain and return it."""
    details = details or {}
    _refuse_nhs_numbers(details)
    if actor is None:
        from optout.config import load_settings

        actor = load_settings().actor
    details_text = canonical(details)
    for _attempt in range(20):
        try:
            with store.begin() as conn:
                last = conn.execute(
                    sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
                ).first()
                seq = 1 if last is None else last.seq + 1
                prev = GENESIS if last is None else last.hash
                when = at or now_iso()
                h = entry_hash(seq, when, actor, action, subject, details_text, prev)
                conn.execute(
                    audit_log.insert().values(
                        seq=seq,
                        at=when,
                        actor=actor,
                        action=action,
                        subject=subject,
                        details=details_text,
                        prev_hash=prev,
                        hash=h,
                    )
                )
                return Entry(seq, when, actor, action, subject, details_text, prev, h)
        except sa.exc.IntegrityError:
            continue  # another process appended the same seq first: read the new tail and retry
    raise OptoutError("could not append to the audit log (too much contention)", hint="try again")


def entries(store: Store) -> list[Entry]:
    with store.begin() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    return [Entry(r.seq, r.at, r.actor, r.action, r.subject, r.details, r.prev_hash, r.hash) for r in rows]

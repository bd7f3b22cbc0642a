"""The audit trail: an append-only, hash-chained log of checks, cache refreshes and reads,
releases, disclosures and flow changes (who, what, when) — never an NHS number.

Each entry carries the SHA-256 of the previous entry (``prev_hash``) and its own ``hash`` over
a canonical JSON form of all its fields, so a changed, deleted, inserted or reordered entry
breaks the chain: ``verify`` names the first bad entry and what is wrong with it. Cutting entries
off the *end* leaves a valid shorter chain, so ``verify(expect_head=...)`` compares against a head
hash exported earlier (``optout audit verify`` prints it; evidence packs record it).
Evidence packs for the Data Security and Protection Toolkit are built by ``optout.audit.evidence``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from optout.errors import IntegrityError, OptoutError, UsageError
from optout.store import Store, audit_log
from optout.text import ACTOR_HINT, find_nhs_number, guard_free_text

GENESIS = "0" * 64
_HEX64 = re.compile(r"[0-9a-f]{64}")


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
    """Belt and braces: an audit entry must never carry an NHS number, anywhere in its nested
    details, alone or inside text (the one detector: ``optout.text``)."""
    found = find_nhs_number(obj, path)
    if found is not None:
        raise OptoutError(
            f"refusing to write what looks like an NHS number to the audit log ({found})",
            hint="this is a bug: audit entries carry counts and hashes, never identifiers, and free "
            "text is checked where it enters (optout.text.guard_free_text)",
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
    entry = record_change(store, action, None, actor=actor, subject=subject, details=details, at=at)
    assert entry is not None
    return entry


def record_change(
    store: Store,
    action: str,
    change: Callable[[Connection], bool] | None,
    *,
    actor: str | None = None,
    subject: str | None = None,
    details: dict[str, Any] | None = None,
    at: str | None = None,
) -> Entry | None:
    """Make a change in the store and append the entry recording it, in one transaction.

    ``change(conn)`` runs first, in the transaction the entry is appended in; it returns False
    when there was nothing to change (a compare-and-set such as ``UPDATE ... WHERE state = 'x'``
    that matched no row because another process got there first), and then nothing is written
    and None is returned. So a state and its audit entry are written together or not at all, and
    two processes making the same change record it once.
    """
    details = details or {}
    _refuse_nhs_numbers(details)
    _refuse_nhs_numbers(subject, "subject")
    if actor is None:
        from optout.config import load_settings

        actor = load_settings().actor
    guard_free_text("the actor name", actor, error=UsageError, hint=ACTOR_HINT)
    details_text = canonical(details)
    for _attempt in range(20):
        appending = False
        try:
            with store.begin() as conn:
                if change is not None and not change(conn):
                    return None
                last = conn.execute(
                    sa.select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
                ).first()
                seq = 1 if last is None else last.seq + 1
                prev = GENESIS if last is None else last.hash
                when = at or now_iso()
                h = entry_hash(seq, when, actor, action, subject, details_text, prev)
                appending = True
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
            if not appending:
                raise  # the change itself was refused: not contention on the chain
            continue  # another process appended the same seq first: read the new tail and retry
    raise OptoutError("could not append to the audit log (too much contention)", hint="try again")


def entries(store: Store) -> list[Entry]:
    with store.begin() as conn:
        rows = conn.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    return [Entry(r.seq, r.at, r.actor, r.action, r.subject, r.details, r.prev_hash, r.hash) for r in rows]


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Problem:
    """One way an entry breaks the chain. ``kind`` is stable (used in JSON and tests)."""

    seq: int  # the seq of the bad entry as it stands in the log now
    kind: str  # "hash mismatch" | "broken link" | "gap in seq" | "out of order" | "head missing"
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class Verification:
    """The result of checking the whole chain (see ``verify``)."""

    ok: bool
    count: int
    head_seq: int | None
    head_hash: str | None
    problems: list[Problem]
    anchored: bool = False  # True when an expected head was given and found intact

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "anchored": self.anchored,
            "first_problem": self.first.to_dict() if self.first else None,
            "problems": [p.to_dict() for p in self.problems],
        }

    def describe(self) -> str:
        if self.ok:
            text = f"audit trail intact: {self.count} entries, head seq {self.head_seq} hash {self.head_hash}"
            if self.anchored:
                text += " (the expected head is in the chain)"
            return text
        p = self.problems[0]
        more = len(self.problems) - 1
        extra = f" ({more} more problem{'s' if more != 1 else ''} after it)" if more else ""
        return f"audit trail is NOT intact: first bad entry seq {p.seq}: {p.kind}: {p.detail}{extra}"

    def raise_if_broken(self) -> None:
        if not self.ok:
            raise IntegrityError(
                self.describe(),
                hint="the audit log was changed outside optout; restore the metadata database from "
                "a backup taken before that entry and compare, and report it to your IG lead",
            )


def _recomputed(e: Entry, seq: int | None = None) -> str:
    s = e.seq if seq is None else seq
    return entry_hash(s, e.at, e.actor, e.action, e.subject, e.details, e.prev_hash)


_DIAGNOSE = 20  # look for where a mismatching entry came from only for the first few problems
_WINDOW = 2000  # ...and only this far either side of where it stands now


def _written_as(e: Entry, top: int) -> int | None:
    """The seq under which ``e``'s fields hash to its stored hash, if not its own (it was moved)."""
    for s in range(max(1, e.seq - _WINDOW), min(top + 1, e.seq + _WINDOW) + 1):
        if s != e.seq and _recomputed(e, s) == e.hash:
            return s
    return None


def check_chain(items: Sequence[Entry], *, expect_head: str | None = None) -> Verification:
    """Check a list of entries (in seq order) as ``verify`` does; pure, for tests and exports.

    For each entry, in order: its seq must follow the previous one (else "gap in seq", an entry
    was deleted, or "out of order"); its hash must match its fields (else "hash mismatch": a field
    was changed, or "out of order" when the fields hash correctly under another seq: the entry was
    moved or renumbered); its ``prev_hash`` must be the previous entry's hash (else "broken link":
    an entry was inserted, deleted or replaced just before it). Times are not required to rise
    (``record(at=...)`` may note an event after the fact, and clocks step back); order is the seq.

    A pure chain cannot show that entries were cut off the *end* (the shortened log is still a
    valid chain). ``expect_head`` closes that gap: pass a head hash exported earlier (evidence
    pack, ``optout audit verify`` output) and the check fails unless that entry is still present.
    """
    problems: list[Problem] = []
    by_hash = {e.hash: e.seq for e in items}
    top = max((e.seq for e in items), default=0)
    prev: Entry | None = None
    for e in items:
        expected_seq = 1 if prev is None else prev.seq + 1
        if e.seq != expected_seq:
            if e.seq > expected_seq:
                missing = (
                    f"seq {expected_seq}" if e.seq == expected_seq + 1 else f"seq {expected_seq}-{e.seq - 1}"
                )
                problems.append(Problem(e.seq, "gap in seq", f"{missing} missing before it (deleted?)"))
            else:
                problems.append(Problem(e.seq, "out of order", f"expected seq {expected_seq} here"))
        if _recomputed(e) != e.hash:
            moved = _written_as(e, top) if len(problems) < _DIAGNOSE else None
            if moved is not None:
                why = f"its content was written as seq {moved} (moved or renumbered)"
                problems.append(Problem(e.seq, "out of order", why))
            else:
                why = "its fields no longer match its hash (changed after it was written)"
                problems.append(Problem(e.seq, "hash mismatch", why))
        want_prev = GENESIS if prev is None else prev.hash
        if e.prev_hash != want_prev:
            if prev is None:
                why = "the first entry does not start the chain (earlier entries deleted?)"
            elif e.prev_hash in by_hash:
                why = f"it points at seq {by_hash[e.prev_hash]}, not at seq {prev.seq} before it"
            else:
                why = f"it does not follow seq {prev.seq} (an entry was inserted, deleted or replaced)"
            problems.append(Problem(e.seq, "broken link", why))
        prev = e
    anchored = False
    if expect_head is not None:
        want = expect_head.strip().lower()
        if want not in by_hash:
            last = items[-1].seq if items else 0
            problems.append(
                Problem(
                    last,
                    "head missing",
                    "the expected head hash is not in the log: entries were cut off the end, or the "
                    "log was rewritten",
                )
            )
        else:
            anchored = True
    head = items[-1] if items else None
    return Verification(
        ok=not problems,
        count=len(items),
        head_seq=head.seq if head else None,
        head_hash=head.hash if head else None,
        problems=problems,
        anchored=anchored and not problems,
    )


def verify(store: Store, *, expect_head: str | None = None) -> Verification:
    """Check the whole audit trail in ``store``; never raises for a broken chain (see result)."""
    if expect_head is not None and not _HEX64.fullmatch(expect_head.strip().lower()):
        raise UsageError(
            "--expect-head must be a 64-character SHA-256 hex digest",
            hint="copy the head hash printed by `optout audit verify` or stored in evidence.json (head.hash)",
        )
    return check_chain(entries(store), expect_head=expect_head)


def entries_between(store: Store, start: str | None, end: str | None) -> list[Entry]:
    """Entries whose ``at`` is in [start, end) (ISO 8601 UTC text compares in time order)."""
    q = sa.select(audit_log).order_by(audit_log.c.seq)
    if start is not None:
        q = q.where(audit_log.c.at >= start)
    if end is not None:
        q = q.where(audit_log.c.at < end)
    with store.begin() as conn:
        rows = conn.execute(q).all()
    return [Entry(r.seq, r.at, r.actor, r.action, r.subject, r.details, r.prev_hash, r.hash) for r in rows]

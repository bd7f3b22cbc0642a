"""Compliance checklists: the protocol's preparation steps (002) and the care provider's audit
checklist (003), as tasks with an owner, a status, a due date, notes and links to evidence.

The tasks themselves are data (``checklist.yaml``: each quotes the policy words it comes from); the
store keeps only what the organisation records against each (``checklist_tasks``, migration 0005).
A task nobody has touched is ``not-started``, owned by the role the checklist gives it. Every
change is a row update plus an audit entry (``checklist.task.updated``, with the acting user), in
one transaction.

    for cl in checklists(): ...                      # the definitions
    tasks(store, "gp-protocol")                      # definitions + what was recorded
    update_task(store, "gp-protocol", "mesh-setup", status="done", actor="alice")
    checklist_progress(store)                        # for the dashboard: done / total per list

Notes and links are free text: guarded (:mod:`optout.text`) so no NHS number is ever stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any

import sqlalchemy as sa
import yaml

from optout import audit
from optout.errors import NotFoundError, UsageError
from optout.store import Store, checklist_tasks
from optout.text import guard_free_text

__all__ = [
    "ROLES",
    "STATUSES",
    "Checklist",
    "Progress",
    "Task",
    "TaskDefinition",
    "checklist",
    "checklist_progress",
    "checklists",
    "tasks",
    "update_task",
]

STATUSES: dict[str, str] = {
    "not-started": "Not started",
    "in-progress": "In progress",
    "done": "Done",
    "not-applicable": "Does not apply to us",
}
ROLES = ("admin", "ig_lead", "analyst", "viewer")
MAX_NOTES = 4000
MAX_LINKS = 20


@dataclass(frozen=True)
class Link:
    text: str
    href: str


@dataclass(frozen=True)
class TaskDefinition:
    id: str
    title: str
    quote: str  # the policy's words
    clause: str
    responsible: str  # as the policy names it
    owner_role: str  # the web app's role that owns it by default
    area: str
    links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class Checklist:
    id: str
    title: str
    clause: str
    intro: str
    tasks: tuple[TaskDefinition, ...]

    def task(self, task_id: str) -> TaskDefinition:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise NotFoundError(
            f"checklist {self.id!r} has no task {task_id!r}",
            hint=f"tasks: {', '.join(t.id for t in self.tasks)}",
        )


@dataclass(frozen=True)
class Task:
    """A task's definition and what the organisation recorded against it."""

    definition: TaskDefinition
    checklist: str
    status: str = "not-started"
    owner_role: str | None = None
    due_date: str | None = None
    notes: str | None = None
    evidence: tuple[str, ...] = ()  # "flow:ID", "release:ID" or an https:// address
    updated_at: str | None = None
    updated_by: str | None = None

    @property
    def id(self) -> str:
        return self.definition.id

    @property
    def owner(self) -> str:
        return self.owner_role or self.definition.owner_role

    def overdue(self, today: date | None = None) -> bool:
        if not self.due_date or self.status in ("done", "not-applicable"):
            return False
        try:
            return date.fromisoformat(self.due_date) < (today or datetime.now(UTC).date())
        except ValueError:
            return True

    def to_dict(self) -> dict[str, Any]:
        d = self.definition
        return {
            "checklist": self.checklist,
            "id": d.id,
            "title": d.title,
            "quote": d.quote,
            "clause": d.clause,
            "responsible": d.responsible,
            "area": d.area,
            "owner_role": self.owner,
            "status": self.status,
            "due_date": self.due_date,
            "overdue": self.overdue(),
            "notes": self.notes,
            "evidence": list(self.evidence),
            "links": [{"text": link.text, "href": link.href} for link in d.links],
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


@dataclass(frozen=True)
class Progress:
    checklist: str
    title: str
    total: int
    done: int  # done or does not apply
    in_progress: int
    overdue: int
    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 100

    def to_dict(self) -> dict[str, Any]:
        return {
            "checklist": self.checklist,
            "title": self.title,
            "total": self.total,
            "done": self.done,
            "in_progress": self.in_progress,
            "overdue": self.overdue,
            "percent": self.percent,
            "by_status": dict(self.by_status),
        }


def _words(text: Any) -> str:
    return " ".join(str(text).split())


@cache
def checklists() -> tuple[Checklist, ...]:
    """The checklists (``checklist.yaml``), in order."""
    text = resources.files("optout.policy").joinpath("checklist.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    out = []
    for cid, c in data["checklists"].items():
        defs = tuple(
            TaskDefinition(
                id=t["id"],
                title=t["title"],
                quote=_words(t["quote"]),
                clause=str(t.get("clause") or c["clause"]),
                responsible=t["responsible"],
                owner_role=t["owner_role"],
                area=t["area"],
                links=tuple(Link(x["text"], x["href"]) for x in t.get("links") or ()),
            )
            for t in c["tasks"]
        )
        out.append(Checklist(cid, c["title"], str(c["clause"]), _words(c["intro"]), defs))
    return tuple(out)


def checklist(checklist_id: str) -> Checklist:
    for c in checklists():
        if c.id == checklist_id:
            return c
    raise NotFoundError(
        f"no checklist {checklist_id!r}", hint=f"checklists: {', '.join(c.id for c in checklists())}"
    )


def _rows(store: Store, checklist_id: str) -> dict[str, Any]:
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(checklist_tasks).where(checklist_tasks.c.checklist == checklist_id)
        ).fetchall()
    return {r.task_id: r for r in rows}


def _task(c: Checklist, d: TaskDefinition, row: Any | None) -> Task:
    if row is None:
        return Task(d, c.id)
    return Task(
        d,
        c.id,
        status=row.status,
        owner_role=row.owner_role,
        due_date=row.due_date,
        notes=row.notes,
        evidence=tuple(row.evidence or ()),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def tasks(store: Store, checklist_id: str) -> list[Task]:
    """Every task of a checklist with what was recorded against it."""
    c = checklist(checklist_id)
    rows = _rows(store, c.id)
    return [_task(c, d, rows.get(d.id)) for d in c.tasks]


def get_task(store: Store, checklist_id: str, task_id: str) -> Task:
    c = checklist(checklist_id)
    d = c.task(task_id)
    return _task(c, d, _rows(store, c.id).get(d.id))


def _check_evidence(items: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        guard_free_text("a link to evidence", item, error=UsageError)
        kind, sep, rest = item.partition(":")
        ok = (sep and kind in ("flow", "release") and rest.strip()) or item.startswith("https://")
        if not ok:
            raise UsageError(
                f"{item[:60]!r} is not a link this checklist understands",
                hint="write flow:ID (a registered flow), release:ID (a release) or an https:// address",
            )
        out.append(item)
    if len(out) > MAX_LINKS:
        raise UsageError(f"at most {MAX_LINKS} links per task", hint="keep the most useful ones")
    return tuple(dict.fromkeys(out))


def update_task(
    store: Store,
    checklist_id: str,
    task_id: str,
    *,
    status: str | None = None,
    owner_role: str | None = None,
    due_date: str | None = None,
    notes: str | None = None,
    evidence: Sequence[str] | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Task:
    """Record a change to one task (only the fields given; ``due_date=""`` clears it), audited."""
    current = get_task(store, checklist_id, task_id)
    new: dict[str, Any] = {
        "status": current.status,
        "owner_role": current.owner,
        "due_date": current.due_date,
        "notes": current.notes,
        "evidence": list(current.evidence),
    }
    if status is not None:
        if status not in STATUSES:
            raise UsageError(f"{status!r} is not a status", hint=f"choose one of: {', '.join(STATUSES)}")
        new["status"] = status
    if owner_role is not None:
        if owner_role not in ROLES:
            raise UsageError(f"{owner_role!r} is not a role", hint=f"choose one of: {', '.join(ROLES)}")
        new["owner_role"] = owner_role
    if due_date is not None:
        due_date = due_date.strip()
        if due_date:
            try:
                date.fromisoformat(due_date)
            except ValueError:
                raise UsageError(
                    "the due date must be a real date", hint="give it as YYYY-MM-DD, e.g. 2026-06-30"
                ) from None
        new["due_date"] = due_date or None
    if notes is not None:
        notes = notes.strip()
        if len(notes) > MAX_NOTES:
            raise UsageError(f"notes are limited to {MAX_NOTES} characters", hint="shorten the notes")
        guard_free_text("the notes", notes, error=UsageError)
        new["notes"] = notes or None
    if evidence is not None:
        new["evidence"] = list(_check_evidence(evidence))
    old = {
        "status": current.status,
        "owner_role": current.owner,
        "due_date": current.due_date,
        "notes": current.notes,
        "evidence": list(current.evidence),
    }
    changed = [k for k in new if new[k] != old[k]]
    if not changed:
        return current
    t = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = t.isoformat(timespec="microseconds")
    if actor is None:
        from optout.config import load_settings

        actor = load_settings().actor
    guard_free_text("the actor name", actor, error=UsageError)
    existed = current.updated_at is not None

    def change(conn: Any) -> bool:
        values = {**new, "updated_at": stamp, "updated_by": actor}
        if existed:
            res = conn.execute(
                checklist_tasks.update()
                .where(
                    checklist_tasks.c.checklist == checklist_id,
                    checklist_tasks.c.task_id == task_id,
                    checklist_tasks.c.updated_at == current.updated_at,
                )
                .values(**values)
            )
            return bool(res.rowcount == 1)
        conn.execute(checklist_tasks.insert().values(checklist=checklist_id, task_id=task_id, **values))
        return True

    details = {
        "checklist": checklist_id,
        "task": task_id,
        "changed": changed,
        "status": new["status"],
        "owner_role": new["owner_role"],
        "due_date": new["due_date"],
        "evidence": new["evidence"],
    }
    try:
        entry = audit.record_change(
            store,
            "checklist.task.updated",
            change,
            actor=actor,
            subject=f"{checklist_id}/{task_id}",
            details=details,
            at=stamp,
        )
    except sa.exc.IntegrityError:
        entry = None
    if entry is None:
        raise UsageError(
            "someone else changed this task at the same time",
            hint="look at the task again and make your change again",
        )
    return get_task(store, checklist_id, task_id)


def checklist_progress(store: Store) -> list[Progress]:
    """Done (or not applicable) out of total, per checklist: for the dashboard."""
    out = []
    for c in checklists():
        ts = tasks(store, c.id)
        by: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for t in ts:
            by[t.status] = by.get(t.status, 0) + 1
        out.append(
            Progress(
                checklist=c.id,
                title=c.title,
                total=len(ts),
                done=by["done"] + by["not-applicable"],
                in_progress=by["in-progress"],
                overdue=sum(1 for t in ts if t.overdue()),
                by_status=by,
            )
        )
    return out

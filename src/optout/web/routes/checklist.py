"""Compliance checklists: the protocol's preparation steps (002) and the care provider's audit
checklist (003), each task with its owner role, status, due date, notes and evidence.

    GET  /checklist                      both checklists, progress and every task's state
    GET  /checklist/{list}/{task}        one task: the policy's words, links, and its record
    POST /checklist/{list}/{task}        record a change (IG lead, or a user holding the task's
                                         owner role; never a viewer), audited

API: ``GET /api/checklist``, ``GET /api/checklist/{list}``, ``PATCH /api/checklist/{list}/{task}``.
The dashboard shows the progress through a panel (``optout.web.panels``) that calls
:func:`optout.policy.checklist.checklist_progress`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import RedirectResponse, Response

from optout.errors import OptoutError
from optout.policy import checklist as cl
from optout.store import Store
from optout.text import mask
from optout.web.accounts import ROLE_LABELS, User
from optout.web.deps import Forbidden, audit_actor, current_user, flash, get_store, render
from optout.web.journeys import form_error
from optout.web.panels import Panel, dashboard_panel

router = APIRouter()


def _may_update(user: User, task: cl.Task) -> bool:
    if user.role == "viewer":
        return False
    return user.has_role("ig_lead") or user.role == task.owner


def _evidence_links(items: tuple[str, ...]) -> list[dict[str, str]]:
    out = []
    for item in items:
        kind, _, rest = item.partition(":")
        if kind == "flow":
            out.append({"text": f"Data flow {rest}", "href": f"/flows/{rest}"})
        elif kind == "release":
            out.append({"text": f"Release {rest}", "href": f"/releases/{rest}"})
        else:
            out.append({"text": item, "href": item})
    return out


def _task_view(task: cl.Task) -> dict[str, Any]:
    d = task.to_dict()
    d["status_label"] = cl.STATUSES.get(task.status, task.status)
    d["owner_label"] = ROLE_LABELS.get(task.owner, task.owner)
    d["evidence_links"] = _evidence_links(task.evidence)
    return d


@router.get("/checklist", include_in_schema=False)
def checklist_page(request: Request, user: User = Depends(current_user)) -> Response:
    store = get_store(request)
    progress = {p.checklist: p for p in cl.checklist_progress(store)}
    lists = []
    for c in cl.checklists():
        lists.append(
            {
                "id": c.id,
                "title": c.title,
                "clause": c.clause,
                "intro": c.intro,
                "progress": progress[c.id],
                "tasks": [_task_view(t) for t in cl.tasks(store, c.id)],
            }
        )
    return render(request, "checklist/index.html", {"lists": lists})


def _task_page(
    request: Request, user: User, list_id: str, task_id: str, *, errors: Any = None, form: Any = None
) -> Response:
    store = get_store(request)
    c = cl.checklist(list_id)
    task = cl.get_task(store, list_id, task_id)
    view = _task_view(task)
    values = form or {
        "status": task.status,
        "owner_role": task.owner,
        "due_date": task.due_date or "",
        "notes": task.notes or "",
        "evidence": "\n".join(task.evidence),
    }
    ctx = {
        "list": {"id": c.id, "title": c.title},
        "task": view,
        "values": values,
        "statuses": cl.STATUSES,
        "roles": [(r, ROLE_LABELS.get(r, r)) for r in cl.ROLES],
        "can_update": _may_update(user, task),
        "errors": errors or [],
    }
    return render(request, "checklist/task.html", ctx, status_code=400 if errors else 200)


@router.get("/checklist/{list_id}/{task_id}", include_in_schema=False)
def task_page(request: Request, list_id: str, task_id: str, user: User = Depends(current_user)) -> Response:
    return _task_page(request, user, list_id, task_id)


@router.post("/checklist/{list_id}/{task_id}", include_in_schema=False)
async def task_update(
    request: Request, list_id: str, task_id: str, user: User = Depends(current_user)
) -> Response:
    store = get_store(request)
    task = cl.get_task(store, list_id, task_id)
    if not _may_update(user, task):
        raise Forbidden(("ig_lead", task.owner))
    form = await request.form()
    values = {k: str(form.get(k) or "") for k in ("status", "owner_role", "due_date", "notes", "evidence")}
    try:
        cl.update_task(
            store,
            list_id,
            task_id,
            status=values["status"] or None,
            owner_role=values["owner_role"] or None,
            due_date=values["due_date"],
            notes=values["notes"],
            evidence=values["evidence"].splitlines(),
            actor=audit_actor(user),
        )
    except OptoutError as exc:
        field = {"due date": "#due_date", "status": "#status", "role": "#owner_role", "notes": "#notes"}
        href = next((v for k, v in field.items() if k in exc.message), "#evidence")
        shown = {k: mask(v) for k, v in values.items()}  # never echo an NHS number back
        return _task_page(request, user, list_id, task_id, errors=form_error(exc, href), form=shown)
    flash(request, f"'{task.definition.title}' updated.", heading="Task updated")
    return RedirectResponse("/checklist", status_code=303)


# --------------------------------------------------------------------------- dashboard panel


@dashboard_panel(order=50)
def progress_panel(request: Request, store: Store, settings: Any, user: User) -> Panel:
    """The dashboard's view of the checklists: done out of total, overdue tasks."""
    progress = [p.to_dict() for p in cl.checklist_progress(store)]
    return Panel("Compliance checklist", "checklist/_panel.html", {"progress": progress}, href="/checklist")


# --------------------------------------------------------------------------- JSON API


@router.get("/api/checklist", tags=["checklist"])
def api_checklists(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """Progress of every checklist (done, in progress, overdue) and its tasks."""
    store = get_store(request)
    return {
        "progress": [p.to_dict() for p in cl.checklist_progress(store)],
        "checklists": {c.id: [t.to_dict() for t in cl.tasks(store, c.id)] for c in cl.checklists()},
    }


@router.get("/api/checklist/{list_id}", tags=["checklist"])
def api_checklist(request: Request, list_id: str, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    """One checklist's tasks with what was recorded against each."""
    return [t.to_dict() for t in cl.tasks(get_store(request), list_id)]


@router.patch("/api/checklist/{list_id}/{task_id}", tags=["checklist"])
def api_update_task(
    request: Request,
    list_id: str,
    task_id: str,
    body: dict[str, Any] = Body(...),
    user: User = Depends(current_user),
) -> dict[str, Any]:
    """Change a task: any of status, owner_role, due_date ("" clears), notes, evidence (a list)."""
    store = get_store(request)
    task = cl.get_task(store, list_id, task_id)
    if not _may_update(user, task):
        raise Forbidden(("ig_lead", task.owner))
    evidence = body.get("evidence")
    updated = cl.update_task(
        store,
        list_id,
        task_id,
        status=body.get("status"),
        owner_role=body.get("owner_role"),
        due_date=body.get("due_date"),
        notes=body.get("notes"),
        evidence=[str(e) for e in evidence] if isinstance(evidence, list) else None,
        actor=audit_actor(user),
    )
    return updated.to_dict()

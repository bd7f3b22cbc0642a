"""The audit trail: browse it with filters, verify the hash chain, export the evidence pack.

Same library calls as ``optout audit verify|export``: ``optout.audit.verify`` and
``optout.audit.evidence.export_evidence`` (which records the export in the trail, with the user).
Anyone signed in may browse and verify; exporting the evidence pack is for IG leads (and admins).
Entries never hold an NHS number (``audit.record`` refuses one); what is shown is masked anyway.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from optout import atomic, audit
from optout.audit import evidence
from optout.errors import UsageError
from optout.text import mask
from optout.web.accounts import User
from optout.web.deps import audit_actor, current_user, get_store, render, require_role

router = APIRouter()

PAGE_SIZE = 50


def _entry(e: audit.Entry) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "at": e.at,
        "actor": mask(e.actor),
        "action": e.action,
        "subject": mask(e.subject) if e.subject else None,
        "details": json.loads(mask(e.details)) if _is_json(mask(e.details)) else {},
        "hash": e.hash,
        "prev_hash": e.prev_hash,
    }


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _bound(text: str | None, name: str, *, end: bool) -> str | None:
    if not text or not text.strip():
        return None
    return evidence.parse_bound(text, option=name, end=end).isoformat(timespec="microseconds")


def filtered_entries(
    store: Any,
    *,
    action: str | None = None,
    actor: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> list[audit.Entry]:
    """Entries (oldest first) in [start, end) whose action starts with ``action`` and whose actor
    contains ``actor`` (case-insensitive)."""
    items = audit.entries_between(store, _bound(start, "from", end=False), _bound(end, "to", end=True))
    if action:
        items = [e for e in items if e.action == action or e.action.startswith(action + ".")]
    if actor:
        needle = actor.strip().lower()
        items = [e for e in items if needle in e.actor.lower()]
    return items


def _actions(store: Any) -> list[str]:
    import sqlalchemy as sa

    from optout.store import audit_log

    with store.begin() as conn:
        return [
            r[0] for r in conn.execute(sa.select(audit_log.c.action).distinct().order_by(audit_log.c.action))
        ]


@router.get("/audit", include_in_schema=False)
def audit_page(
    request: Request,
    action: str = "",
    actor: str = "",
    start: str = Query("", alias="from"),
    end: str = Query("", alias="to"),
    page: int = Query(1, ge=1),
    user: User = Depends(current_user),
) -> Response:
    store = get_store(request)
    errors = []
    try:
        items = filtered_entries(store, action=action or None, actor=actor or None, start=start, end=end)
    except UsageError as exc:
        field = "from" if "from" in exc.message else "to"
        text = f"Enter the '{field}' date as a real date, for example 2026-03-31"
        errors.append({"text": text, "href": f"#{field}"})
        items = []
    items.reverse()  # newest first
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page = min(page, pages)
    return render(
        request,
        "audit/index.html",
        {
            "entries": [_entry(e) for e in items[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]],
            "total": len(items),
            "page": page,
            "pages": pages,
            "query": {"action": action, "actor": actor, "from": start, "to": end},
            "actions": _actions(store),
            "can_export": user.has_role("ig_lead"),
            "errors": errors,
        },
        status_code=400 if errors else 200,
    )


@router.get("/audit/verify", include_in_schema=False)
def verify_page(request: Request, expect_head: str = "", user: User = Depends(current_user)) -> Response:
    store = get_store(request)
    head = expect_head.strip().lower() or None
    errors = []
    result = None
    try:
        result = audit.verify(store, expect_head=head)
    except UsageError:
        errors.append(
            {
                "text": "Enter the head hash as the 64 letters and numbers shown when it was exported",
                "href": "#expect-head",
            }
        )
    return render(
        request,
        "audit/verify.html",
        {"v": result, "expect_head": expect_head, "errors": errors},
        status_code=400 if errors else 200,
    )


def _default_period(store: Any, start: str, end: str) -> tuple[str, str]:
    if not start.strip():
        first = audit.entries(store)[:1]
        start = first[0].at[:10] if first else datetime.now(UTC).date().isoformat()
    if not end.strip():
        end = datetime.now(UTC).date().isoformat()
    return start.strip(), end.strip()


def export_zip(
    store: Any, *, start: str, end: str, report_for: str, actor: str
) -> tuple[str, bytes, dict[str, Any]]:
    """Write the evidence pack (``export_evidence``, recorded in the trail) and zip it."""
    if report_for not in ("external", "internal"):
        raise UsageError("report_for must be external or internal", hint="external shows counts 1-4 as <5")
    start, end = _default_period(store, start, end)
    t0 = evidence.parse_bound(start, option="from")
    t1 = evidence.parse_bound(end, option="to", end=True)
    if t1 <= t0:
        raise UsageError(
            "the period ends before it starts", hint="give a 'to' date on or after the 'from' date"
        )
    name = f"evidence-{start[:10]}-to-{end[:10]}"
    with atomic.private_tempdir() as tmp:
        pack = evidence.export_evidence(
            store, start=t0, end=t1, out_dir=tmp / name, report_for=report_for, actor=actor
        )
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(pack.json_path, f"{name}/evidence.json")
            zf.write(pack.html_path, f"{name}/evidence.html")
    summary = {
        "entries": pack.data["summary"]["entries"],
        "head_hash": pack.data["head"]["hash"],
        "chain_ok": pack.data["chain"]["ok"],
        "evidence_json_sha256": pack.json_sha256,
    }
    return f"{name}.zip", buf.getvalue(), summary


def _zip_response(filename: str, data: bytes) -> Response:
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


@router.get("/audit/export", include_in_schema=False)
def export_page(request: Request, user: User = Depends(require_role("ig_lead"))) -> Response:
    store = get_store(request)
    start, end = _default_period(store, "", "")
    return render(
        request,
        "audit/export.html",
        {"values": {"from": start, "to": end, "report_for": "external"}, "field_errors": {}},
    )


@router.post("/audit/export", include_in_schema=False)
def export_download(
    request: Request,
    start: str = Form("", alias="from"),
    end: str = Form("", alias="to"),
    report_for: str = Form("external"),
    user: User = Depends(require_role("ig_lead")),
) -> Response:
    store = get_store(request)
    try:
        filename, data, _summary = export_zip(
            store, start=start, end=end, report_for=report_for, actor=audit_actor(user)
        )
    except UsageError as exc:
        field = "to" if ("'to'" in exc.message or "ends before" in exc.message) else "from"
        if "report_for" in exc.message:
            field = "report-for"
        text = {
            "from": "Enter the 'from' date as a real date, for example 2026-01-01",
            "to": "Enter a 'to' date on or after the 'from' date",
            "report-for": "Choose who the evidence pack is for",
        }[field]
        return render(
            request,
            "audit/export.html",
            {
                "values": {"from": start, "to": end, "report_for": report_for},
                "field_errors": {field: text},
                "errors": [{"text": text, "href": f"#{field}"}],
            },
            status_code=400,
        )
    return _zip_response(filename, data)


# --------------------------------------------------------------------------- API


@router.get("/api/audit/entries", tags=["audit"], summary="Audit entries, filtered")
def api_entries(
    request: Request,
    action: str | None = None,
    actor: str | None = None,
    start: str | None = Query(None, alias="from"),
    end: str | None = Query(None, alias="to"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    user: User = Depends(current_user),
) -> dict[str, Any]:
    """Entries oldest first; ``action`` matches an action or its prefix (``release``), ``actor``
    a part of the actor's name; ``from``/``to`` are dates (UTC, ``to`` included) or ISO times."""
    items = filtered_entries(get_store(request), action=action, actor=actor, start=start, end=end)
    return {"total": len(items), "entries": [_entry(e) for e in items[offset : offset + limit]]}


@router.get("/api/audit/verify", tags=["audit"], summary="Verify the hash chain")
def api_verify(
    request: Request, expect_head: str | None = None, user: User = Depends(current_user)
) -> dict[str, Any]:
    """The result of ``optout audit verify``: ok, count, head (seq, hash), problems."""
    return audit.verify(get_store(request), expect_head=expect_head).to_dict()


class EvidenceRequest(BaseModel):
    start: str | None = None
    end: str | None = None
    report_for: str = "external"

    model_config = {"populate_by_name": True}


@router.post("/api/audit/evidence", tags=["audit"], summary="Export the evidence pack (zip)")
def api_evidence(
    request: Request, body: EvidenceRequest, user: User = Depends(require_role("ig_lead"))
) -> Response:
    """``optout audit export`` as a zip (evidence.json + evidence.html); recorded in the trail.
    ``start``/``end``: dates (UTC, ``end`` included); default: the first entry's day to today."""
    filename, data, _ = export_zip(
        get_store(request),
        start=body.start or "",
        end=body.end or "",
        report_for=body.report_for,
        actor=audit_actor(user),
    )
    return _zip_response(filename, data)

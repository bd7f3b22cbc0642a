"""Releases: list, one release (manifest, report, audit), download, disclose, withdraw, linkage.

    GET  /releases                        every release: state, flow, deadline and days left
    GET  /releases/{id}                   the release: check, deadline, files, disclosures, audit
    GET  /releases/{id}/made              confirmation after making it in the browser
    GET  /releases/{id}/report            counts per table; ?for=external shows 1-4 as <5
    GET  /releases/{id}/manifest.json     the manifest (release.json) as written
    GET  /releases/{id}/download          the release as one zip (files + manifest), streamed;
                                          only its maker (or an admin), only while it matches its
                                          manifest; recorded in the audit trail
    GET|POST /releases/{id}/disclose      to the flow's recipient, within the deadline (IG lead)
    GET  /releases/{id}/disclosed         confirmation
    GET|POST /releases/{id}/withdraw      with a reason (IG lead)
    GET  /releases/{id}/linkcheck         common identifiers across its files (001 §8.1): counts

The journey that makes a release (``/releases/new/...``, :mod:`optout.web.routes.uploads`) is
included in this router, ahead of the routes above.

The checks are the library's (:mod:`optout.release.lifecycle`): deadline (001 §8.4), recipient,
flow unchanged, folder matching its manifest, linkage for files without the opt-out upheld.

API: ``GET /api/releases``, ``GET /api/releases/{id}``, ``GET /api/releases/{id}/report``,
``GET /api/releases/{id}/manifest``, ``GET /api/releases/{id}/download``,
``POST /api/releases/{id}/disclose``, ``POST /api/releases/{id}/withdraw``,
``POST /api/releases/{id}/linkcheck``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from optout import audit
from optout.errors import IntegrityError, OptoutError
from optout.policy import register as flows
from optout.release.lifecycle import (
    MANIFEST_NAME,
    Release,
    describe_deadline,
    disclose,
    get_release,
    list_releases,
    manifest_files,
    read_manifest,
    verify_release_dir,
    withdraw,
)
from optout.release.linkcheck import linkcheck
from optout.release.report import TableReport
from optout.text import mask
from optout.web.accounts import User
from optout.web.deps import Forbidden, audit_actor, current_user, flash, get_store, render, require_role
from optout.web.journeys import form_error, long_date
from optout.web.routes import uploads

router = APIRouter()
# Making a release (/releases/new/...) first, so that "new" is never taken for a release's id.
router.include_router(uploads.router)

DISCLOSERS = ("ig_lead",)  # who may disclose or withdraw (admin passes every check)
TABLE_FIELDS = set(TableReport.__dataclass_fields__)


# --------------------------------------------------------------------------- helpers


def _entries(store: Any, release_id: str) -> list[Any]:
    return [e for e in audit.entries(store) if e.subject == release_id]


def maker(store: Any, release_id: str) -> str | None:
    """Who made the release: the actor of its ``release.preparing`` entry."""
    for e in _entries(store, release_id):
        if e.action == "release.preparing":
            return str(e.actor)
    return None


def may_download(store: Any, release: Release, user: User) -> bool:
    """A release's files go to the user who made it, or an admin: downloads are scoped."""
    return user.role == "admin" or maker(store, release.id) == audit_actor(user)


def _days(rel: Release) -> dict[str, Any]:
    left = rel.days_left()
    state = rel.state()
    if left is None or state in ("disclosed", "withdrawn", "preparing", "failed"):
        return {"text": "–", "overdue": False, "soon": False}
    if left < 0:
        return {"text": "expired", "overdue": True, "soon": False}
    return {"text": str(int(left)) if left >= 1 else "less than 1", "overdue": False, "soon": left < 3}


def _row(rel: Release) -> dict[str, Any]:
    return {
        "id": rel.id,
        "state": rel.state(),
        "flow": f"{rel.flow_id} v{rel.flow_version}" if rel.flow_id else "–",
        "flow_id": rel.flow_id,
        "check": rel.check_source or "–",
        "deadline": long_date(rel.deadline) if rel.deadline else "–",
        "days": _days(rel),
        "recipients": ", ".join(d.recipient for d in rel.disclosures),
        "created": rel.created_at[:16].replace("T", " "),
    }


def _manifest(rel: Release) -> tuple[dict[str, Any] | None, str | None]:
    try:
        manifest, sha = read_manifest(rel.out_dir or ".")
    except IntegrityError as exc:
        return None, mask(exc.message)
    if rel.manifest_sha256 and sha != rel.manifest_sha256:
        return manifest, "the manifest has changed since the release was prepared"
    return manifest, None


def report_tables(manifest: dict[str, Any], *, external: bool) -> list[dict[str, Any]]:
    """The manifest's counts per table; for a report leaving the organisation, 1-4 as "<5"
    (the library's own suppression, :meth:`optout.release.report.TableReport.to_dict`)."""
    out = []
    for t in manifest.get("counts") or []:
        fields = {k: v for k, v in t.items() if k in TABLE_FIELDS}
        if all(
            isinstance(fields.get(k), int) for k in ("rows_in", "rows_out", "people_kept", "people_removed")
        ):
            out.append(TableReport(**fields).to_dict(external=external))
        else:  # written for outside the organisation already: shown as it is
            out.append(t)
    return out


def _release_context(request: Request, release_id: str, user: User) -> dict[str, Any]:
    store = get_store(request)
    rel = get_release(store, release_id)
    manifest, problem = _manifest(rel)
    files = manifest_files(manifest) if manifest else []
    entries = [
        {"seq": e.seq, "at": e.at[:19].replace("T", " "), "actor": mask(e.actor), "action": e.action}
        for e in _entries(store, rel.id)
    ]
    state = rel.state()
    check = (manifest or {}).get("check") or {}
    return {
        "rel": rel,
        "row": _row(rel),
        "state": state,
        "deadline_text": describe_deadline(rel),
        "manifest": manifest,
        "manifest_problem": problem,
        "files": files,
        "check": check,
        "entries": entries,
        "withdrawn": rel.details.get("withdrawn"),
        "failed": rel.details.get("failed") if rel.stored_state == "failed" else None,
        "can_download": state != "failed" and manifest is not None and may_download(store, rel, user),
        "can_disclose": state == "prepared" and user.has_role(*DISCLOSERS),
        "can_withdraw": state in ("prepared", "expired") and user.has_role(*DISCLOSERS),
        "made_by": maker(store, rel.id),
    }


# --------------------------------------------------------------------------- list and show


@router.get("/releases", include_in_schema=False)
def releases_page(request: Request, user: User = Depends(current_user)) -> Response:
    rels = [_row(r) for r in list_releases(get_store(request))]
    ctx = {"releases": rels, "can_make": user.has_role("analyst", "ig_lead")}
    return render(request, "releases/index.html", ctx)


@router.get("/releases/{release_id}", include_in_schema=False)
def release_page(request: Request, release_id: str, user: User = Depends(current_user)) -> Response:
    return render(request, "releases/show.html", _release_context(request, release_id, user))


@router.get("/releases/{release_id}/made", include_in_schema=False)
def made_page(request: Request, release_id: str, user: User = Depends(current_user)) -> Response:
    ctx = _disclose_context(request, release_id, user)
    manifest = ctx["manifest"] or {}
    ctx["tables"] = report_tables(manifest, external=False)
    return render(request, "releases/made.html", ctx)


@router.get("/releases/{release_id}/report", include_in_schema=False)
def report_page(request: Request, release_id: str, user: User = Depends(current_user)) -> Response:
    audience = request.query_params.get("for", "internal")
    external = audience == "external"
    ctx = _release_context(request, release_id, user)
    ctx.update(external=external, tables=report_tables(ctx["manifest"] or {}, external=external))
    return render(request, "releases/report.html", ctx)


@router.get("/releases/{release_id}/manifest.json", include_in_schema=False)
def manifest_download(request: Request, release_id: str, user: User = Depends(current_user)) -> Response:
    rel = get_release(get_store(request), release_id)
    data = (Path(rel.out_dir or ".") / MANIFEST_NAME).read_bytes() if rel.out_dir else b"{}"
    return Response(
        data,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{rel.id}-release.json"'},
    )


# --------------------------------------------------------------------------- download


class _Sink:
    """A write-only file for ``zipfile`` that hands each written block on (streaming)."""

    def __init__(self) -> None:
        self.blocks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.blocks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self.blocks)
        self.blocks.clear()
        return out


def zip_stream(folder: Path, names: list[str], prefix: str) -> Iterator[bytes]:
    """The release's files as a zip, produced block by block (nothing held whole in memory)."""
    sink = _Sink()
    target: Any = sink  # zipfile writes to any object with write() and flush() (no seeking)
    with zipfile.ZipFile(target, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for name in names:
            path = folder / name
            info = zipfile.ZipInfo(f"{prefix}/{name}", date_time=datetime.now().timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            with path.open("rb") as src, zf.open(info, mode="w", force_zip64=True) as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(block)
                    chunk = sink.take()
                    if chunk:
                        yield chunk
            chunk = sink.take()
            if chunk:
                yield chunk
    yield sink.take()


def _download(request: Request, release_id: str, user: User) -> Response:
    store = get_store(request)
    rel = get_release(store, release_id)
    if not may_download(store, rel, user):
        raise Forbidden(("admin",))
    _manifest_doc, files = verify_release_dir(rel)  # still exactly what was prepared
    names = [MANIFEST_NAME, *[f.path for f in files]]
    audit.record(
        store,
        "release.downloaded",
        actor=audit_actor(user),
        subject=rel.id,
        details={"files": len(files), "manifest_sha256": rel.manifest_sha256},
    )
    return StreamingResponse(
        zip_stream(Path(rel.out_dir or "."), names, rel.id),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{rel.id}.zip"'},
    )


@router.get("/releases/{release_id}/download", include_in_schema=False)
def download(request: Request, release_id: str, user: User = Depends(current_user)) -> Response:
    return _download(request, release_id, user)


# --------------------------------------------------------------------------- disclose, withdraw


def _disclose_context(request: Request, release_id: str, user: User, **extra: Any) -> dict[str, Any]:
    ctx = _release_context(request, release_id, user)
    rel = ctx["rel"]
    recipient = None
    if rel.flow_id:
        try:
            recipient = flows.get_flow(get_store(request), rel.flow_id).recipient
        except OptoutError:
            recipient = None
    not_upheld = [f for f in ctx["files"] if not f.opt_out_upheld]
    ctx.update(
        recipient=recipient,
        to=extra.pop("to", None) or recipient or "",
        not_upheld=not_upheld,
        accept="",
        link_findings=None,
        **extra,
    )
    return ctx


@router.get("/releases/{release_id}/disclose", include_in_schema=False)
def disclose_page(
    request: Request, release_id: str, user: User = Depends(require_role(*DISCLOSERS))
) -> Response:
    return render(request, "releases/disclose.html", _disclose_context(request, release_id, user))


@router.post("/releases/{release_id}/disclose", include_in_schema=False)
async def disclose_submit(
    request: Request, release_id: str, user: User = Depends(require_role(*DISCLOSERS))
) -> Response:
    form = await request.form()
    to = str(form.get("to") or "").strip()
    accept = str(form.get("accept_link_risk") or "").strip() or None
    try:
        disclose(get_store(request), release_id, to=to, actor=audit_actor(user), accept_link_risk=accept)
    except OptoutError as exc:
        field = "#accept_link_risk" if "identifier" in exc.message else "#to"
        ctx = _disclose_context(
            request, release_id, user, to=mask(to), errors=form_error(exc, field), error_hint=None
        )
        if exc.hint and "accept-link-risk" in exc.hint:
            ctx["link_findings"] = mask(exc.message)
        return render(
            request, "releases/disclose.html", ctx, status_code=409 if exc.kind == "policy" else 400
        )
    return RedirectResponse(f"/releases/{release_id}/disclosed", status_code=303)


@router.get("/releases/{release_id}/disclosed", include_in_schema=False)
def disclosed_page(request: Request, release_id: str, user: User = Depends(current_user)) -> Response:
    ctx = _release_context(request, release_id, user)
    rel = ctx["rel"]
    ctx["disclosure"] = rel.disclosures[-1] if rel.disclosures else None
    return render(request, "releases/disclosed.html", ctx)


@router.get("/releases/{release_id}/withdraw", include_in_schema=False)
def withdraw_page(
    request: Request, release_id: str, user: User = Depends(require_role(*DISCLOSERS))
) -> Response:
    ctx = _release_context(request, release_id, user)
    ctx["reason"] = ""
    return render(request, "releases/withdraw.html", ctx)


@router.post("/releases/{release_id}/withdraw", include_in_schema=False)
async def withdraw_submit(
    request: Request, release_id: str, user: User = Depends(require_role(*DISCLOSERS))
) -> Response:
    form = await request.form()
    reason = str(form.get("reason") or "").strip()
    try:
        withdraw(get_store(request), release_id, reason=reason, actor=audit_actor(user))
    except OptoutError as exc:
        ctx = _release_context(request, release_id, user)
        ctx.update(reason=mask(reason), errors=form_error(exc, "#reason"))
        return render(request, "releases/withdraw.html", ctx, status_code=400)
    flash(request, f"Release {release_id} was withdrawn. It can never be disclosed.", heading="Withdrawn")
    return RedirectResponse(f"/releases/{release_id}", status_code=303)


# --------------------------------------------------------------------------- linkage check


def _linkcheck(request: Request, release_id: str) -> tuple[Release, Any]:
    rel = get_release(get_store(request), release_id)
    manifest, _problem = _manifest(rel)
    files = manifest_files(manifest) if manifest else []
    folder = Path(rel.out_dir or ".")
    return rel, linkcheck([folder / f.path for f in files])


@router.get("/releases/{release_id}/linkcheck", include_in_schema=False)
def linkcheck_page(request: Request, release_id: str, user: User = Depends(current_user)) -> Response:
    ctx = _release_context(request, release_id, user)
    disclosed = [e for e in _entries(get_store(request), release_id) if e.action == "release.disclosed"]
    recorded = disclosed[-1].details_dict.get("linkcheck") if disclosed else None
    _rel, report = _linkcheck(request, release_id)
    ctx.update(report=report, recorded=recorded)
    return render(request, "releases/linkcheck.html", ctx)


# --------------------------------------------------------------------------- JSON API


@router.get("/api/releases", tags=["releases"])
def api_releases(request: Request, state: str | None = None, user: User = Depends(current_user)) -> list[Any]:
    """Every release, newest first (``state`` filters on the state now)."""
    return [r.to_dict() for r in list_releases(get_store(request), state=state)]


@router.get("/api/releases/{release_id}", tags=["releases"])
def api_release(request: Request, release_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
    """A release with its files, any manifest problem and its audit entries."""
    ctx = _release_context(request, release_id, user)
    out = dict(ctx["rel"].to_dict())
    out["files"] = [vars(f) for f in ctx["files"]]
    out["manifest_problem"] = ctx["manifest_problem"]
    out["audit"] = ctx["entries"]
    return out


@router.get("/api/releases/{release_id}/report", tags=["releases"])
def api_report(request: Request, release_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
    """Counts per table; ``?for=external`` shows 1-4 as "<5" (for outside the organisation)."""
    external = request.query_params.get("for") == "external"
    rel = get_release(get_store(request), release_id)
    manifest, problem = _manifest(rel)
    return {
        "release_id": rel.id,
        "report_for": "external" if external else "internal",
        "tables": report_tables(manifest or {}, external=external),
        "manifest_problem": problem,
    }


@router.get("/api/releases/{release_id}/manifest", tags=["releases"])
def api_manifest(request: Request, release_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
    """The release's manifest (release.json) as written."""
    rel = get_release(get_store(request), release_id)
    manifest, _sha = read_manifest(rel.out_dir or ".")
    return manifest


@router.get("/api/releases/{release_id}/download", tags=["releases"])
def api_download(request: Request, release_id: str, user: User = Depends(current_user)) -> Response:
    """The release as a zip (its maker or an admin; refused if it no longer matches its manifest)."""
    return _download(request, release_id, user)


@router.post("/api/releases/{release_id}/disclose", tags=["releases"])
def api_disclose(
    request: Request,
    release_id: str,
    body: dict[str, Any] = Body(...),
    user: User = Depends(require_role(*DISCLOSERS)),
) -> dict[str, Any]:
    """Record a disclosure to ``to`` (the flow's recipient), after every check passes."""
    result = disclose(
        get_store(request),
        release_id,
        to=str(body.get("to") or ""),
        actor=audit_actor(user),
        accept_link_risk=body.get("accept_link_risk"),
    )
    out: dict[str, Any] = {"release": result.release.to_dict(), "disclosure": vars(result.disclosure)}
    if result.linkcheck is not None:
        out["linkcheck"] = result.linkcheck.to_dict()
    return out


@router.post("/api/releases/{release_id}/withdraw", tags=["releases"])
def api_withdraw(
    request: Request,
    release_id: str,
    body: dict[str, Any] = Body(...),
    user: User = Depends(require_role(*DISCLOSERS)),
) -> dict[str, Any]:
    """Withdraw a release that has not been disclosed (``reason`` is recorded)."""
    rel = withdraw(
        get_store(request), release_id, reason=str(body.get("reason") or ""), actor=audit_actor(user)
    )
    return dict(rel.to_dict())


@router.post("/api/releases/{release_id}/linkcheck", tags=["releases"])
def api_linkcheck(request: Request, release_id: str, user: User = Depends(current_user)) -> JSONResponse:
    """Common identifiers across the release's files (counts, never values)."""
    _rel, report = _linkcheck(request, release_id)
    return JSONResponse(report.to_dict())

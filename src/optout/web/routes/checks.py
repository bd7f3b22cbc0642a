"""Checks and the temporary cache: requests and their state, collecting a reply, the cache's
status (never its members) and refreshing it.

    GET  /checks                          requests made here, newest first; the cache's status
    GET  /checks/{local_id}               one request: its state and times
    POST /checks/{local_id}/collect       collect its reply if it has come (analyst, IG lead)
    GET  /checks/{local_id}/wait          waiting for a reply (reloads itself; works without JS)
    GET  /checks/cache/refresh            refresh the cache: upload the legitimate-relationship
    POST /checks/cache/refresh            cohort (IG lead); streamed to disk, deleted once sent

Same calls as ``optout check --collect``, ``optout cache status`` and ``optout cache refresh``:
:func:`optout.check.collect`, :func:`optout.check.cache.status`, :func:`optout.check.refresh_cache`
(``wait=None``), with the web user as actor. No page shows a count of people returned per
request (with a small cohort it could tell who has opted out), and the cache's members are never
read here.

API: ``GET /api/checks``, ``GET /api/checks/{id}``, ``POST /api/checks/{id}/collect``,
``GET /api/cache``, ``POST /api/cache/refresh`` (multipart ``cohort`` file, IG lead).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from optout.check import cache as cache_mod
from optout.check import collect, read_cohort, refresh_cache
from optout.check import list_requests as sweep_and_list
from optout.check import state as check_state
from optout.errors import OptoutError, PendingError, TransportError
from optout.text import mask
from optout.web.accounts import User
from optout.web.deps import (
    CsrfFailed,
    Forbidden,
    current_user,
    flash,
    get_settings,
    get_store,
    render,
    require_role,
)
from optout.web.drafts import Drafts
from optout.web.journeys import StreamedCsrf, acting_settings, form_error, long_date, poll_due, web_home
from optout.web.multipart import check_table, receive_multipart, table_name

router = APIRouter()

COLLECTORS = ("analyst", "ig_lead")
REFRESHERS = ("ig_lead",)
WAIT_SECONDS = 5


def _request_view(req: check_state.CheckRequest) -> dict[str, Any]:
    details = req.details or {}
    from optout.check.cleaned_list import CACHE_WINDOW, ONE_OFF_WINDOW

    checked = req.sent_at if req.state == "collected" else None
    deadline = (checked + (CACHE_WINDOW if req.mode == "cache" else ONE_OFF_WINDOW)) if checked else None
    return {
        "local_id": req.local_id,
        "mode": req.mode,
        "mode_text": "temporary cache refresh" if req.mode == "cache" else "one-off check",
        "state": req.state,
        "pending": req.state in ("prepared", "sent", "answered"),
        "created": long_date(req.created_at),
        "sent": long_date(req.sent_at) if req.sent_at else "",
        "answered": long_date(req.answered_at) if req.answered_at else "",
        "sent_count": req.sent_count,
        "cohort_size": req.cohort_size,
        "deadline": long_date(deadline) if deadline else "",
        "subject": mask(str(details.get("subject") or "")),
        "discarded": mask(str(details.get("discarded_reason") or details.get("reason") or "")),
    }


def _api_request(req: check_state.CheckRequest) -> dict[str, Any]:
    """A request for the API: state, times and counts sent; never the count returned."""
    return {
        "local_id": req.local_id,
        "mode": req.mode,
        "state": req.state,
        "created_at": check_state.iso(req.created_at),
        "sent_at": check_state.iso(req.sent_at) if req.sent_at else None,
        "answered_at": check_state.iso(req.answered_at) if req.answered_at else None,
        "cohort_size": req.cohort_size,
        "sent_count": req.sent_count,
        "request_message_id": req.request_message_id,
    }


def _cache_view(request: Request) -> dict[str, Any]:
    status = cache_mod.status(get_settings(request))
    meta = status.meta
    age = status.age
    return {
        "state": status.state,
        "exists": status.exists,
        "verified": status.verified,
        "problem": mask(status.problem) if status.problem else None,
        "refreshed": long_date(meta.refreshed_at) if meta else "",
        "age_days": round(age.total_seconds() / 86400, 1) if age is not None else None,
        "refresh_due": long_date(meta.refresh_due) if meta else "",
        "expires": long_date(meta.expires_at) if meta else "",
        "disclose_by": long_date(meta.disclose_by) if meta else "",
        "cohort_size": meta.cohort_size if meta else None,
    }


def _requests(request: Request, user: User) -> list[check_state.CheckRequest]:
    store = get_store(request)
    sweep_and_list(settings=acting_settings(request, user), store=store)  # clears stale leftovers, audited
    return check_state.list_requests(store)


@router.get("/checks", include_in_schema=False)
def checks_page(request: Request, user: User = Depends(current_user)) -> Response:
    reqs = [_request_view(r) for r in _requests(request, user)]
    ctx = {
        "requests": reqs,
        "cache": _cache_view(request),
        "can_collect": user.has_role(*COLLECTORS),
        "can_refresh": user.has_role(*REFRESHERS),
    }
    return render(request, "checks/index.html", ctx)


@router.get("/checks/cache/refresh", include_in_schema=False)
def refresh_page(request: Request, user: User = Depends(require_role(*REFRESHERS))) -> Response:
    return render(request, "checks/refresh.html", {"cache": _cache_view(request), "column": ""})


async def refresh_submit(request: Request) -> Response:
    """POST /checks/cache/refresh: the cohort file, streamed to an owner-only folder, read, sent
    over MESH, then deleted (a plain route: see ``uploads.upload_submit``)."""
    user = current_user(request)
    if not user.has_role(*REFRESHERS):
        raise Forbidden(REFRESHERS)
    local_id, errors = await _refresh(request, user, check_csrf=True)
    if errors:
        ctx = {"cache": _cache_view(request), "column": "", "errors": errors}
        return render(request, "checks/refresh.html", ctx, status_code=400)
    return RedirectResponse(f"/checks/{local_id}/wait", status_code=303)


async def _refresh(
    request: Request, user: User, *, check_csrf: bool
) -> tuple[str | None, list[dict[str, str]]]:
    drafts = Drafts(web_home(request) / "cohorts", "cohort")
    draft = drafts.create(user.username)
    try:
        csrf = StreamedCsrf(request, enabled=check_csrf)
        try:
            form = await receive_multipart(
                request.stream(),
                request.headers.get("content-type", ""),
                draft.path("incoming"),
                on_field=csrf.on_field,
                before_file=csrf.before_file,
            )
        except OptoutError as exc:
            return None, form_error(exc, "#cohort")
        if not csrf.ok:
            raise CsrfFailed()
        files = [f for f in form.files if f.field == "cohort"]
        if not files:
            return None, [{"text": "Select the file of NHS numbers to check", "href": "#cohort"}]
        f = files[0]
        try:
            _name, suffix = table_name(f.filename)
        except OptoutError as exc:
            if not f.filename.lower().endswith((".dat", ".lst", ".list")):
                return None, form_error(exc, "#cohort")
            suffix = ".dat"
        target = draft.path(f"cohort{suffix or '.dat'}")
        f.path.replace(target)
        column = (form.fields.get("column") or "").strip() or None
        try:
            if suffix in (".csv", ".parquet", ".tsv", ".txt", ".psv", ".pq", ".parq") and column is None:
                check_table(target, f.filename)  # a clear message for a file that is not a table
            cohort = read_cohort(target, column=column)
            result = refresh_cache(
                cohort,
                settings=acting_settings(request, user),
                wait=None,
                store=get_store(request),
                subject="optout-web-cache-refresh",
            )
        except OptoutError as exc:
            return None, form_error(exc, "#cohort")
        return result.local_id, []
    finally:
        drafts.delete(draft)  # the cohort file was sent (or refused): it has no further purpose


router.add_route("/checks/cache/refresh", refresh_submit, methods=["POST"], include_in_schema=False)


@router.get("/checks/{local_id}", include_in_schema=False)
def check_page(request: Request, local_id: str, user: User = Depends(current_user)) -> Response:
    req = check_state.get(get_store(request), local_id)
    ctx = {"req": _request_view(req), "can_collect": user.has_role(*COLLECTORS)}
    return render(request, "checks/show.html", ctx)


def _collect(request: Request, user: User, local_id: str) -> tuple[str, str | None]:
    """Collect without waiting: (state, problem)."""
    try:
        result = collect(
            local_id, settings=acting_settings(request, user), wait=None, store=get_store(request)
        )
    except PendingError:
        return "pending", None
    except TransportError as exc:
        return "pending", mask(exc.message)
    return result.state, None


@router.post("/checks/{local_id}/collect", include_in_schema=False)
def collect_submit(
    request: Request, local_id: str, user: User = Depends(require_role(*COLLECTORS))
) -> Response:
    state, problem = _collect(request, user, local_id)
    if state == "collected":
        flash(request, f"The reply to request {local_id} was collected.", heading="Reply collected")
    elif problem:
        flash(request, f"MESH could not be reached: {problem}", kind="warning", heading="Not collected")
    else:
        flash(
            request,
            f"There is no reply to request {local_id} yet. Try again later.",
            kind="info",
            heading="No reply yet",
        )
    return RedirectResponse(f"/checks/{local_id}", status_code=303)


@router.get("/checks/{local_id}/wait", include_in_schema=False)
def wait_page(request: Request, local_id: str, user: User = Depends(require_role(*COLLECTORS))) -> Response:
    req = check_state.get(get_store(request), local_id)
    problem = None
    polls: dict[str, datetime] | None = getattr(request.app.state, "check_polls", None)
    if polls is None:
        polls = request.app.state.check_polls = {}
    now = datetime.now(UTC)
    force = request.query_params.get("now") == "1"  # "Check again"
    if not req.final and (force or poll_due(req.sent_at or req.created_at, polls.get(local_id), now)):
        polls[local_id] = now
        _state, problem = _collect(request, user, local_id)
        req = check_state.get(get_store(request), local_id)
    if req.final:
        if req.state == "collected" and req.mode == "cache":
            flash(request, "The temporary cache was refreshed.", heading="Cache refreshed")
        return RedirectResponse(f"/checks/{local_id}", status_code=303)
    ctx = {"req": _request_view(req), "problem": problem, "refresh_seconds": WAIT_SECONDS}
    return render(request, "checks/wait.html", ctx)


# --------------------------------------------------------------------------- JSON API


@router.get("/api/checks", tags=["checks"])
def api_checks(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    """Check requests made here, newest first (state, times, counts sent)."""
    return [_api_request(r) for r in _requests(request, user)]


@router.get("/api/checks/{local_id}", tags=["checks"])
def api_check(request: Request, local_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
    """One check request."""
    return _api_request(check_state.get(get_store(request), local_id))


@router.post("/api/checks/{local_id}/collect", tags=["checks"])
def api_collect(
    request: Request, local_id: str, user: User = Depends(require_role(*COLLECTORS))
) -> JSONResponse:
    """Collect the reply if it has come: 200 when collected, 202 while pending."""
    state, problem = _collect(request, user, local_id)
    body = {**_api_request(check_state.get(get_store(request), local_id)), "problem": problem}
    return JSONResponse(body, status_code=200 if state != "pending" else 202)


@router.get("/api/cache", tags=["checks"])
def api_cache(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """The temporary cache's status: refreshed, refresh due, expiry, deadline if used now. Never
    its members."""
    d = cache_mod.status(get_settings(request)).to_dict()
    d.pop("path", None)
    d.pop("returned_count", None)
    return d


@router.post(
    "/api/cache/refresh",
    tags=["checks"],
    status_code=202,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "cohort": {"type": "string", "format": "binary"},
                            "column": {"type": "string"},
                        },
                        "required": ["cohort"],
                    }
                }
            },
        }
    },
)
async def api_refresh(request: Request, user: User = Depends(require_role(*REFRESHERS))) -> Response:
    """Refresh the temporary cache: multipart ``cohort`` (the legitimate-relationship cohort;
    CSV, Parquet or a plain list) and optional ``column``. Collect with ``/api/checks/{id}/collect``."""
    local_id, errors = await _refresh(request, user, check_csrf=False)
    if errors:
        return JSONResponse(
            {"error": "input", "message": "; ".join(e["text"] for e in errors)}, status_code=400
        )
    req = check_state.get(get_store(request), str(local_id))
    return JSONResponse(_api_request(req), status_code=202)

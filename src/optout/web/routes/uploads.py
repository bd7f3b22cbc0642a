"""Make a release from the browser: the small organisation's path (analyst, IG lead, admin).

Each step is one page; the journey's state and its uploaded files live in one owner-only folder
(``<upload dir>/<id>/``, 0700) that only the user who started it can reach, and that is deleted
when the release is made or abandoned (or swept after a day untouched).

    GET  /releases/new                         what you need; your unfinished releases
    POST /releases/new                         start
    GET|POST /releases/new/{id}/flow           the registered flow it is for (the opt-out must apply)
    GET  /releases/new/{id}/upload             upload the extract's tables (CSV or Parquet)
    POST /releases/new/{id}/upload             (streamed to disk, optout.web.multipart)
    POST /releases/new/{id}/tables/{t}/remove  remove one
    GET|POST /releases/new/{id}/columns        each table's NHS-number column (detected, editable)
    GET|POST /releases/new/{id}/links          tables without one: the column linking them to a parent
    GET|POST /releases/new/{id}/missing        rows with a missing or invalid NHS number (001 §8.2)
    GET|POST /releases/new/{id}/reason         why they may be released, when releasing them
    GET|POST /releases/new/{id}/trace          the trace index, when tracing them
    GET|POST /releases/new/{id}/check          check over MESH now, or use the temporary cache
    GET  /releases/new/{id}/check/wait         waiting for the reply (reloads itself; works without JS)
    GET  /releases/new/{id}/preview            what would be kept and removed (a dry run)
    GET  /releases/new/{id}/confirm            check your answers
    POST /releases/new/{id}/make               make the release -> /releases/{release}/made
    POST /releases/new/{id}/abandon            delete everything uploaded

Every library call is the CLI's: :func:`optout.check.check_cohort` (``wait=None``) and
:func:`optout.check.collect`, :func:`optout.check.cache.load_allow_list`,
:func:`optout.release.apply_opt_outs` (``dry_run`` for the preview), with the web user as actor.

API (bearer token): ``POST /api/releases/new``, ``POST /api/releases/new/{id}/tables``
(multipart), ``PUT /api/releases/new/{id}/plan``, ``POST /api/releases/new/{id}/check``,
``POST /api/releases/new/{id}/check/collect``, ``GET /api/releases/new/{id}/preview``,
``POST /api/releases/new/{id}/make``, ``DELETE /api/releases/new/{id}``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from optout import audit
from optout.check import Cohort, check_cohort, cohort_from_numbers, collect
from optout.check import cache as cache_mod
from optout.check.cohort import InvalidClass
from optout.dat import write_dat
from optout.errors import (
    InputError,
    NotFoundError,
    OptoutError,
    PendingError,
    PolicyRefusal,
    TransportError,
    UsageError,
)
from optout.policy import register as flows
from optout.release import apply_opt_outs
from optout.release.plan import RELEASE_REASONS, detect_nhs_column, make_plan
from optout.tables import open_table, read_column
from optout.text import mask
from optout.web.accounts import User
from optout.web.deps import (
    CsrfFailed,
    Forbidden,
    audit_actor,
    current_user,
    flash,
    get_settings,
    get_store,
    render,
    require_role,
)
from optout.web.drafts import Draft, Drafts
from optout.web.journeys import StreamedCsrf, acting_settings, drafts, form_error, long_date, poll_due
from optout.web.multipart import check_table, receive_multipart, remove_tree, table_name

router = APIRouter()

MAKERS = ("analyst", "ig_lead")  # who may make a release (admin passes every check)
UPLOAD_AGE = timedelta(hours=24)  # an unfinished release's files are deleted after a day untouched
CHECK_REFRESH_SECONDS = 5
UNMATCHED = {
    "withhold": (
        "Remove those rows",
        "The opt-out cannot be checked for them, so they are not released (the safe choice).",
    ),
    "fail": (
        "Stop, and fix the NHS numbers first",
        "Nothing is released while any row has a missing or invalid NHS number.",
    ),
    "trace": (
        "Look up the missing NHS numbers in a trace index",
        "Upload a file of local identifiers and their NHS numbers; rows still without one are removed.",
    ),
    "release": (
        "Release those rows, with a recorded reason",
        "Only when obtaining the NHS numbers is disproportionate, or they were removed by law (001 §8.2).",
    ),
}
REASONS = {
    "disproportionate-effort": (
        "Obtaining the NHS numbers is disproportionate, and good tracing practice was followed"
    ),
    "legally-restricted": (
        "Identifiers were removed by law or a consent model (e.g. HFEA): no re-identification"
    ),
}


# --------------------------------------------------------------------------- the journey


def _drafts(request: Request) -> Drafts:
    return drafts(request, "release")


def _base(draft: Draft) -> str:
    return f"/releases/new/{draft.id}"


def _tables(draft: Draft) -> dict[str, dict[str, Any]]:
    return dict(draft.data.get("tables") or {})


def _table_paths(draft: Draft) -> list[Path]:
    return [draft.path(t["path"]) for t in _tables(draft).values()]


def _needs_links(draft: Draft) -> list[str]:
    cols = draft.data.get("nhs_columns") or {}
    return [name for name in _tables(draft) if not cols.get(name)]


def _next_url(draft: Draft) -> str:
    d = draft.data
    if not d.get("flow_id"):
        return f"{_base(draft)}/flow"
    if not _tables(draft) or not d.get("uploads_done"):
        return f"{_base(draft)}/upload"
    if not d.get("columns_done"):
        return f"{_base(draft)}/columns"
    if _needs_links(draft) and not d.get("links_done"):
        return f"{_base(draft)}/links"
    if not d.get("unmatched"):
        return f"{_base(draft)}/missing"
    if d["unmatched"] == "release" and not d.get("release_reason"):
        return f"{_base(draft)}/reason"
    if d["unmatched"] == "trace" and not d.get("trace"):
        return f"{_base(draft)}/trace"
    check = d.get("check") or {}
    if not check.get("mode"):
        return f"{_base(draft)}/check"
    if check.get("mode") == "one-off" and check.get("state") != "collected":
        return f"{_base(draft)}/check/wait"
    return f"{_base(draft)}/preview"


def _load(request: Request, draft_id: str, user: User) -> Draft:
    """The user's own journey (anyone else's is "not found": uploads are scoped to their maker)."""
    return _drafts(request).load(draft_id, user.username)


def _gone(request: Request) -> Response:
    return render(
        request,
        "errors/error.html",
        {
            "heading": "This release is no longer being made",
            "lines": [
                "It was made or abandoned, or its uploaded files were deleted after a day without changes."
            ],
            "back_href": "/releases/new",
            "back_text": "Start again",
        },
        status_code=404,
    )


def _audit_upload(request: Request, user: User, action: str, draft: Draft, **details: Any) -> None:
    audit.record(
        get_store(request),
        action,
        actor=audit_actor(user),
        subject=f"upload-{draft.id[:8]}",
        details={
            "tables": {n: {"file": t["file"], "bytes": t["size"]} for n, t in _tables(draft).items()},
            **details,
        },
    )


def _delete(request: Request, user: User, draft: Draft, reason: str) -> None:
    """Delete the journey and every uploaded file; recorded (what, never a value)."""
    _audit_upload(request, user, "upload.deleted", draft, reason=reason)
    _drafts(request).delete(draft)


def sweep_uploads(request: Request) -> int:
    """Delete unfinished releases' folders untouched for a day (their files outlive no purpose)."""
    return _drafts(request).sweep(UPLOAD_AGE)


def _clear_after(draft: Draft, step: str) -> None:
    """A change at ``step`` makes the later answers (and any check or preview) stale."""
    order = ["flow", "upload", "columns", "links", "missing", "trace", "check"]
    later = order[order.index(step) + 1 :]
    d = draft.data
    if "columns" in later:
        d.pop("columns_done", None)
    if "links" in later:
        d.pop("links_done", None)
        d.pop("links", None)
    if "missing" in later:
        d.pop("unmatched", None)
        d.pop("release_reason", None)
    if "trace" in later:
        if d.get("trace"):
            remove_tree(draft.path("trace"))
        d.pop("trace", None)
    _forget_check(draft)


def _forget_check(draft: Draft) -> None:
    check = draft.data.pop("check", None)
    for name in ("cleaned.dat", "cleaned.dat.json", "cohort.dat"):
        draft.path(name).unlink(missing_ok=True)
    if check and check.get("local_id"):
        draft.data.setdefault("old_checks", []).append(check["local_id"])


# --------------------------------------------------------------------------- start, flow


@router.get("/releases/new", include_in_schema=False)
def start_page(request: Request, user: User = Depends(require_role(*MAKERS))) -> Response:
    sweep_uploads(request)
    mine = [
        {
            "id": d.id,
            "flow": d.data.get("flow_id") or "no flow chosen yet",
            "tables": len(d.data.get("tables") or {}),
            "updated": d.updated_at,
        }
        for d in _drafts(request).mine(user.username)
    ]
    return render(request, "uploads/start.html", {"drafts": mine, "limit_mb": _limit_mb(request)})


def _limit_mb(request: Request) -> int:
    return max(1, request.app.state.web_config.max_upload_bytes // (1024 * 1024))


@router.post("/releases/new", include_in_schema=False)
def start(request: Request, user: User = Depends(require_role(*MAKERS))) -> Response:
    sweep_uploads(request)
    draft = _drafts(request).create(user.username, {"tables": {}})
    flow = request.query_params.get("flow")
    if flow:
        with contextlib.suppress(OptoutError):
            flows.flow_for_release(get_store(request), flow)
            draft.data["flow_id"] = flow
            _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


def _flow_options(request: Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    usable: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    for rec in flows.list_flows(get_store(request)):
        item = {
            "id": rec.id,
            "name": rec.name,
            "decision": rec.decision or "cannot-decide",
            "recipient": rec.recipient,
        }
        (usable if rec.decision == "applies" else other).append(item)
    return usable, other


@router.get("/releases/new/{draft_id}/flow", include_in_schema=False)
def flow_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    usable, other = _flow_options(request)
    ctx = {"draft": draft, "usable": usable, "other": other, "value": draft.data.get("flow_id")}
    return render(request, "uploads/flow.html", ctx)


@router.post("/releases/new/{draft_id}/flow", include_in_schema=False)
async def flow_submit(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    form = await request.form()
    flow_id = str(form.get("flow") or "")
    errors = []
    if not flow_id:
        errors = [{"text": "Select the data flow this release is for", "href": "#flow"}]
    else:
        try:
            flows.flow_for_release(get_store(request), flow_id)
        except OptoutError as exc:
            errors = form_error(exc, "#flow")
    if errors:
        usable, other = _flow_options(request)
        ctx = {"draft": draft, "usable": usable, "other": other, "value": flow_id, "errors": errors}
        return render(request, "uploads/flow.html", ctx, status_code=400)
    if draft.data.get("flow_id") != flow_id:
        draft.data["flow_id"] = flow_id
        _forget_check(draft)
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


# --------------------------------------------------------------------------- upload


def _upload_context(request: Request, draft: Draft, errors: Any = None) -> dict[str, Any]:
    tables = [{"name": n, **t} for n, t in _tables(draft).items()]
    return {
        "draft": draft,
        "tables": tables,
        "limit_mb": _limit_mb(request),
        "errors": errors or [],
    }


@router.get("/releases/new/{draft_id}/upload", include_in_schema=False)
def upload_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    return render(request, "uploads/upload.html", _upload_context(request, draft))


async def _receive_tables(request: Request, draft: Draft, *, check_csrf: bool) -> list[dict[str, str]]:
    """Stream the request's files into the draft's folder; returns errors for the summary."""
    incoming = draft.path("incoming")
    csrf = StreamedCsrf(request, enabled=check_csrf)
    try:
        form = await receive_multipart(
            request.stream(),
            request.headers.get("content-type", ""),
            incoming,
            on_field=csrf.on_field,
            before_file=csrf.before_file,
        )
    except OptoutError as exc:
        remove_tree(incoming)
        return form_error(exc, "#tables")
    except BaseException:
        remove_tree(incoming)
        raise
    files = [f for f in form.files if f.field in ("tables", "file", "files")]
    errors: list[dict[str, str]] = []
    if not files:
        remove_tree(incoming)
        return [{"text": "Select one or more CSV or Parquet files", "href": "#tables"}]
    tables = _tables(draft)
    target_dir = draft.path("tables")
    target_dir.mkdir(mode=0o700, exist_ok=True)
    for f in files:
        try:
            name, suffix = table_name(f.filename)
            if f.size == 0:
                raise InputError(
                    f"{name}{suffix} is empty", hint="export the table again, with its header row"
                )
            for other, t in tables.items():
                if other == name and t["file"] != f"{name}{suffix}":
                    draft.path(t["path"]).unlink(missing_ok=True)
            target = target_dir / f"{name}{suffix}"
            os.replace(f.path, target)
            try:
                src = check_table(target, f"{name}{suffix}")
            except OptoutError:
                target.unlink(missing_ok=True)
                tables.pop(name, None)
                raise
            tables[name] = {
                "file": f"{name}{suffix}",
                "path": f"tables/{name}{suffix}",
                "format": src.format,
                "columns": list(src.columns),
                "size": f.size,
                "rows": src.num_rows,
            }
        except OptoutError as exc:
            errors.extend(form_error(exc, "#tables"))
        finally:
            f.path.unlink(missing_ok=True)
    remove_tree(incoming)
    draft.data["tables"] = tables
    _clear_after(draft, "upload")
    return errors


async def upload_submit(request: Request) -> Response:
    """POST /releases/new/{id}/upload: a plain Starlette route, so that the body is streamed to
    disk here rather than parsed (and spooled) by the app-wide CSRF check; this route checks the
    sign-in, the role and the CSRF token itself."""
    user = current_user(request)
    if not user.has_role(*MAKERS):
        raise Forbidden(MAKERS)
    draft_id = request.path_params["draft_id"]
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    errors = await _receive_tables(request, draft, check_csrf=True)
    _drafts(request).save(draft)
    if errors:
        return render(
            request, "uploads/upload.html", _upload_context(request, draft, errors), status_code=400
        )
    _audit_upload(request, user, "upload.received", draft)
    return RedirectResponse(f"{_base(draft)}/upload", status_code=303)


router.add_route("/releases/new/{draft_id}/upload", upload_submit, methods=["POST"], include_in_schema=False)


@router.post("/releases/new/{draft_id}/tables/{table}/remove", include_in_schema=False)
def remove_table(
    request: Request, draft_id: str, table: str, user: User = Depends(require_role(*MAKERS))
) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    tables = _tables(draft)
    t = tables.pop(table, None)
    if t is not None:
        draft.path(t["path"]).unlink(missing_ok=True)
        draft.data["tables"] = tables
        (draft.data.get("nhs_columns") or {}).pop(table, None)
        _clear_after(draft, "upload")
        _drafts(request).save(draft)
    return RedirectResponse(f"{_base(draft)}/upload", status_code=303)


@router.post("/releases/new/{draft_id}/upload/done", include_in_schema=False)
def upload_done(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    if not _tables(draft):
        errors = [{"text": "Upload at least one table", "href": "#tables"}]
        return render(
            request, "uploads/upload.html", _upload_context(request, draft, errors), status_code=400
        )
    draft.data["uploads_done"] = True
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


# --------------------------------------------------------------------------- NHS-number columns


def _detected(draft: Draft) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, t in _tables(draft).items():
        try:
            out[name] = detect_nhs_column(open_table(draft.path(t["path"])))
        except OptoutError:
            out[name] = None  # several candidates: the user chooses
    return out


def _columns_context(
    draft: Draft, values: Mapping[str, str] | None = None, errors: Any = None
) -> dict[str, Any]:
    detected = _detected(draft)
    current = draft.data.get("nhs_columns") or {}
    rows = []
    for name, t in _tables(draft).items():
        value = (values or {}).get(name, current.get(name, detected.get(name) or ""))
        rows.append(
            {
                "name": name,
                "file": t["file"],
                "columns": t["columns"],
                "value": value,
                "detected": detected.get(name),
                "chi": name in (draft.data.get("chi") or []),
            }
        )
    return {"draft": draft, "rows": rows, "errors": errors or []}


@router.get("/releases/new/{draft_id}/columns", include_in_schema=False)
def columns_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    return render(request, "uploads/columns.html", _columns_context(draft))


@router.post("/releases/new/{draft_id}/columns", include_in_schema=False)
async def columns_submit(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    form = await request.form()
    values = {name: str(form.get(f"nhs-{name}") or "") for name in _tables(draft)}
    chi = [name for name in _tables(draft) if form.get(f"chi-{name}")]
    errors = set_columns(draft, values, chi)
    if errors:
        return render(
            request, "uploads/columns.html", _columns_context(draft, values, errors), status_code=400
        )
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


def set_columns(draft: Draft, values: Mapping[str, str], chi: list[str]) -> list[dict[str, str]]:
    tables = _tables(draft)
    errors = []
    for name, col in values.items():
        if name not in tables:
            errors.append({"text": f"There is no table called {name}", "href": "#columns"})
        elif col and col not in tables[name]["columns"]:
            errors.append({"text": f"{name} has no column {col}", "href": f"#nhs-{name}"})
    for name in chi:
        if not values.get(name):
            errors.append(
                {"text": f"{name}: choose its NHS-number column to mark it as CHI", "href": f"#nhs-{name}"}
            )
    if not any(values.values()):
        errors.append(
            {
                "text": "At least one table must hold the NHS number: the opt-out is applied by it "
                "(001 §8.2)",
                "href": "#columns",
            }
        )
    if errors:
        return errors
    if values != (draft.data.get("nhs_columns") or {}) or chi != (draft.data.get("chi") or []):
        draft.data.update(nhs_columns=dict(values), chi=chi)
        _clear_after(draft, "columns")
    draft.data["columns_done"] = True
    return []


# --------------------------------------------------------------------------- links


def _link_choices(draft: Draft) -> list[dict[str, Any]]:
    tables = _tables(draft)
    children = _needs_links(draft)
    current = {link.split(".", 1)[0]: link for link in draft.data.get("links") or []}
    out = []
    for child in children:
        parents = [p for p in tables if p != child]
        targets = [f"{p}.{c}" for p in parents for c in tables[p]["columns"]]
        guess_child, guess_parent = "", ""
        for c in tables[child]["columns"]:  # a column of the same name in another table
            for p in parents:
                if c in tables[p]["columns"]:
                    guess_child, guess_parent = c, f"{p}.{c}"
                    break
            if guess_child:
                break
        chosen = current.get(child)
        if chosen:
            left, _, right = chosen.partition("=")
            guess_child, guess_parent = left.split(".", 1)[1], right
        out.append(
            {
                "name": child,
                "columns": tables[child]["columns"],
                "targets": targets,
                "child_column": guess_child,
                "parent": guess_parent,
            }
        )
    return out


@router.get("/releases/new/{draft_id}/links", include_in_schema=False)
def links_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    if not _needs_links(draft):
        return RedirectResponse(_next_url(draft), status_code=303)
    return render(request, "uploads/links.html", {"draft": draft, "children": _link_choices(draft)})


@router.post("/releases/new/{draft_id}/links", include_in_schema=False)
async def links_submit(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    form = await request.form()
    links = []
    errors = []
    for child in _needs_links(draft):
        col = str(form.get(f"col-{child}") or "")
        parent = str(form.get(f"parent-{child}") or "")
        if not col or not parent:
            errors.append(
                {"text": f"Choose how {child} links to a table with NHS numbers", "href": f"#col-{child}"}
            )
            continue
        links.append(f"{child}.{col}={parent}")
    if not errors:
        errors = set_links(draft, links)
    if errors:
        children = _link_choices(draft)
        return render(
            request,
            "uploads/links.html",
            {"draft": draft, "children": children, "errors": errors},
            status_code=400,
        )
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


def _plan_kwargs(draft: Draft, *, with_choice: bool = True) -> dict[str, Any]:
    cols = draft.data.get("nhs_columns") or {}
    kw: dict[str, Any] = {
        "nhs_columns": {t: c for t, c in cols.items() if c},
        "links": list(draft.data.get("links") or []),
        "chi_columns": list(draft.data.get("chi") or []),
    }
    if with_choice:
        kw["unmatched"] = draft.data.get("unmatched") or "fail"
        kw["release_reason"] = draft.data.get("release_reason")
        trace = draft.data.get("trace")
        if kw["unmatched"] == "trace" and trace:
            kw["trace_index"] = draft.path(trace["path"])
            kw["trace_keys"] = dict(trace.get("keys") or {})
    return kw


def set_links(draft: Draft, links: list[str]) -> list[dict[str, str]]:
    old = draft.data.get("links")
    draft.data["links"] = links
    try:  # the plan's own checks: columns exist, no table linked twice, no loop, every table covered
        make_plan(_table_paths(draft), **_plan_kwargs(draft, with_choice=False))
    except OptoutError as exc:
        draft.data["links"] = old
        return form_error(exc, "#links")
    if links != old:
        _clear_after(draft, "links")
        draft.data["links"] = links
    draft.data["links_done"] = True
    return []


# --------------------------------------------------------------------------- missing NHS numbers


@router.get("/releases/new/{draft_id}/missing", include_in_schema=False)
def missing_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    ctx = {"draft": draft, "choices": UNMATCHED, "value": draft.data.get("unmatched") or ""}
    return render(request, "uploads/missing.html", ctx)


def set_unmatched(
    draft: Draft, unmatched: str, reason: str | None, *, reason_later: bool = False
) -> list[dict[str, str]]:
    """The 001 §8.2 choice; ``release`` needs its reason (asked on the next page in the browser)."""
    if unmatched not in UNMATCHED:
        return [
            {
                "text": "Select what to do with rows whose NHS number is missing or invalid",
                "href": "#unmatched",
            }
        ]
    if unmatched == "release" and reason not in RELEASE_REASONS and not (reason_later and reason is None):
        return [{"text": "Select why those rows may be released (001 §8.2)", "href": "#reason"}]
    reason = reason if unmatched == "release" else None
    if (unmatched, reason) != (draft.data.get("unmatched"), draft.data.get("release_reason")):
        _clear_after(draft, "missing")
        draft.data.update(unmatched=unmatched, release_reason=reason)
    return []


@router.post("/releases/new/{draft_id}/missing", include_in_schema=False)
async def missing_submit(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    form = await request.form()
    unmatched = str(form.get("unmatched") or "")
    keep = draft.data.get("release_reason") if unmatched == "release" else None
    errors = set_unmatched(draft, unmatched, keep, reason_later=True)
    if errors:
        ctx = {"draft": draft, "choices": UNMATCHED, "value": unmatched, "errors": errors}
        return render(request, "uploads/missing.html", ctx, status_code=400)
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


@router.get("/releases/new/{draft_id}/reason", include_in_schema=False)
def reason_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    ctx = {"draft": draft, "reasons": REASONS, "value": draft.data.get("release_reason") or ""}
    return render(request, "uploads/reason.html", ctx)


@router.post("/releases/new/{draft_id}/reason", include_in_schema=False)
async def reason_submit(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    form = await request.form()
    reason = str(form.get("reason") or "")
    errors = set_unmatched(draft, "release", reason)
    if errors:
        ctx = {"draft": draft, "reasons": REASONS, "value": reason, "errors": errors}
        return render(request, "uploads/reason.html", ctx, status_code=400)
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


# --------------------------------------------------------------------------- trace index


def _trace_context(draft: Draft, errors: Any = None) -> dict[str, Any]:
    trace = draft.data.get("trace") or {}
    cols = draft.data.get("nhs_columns") or {}
    rows = []
    for name, t in _tables(draft).items():
        if cols.get(name):
            key = (trace.get("keys") or {}).get(name) or (
                trace.get("key") if trace.get("key") in t["columns"] else ""
            )
            rows.append({"name": name, "columns": t["columns"], "value": key})
    return {"draft": draft, "trace": trace, "rows": rows, "errors": errors or []}


@router.get("/releases/new/{draft_id}/trace", include_in_schema=False)
def trace_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    return render(request, "uploads/trace.html", _trace_context(draft))


async def trace_submit(request: Request) -> Response:
    """POST /releases/new/{id}/trace: the trace index (streamed like the tables) and the key columns."""
    user = current_user(request)
    if not user.has_role(*MAKERS):
        raise Forbidden(MAKERS)
    try:
        draft = _load(request, request.path_params["draft_id"], user)
    except NotFoundError:
        return _gone(request)
    incoming = draft.path("incoming")
    csrf = StreamedCsrf(request)
    try:
        form = await receive_multipart(
            request.stream(),
            request.headers.get("content-type", ""),
            incoming,
            on_field=csrf.on_field,
            before_file=csrf.before_file,
        )
    except OptoutError as exc:
        remove_tree(incoming)
        return render(
            request, "uploads/trace.html", _trace_context(draft, form_error(exc, "#index")), status_code=400
        )
    except BaseException:
        remove_tree(incoming)
        raise
    if not csrf.ok:
        remove_tree(incoming)
        raise CsrfFailed()
    errors: list[dict[str, str]] = []
    files = [f for f in form.files if f.field == "index"]
    trace = dict(draft.data.get("trace") or {})
    if files:
        f = files[0]
        try:
            name, suffix = table_name(f.filename)
            folder = draft.path("trace")
            remove_tree(folder)
            folder.mkdir(mode=0o700)
            target = folder / f"{name}{suffix}"
            os.replace(f.path, target)
            src = check_table(target, f"{name}{suffix}")
            from optout.release.plan import _open_trace_index  # the plan's own check of an index

            index = _open_trace_index(target)
            trace = {
                "file": f"{name}{suffix}",
                "path": f"trace/{name}{suffix}",
                "key": index.key_column,
                "columns": list(src.columns),
                "keys": {},
            }
        except OptoutError as exc:
            errors.extend(form_error(exc, "#index"))
            remove_tree(draft.path("trace"))
            trace = {}
    remove_tree(incoming)
    if not trace and not errors:
        errors.append({"text": "Select the trace index file", "href": "#index"})
    if not errors:
        cols = draft.data.get("nhs_columns") or {}
        keys = {}
        for table in (t for t in _tables(draft) if cols.get(t)):
            value = form.fields.get(f"key-{table}") or (
                trace["key"] if trace["key"] in _tables(draft)[table]["columns"] else ""
            )
            if not value:
                errors.append(
                    {"text": f"Choose the column of {table} to look up in the index", "href": f"#key-{table}"}
                )
            keys[table] = value
        trace["keys"] = keys
        draft.data["trace"] = trace
        try:
            make_plan(_table_paths(draft), **_plan_kwargs(draft))
        except OptoutError as exc:
            errors.extend(form_error(exc, "#index"))
    if errors:
        draft.data["trace"] = trace or None
        _drafts(request).save(draft)
        return render(request, "uploads/trace.html", _trace_context(draft, errors), status_code=400)
    _forget_check(draft)
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


router.add_route("/releases/new/{draft_id}/trace", trace_submit, methods=["POST"], include_in_schema=False)


# --------------------------------------------------------------------------- the check


def extract_cohort(draft: Draft) -> Cohort:
    """The people in the extract: the valid NHS numbers of every table that holds them, once each.

    Each table's column is validated as ``optout check`` validates a cohort file; rows with an
    invalid number are withheld (counted by class), as there."""
    cols = draft.data.get("nhs_columns") or {}
    chi = set(draft.data.get("chi") or [])
    parts = []
    for name, t in _tables(draft).items():
        col = cols.get(name)
        if not col:
            continue
        src = open_table(draft.path(t["path"]))
        parts.append(cohort_from_numbers(read_column(src, col), source=t["file"], chi=name in chi))
    numbers = parts[0].numbers
    for p in parts[1:]:
        numbers = np.union1d(numbers, p.numbers)
    invalid: dict[str, int] = {}
    for p in parts:
        for c in p.invalid:
            invalid[c.reason] = invalid.get(c.reason, 0) + c.count
    valid_rows = sum(p.size + p.duplicates for p in parts)
    return Cohort(
        numbers=numbers.astype(np.int64),
        source="the uploaded extract",
        column=None,
        rows=sum(p.rows for p in parts),
        duplicates=int(valid_rows - numbers.shape[0]),
        invalid=[InvalidClass(reason, n, []) for reason, n in sorted(invalid.items())],
    )


def _cache_status(request: Request) -> Any:
    return cache_mod.status(get_settings(request))


def _check_context(request: Request, draft: Draft, errors: Any = None, value: str = "") -> dict[str, Any]:
    status = _cache_status(request)
    usable = status.state in ("fresh", "refresh-due")
    meta = status.meta
    return {
        "draft": draft,
        "cache": {
            "state": status.state,
            "usable": usable,
            "refreshed": long_date(meta.refreshed_at) if meta else "",
            "disclose_by": long_date(meta.disclose_by) if meta else "",
        },
        "value": value or (draft.data.get("check") or {}).get("mode") or "",
        "errors": errors or [],
    }


@router.get("/releases/new/{draft_id}/check", include_in_schema=False)
def check_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    return render(request, "uploads/check.html", _check_context(request, draft))


def start_check(request: Request, draft: Draft, user: User, mode: str) -> None:
    """One-off: send the extract's cohort to the check service over MESH (no waiting). Cache:
    only record the choice (the cache is read, audited, when the preview and release are made)."""
    _forget_check(draft)
    if mode == "cache":
        status = _cache_status(request)
        if status.state not in ("fresh", "refresh-due"):
            raise PolicyRefusal(
                f"the temporary cache cannot be used ({status.state.replace('-', ' ')})",
                hint="check the extract with the service instead, or ask an IG lead to refresh the cache",
            )
        draft.data["check"] = {"mode": "cache", "state": "chosen"}
        return
    if mode != "one-off":
        raise UsageError(
            "choose how to check the extract", hint="check with the service now, or use the cache"
        )
    cohort = extract_cohort(draft)
    settings = acting_settings(request, user)
    result = check_cohort(
        cohort,
        out=draft.path("cleaned.dat"),
        settings=settings,
        wait=None,
        store=get_store(request),
        subject=f"optout-web-release-{draft.data.get('flow_id')}"[:60],
    )
    write_dat(draft.path("cohort.dat"), cohort.numbers)
    draft.data["check"] = {
        "mode": "one-off",
        "local_id": result.local_id,
        "state": result.state,
        "sent": result.sent_count,
        "withheld": cohort.withheld,
        "started_at": datetime.now(UTC).isoformat(timespec="microseconds"),
    }


@router.post("/releases/new/{draft_id}/check", include_in_schema=False)
async def check_submit(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    form = await request.form()
    mode = str(form.get("mode") or "")
    if mode not in ("one-off", "cache"):
        errors = [{"text": "Select how to check the extract for opt-outs", "href": "#mode"}]
        return render(request, "uploads/check.html", _check_context(request, draft, errors), status_code=400)
    try:
        start_check(request, draft, user, mode)
    except OptoutError as exc:
        _drafts(request).save(draft)
        ctx = _check_context(request, draft, form_error(exc, "#mode"), value=mode)
        ctx["hint"] = mask(exc.hint) if exc.hint and not exc.hint.startswith(("give ", "run ")) else None
        return render(request, "uploads/check.html", ctx, status_code=400)
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


def _time(text: Any) -> datetime | None:
    return datetime.fromisoformat(str(text)) if text else None


def poll_check(request: Request, draft: Draft, user: User, *, force: bool = False) -> dict[str, Any]:
    """Collect the reply if it has come (never waits; MESH is asked with a back-off unless
    ``force``). Returns the check's state."""
    check = dict(draft.data.get("check") or {})
    if check.get("mode") != "one-off" or check.get("state") == "collected":
        return check
    now = datetime.now(UTC)
    if not force and not poll_due(_time(check.get("started_at")), _time(check.get("polled_at")), now):
        return check
    try:
        result = collect(
            check["local_id"], settings=acting_settings(request, user), wait=None, store=get_store(request)
        )
    except PendingError:
        check["state"] = "waiting"
        check["problem"] = None
    except TransportError as exc:
        check["problem"] = mask(exc.message)
    else:
        check.update(
            state=result.state,
            checked_at=result.checked_at.isoformat() if result.checked_at else None,
            problem=None,
        )
    check["polled_at"] = now.isoformat(timespec="microseconds")
    draft.data["check"] = check
    return check


@router.get("/releases/new/{draft_id}/check/wait", include_in_schema=False)
def check_wait(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    try:
        check = poll_check(request, draft, user, force=request.query_params.get("now") == "1")
    except OptoutError as exc:  # rejected, failed: the request is over; start the check again
        _forget_check(draft)
        _drafts(request).save(draft)
        ctx = _check_context(request, draft, form_error(exc, "#mode"))
        return render(request, "uploads/check.html", ctx, status_code=409)
    _drafts(request).save(draft)
    if check.get("state") == "collected":
        return RedirectResponse(f"{_base(draft)}/preview", status_code=303)
    ctx = {"draft": draft, "check": check, "refresh_seconds": CHECK_REFRESH_SECONDS}
    return render(request, "uploads/wait.html", ctx)


# --------------------------------------------------------------------------- preview and make


def _allow_source(request: Request, draft: Draft, user: User, purpose: str) -> dict[str, Any]:
    check = draft.data.get("check") or {}
    if check.get("mode") == "cache":
        return {
            "allow_list": cache_mod.load_allow_list(
                acting_settings(request, user), store=get_store(request), purpose=purpose
            )
        }
    if check.get("mode") == "one-off" and check.get("state") == "collected":
        return {"cleaned_list": draft.path("cleaned.dat"), "cohort": draft.path("cohort.dat")}
    raise PendingError("the extract has not been checked yet", hint="check it with the service first")


def _release_dir(request: Request, draft: Draft) -> Path:
    from optout import atomic

    root = Path(get_settings(request).home) / "releases"
    atomic.private_dir(root)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return root / f"{draft.data.get('flow_id')}-{stamp}-{draft.id[:6].lower()}"


def preview(request: Request, draft: Draft, user: User) -> Any:
    """The dry run: what would be kept and removed (nothing written)."""
    return apply_opt_outs(
        _table_paths(draft),
        out_dir=_release_dir(request, draft),
        **_allow_source(request, draft, user, "preview"),
        **_plan_kwargs(draft),
        dry_run=True,
        flow_id=draft.data.get("flow_id"),
        store=get_store(request),
    )


def _report_view(report: Any) -> dict[str, Any]:
    d = report.to_dict(report_for="internal")
    for t in d["tables"]:
        t["removed_total"] = sum(v["rows"] for v in t["removed"].values())
    d["deadline_text"] = long_date(report.deadline)
    d["checked_text"] = long_date(report.checked_at)
    return d


def _fix_link(exc: OptoutError, draft: Draft) -> dict[str, str] | None:
    """Where on the journey an error from the library is put right."""
    text = exc.message.lower()
    if "missing or invalid" in text:
        return {
            "href": f"{_base(draft)}/missing",
            "text": "Change what to do with rows whose NHS number is missing or invalid",
        }
    if "deadline" in text or "checked at" in text:
        return {"href": f"{_base(draft)}/check", "text": "Check the extract again"}
    if "link" in text or "nhs-number column" in text:
        return {"href": f"{_base(draft)}/columns", "text": "Change the NHS-number columns and links"}
    return None


@router.get("/releases/new/{draft_id}/preview", include_in_schema=False)
def preview_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    nxt = _next_url(draft)
    if not nxt.endswith("/preview"):
        return RedirectResponse(nxt, status_code=303)
    try:
        report = preview(request, draft, user)
    except OptoutError as exc:
        ctx = {
            "draft": draft,
            "problem": mask(exc.render()),
            "fix": _fix_link(exc, draft),
            "errors": form_error(exc, "#problem"),
        }
        return render(request, "uploads/problem.html", ctx, status_code=409)
    return render(request, "uploads/preview.html", {"draft": draft, "report": _report_view(report)})


def _summary(request: Request, draft: Draft) -> list[dict[str, str]]:
    d = draft.data
    cols = d.get("nhs_columns") or {}
    check = d.get("check") or {}
    rows = [
        {"key": "Data flow", "value": str(d.get("flow_id")), "href": f"{_base(draft)}/flow"},
        {
            "key": "Tables",
            "value": ", ".join(t["file"] for t in _tables(draft).values()),
            "href": f"{_base(draft)}/upload",
        },
        {
            "key": "NHS-number columns",
            "value": "; ".join(f"{t}: {c}" for t, c in cols.items() if c) or "none",
            "href": f"{_base(draft)}/columns",
        },
    ]
    if d.get("links"):
        rows.append({"key": "Links", "value": "; ".join(d["links"]), "href": f"{_base(draft)}/links"})
    choice = UNMATCHED.get(d.get("unmatched") or "", ("", ""))[0]
    if d.get("release_reason"):
        choice += f" ({REASONS.get(d['release_reason'], d['release_reason'])})"
    rows.append({"key": "Missing or invalid NHS numbers", "value": choice, "href": f"{_base(draft)}/missing"})
    if check.get("mode") == "cache":
        rows.append({"key": "Checked with", "value": "the temporary cache", "href": f"{_base(draft)}/check"})
    else:
        rows.append(
            {
                "key": "Checked with",
                "value": f"the check service (request {check.get('local_id')})",
                "href": f"{_base(draft)}/check",
            }
        )
    return rows


@router.get("/releases/new/{draft_id}/confirm", include_in_schema=False)
def confirm_page(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    nxt = _next_url(draft)
    if not nxt.endswith("/preview"):
        return RedirectResponse(nxt, status_code=303)
    rec = flows.get_flow(get_store(request), str(draft.data.get("flow_id")))
    ctx = {"draft": draft, "rows": _summary(request, draft), "flow": rec}
    return render(request, "uploads/confirm.html", ctx)


def make(request: Request, draft: Draft, user: User) -> Any:
    """Make the release (the flow must still apply), then delete the uploaded files."""
    flow_id = str(draft.data.get("flow_id"))
    flows.flow_for_release(get_store(request), flow_id)
    report = apply_opt_outs(
        _table_paths(draft),
        out_dir=_release_dir(request, draft),
        **_allow_source(request, draft, user, "apply"),
        **_plan_kwargs(draft),
        flow_id=flow_id,
        store=get_store(request),
        actor=audit_actor(user),
    )
    _delete(request, user, draft, reason=f"release {report.release_id} made")
    return report


@router.post("/releases/new/{draft_id}/make", include_in_schema=False)
def make_submit(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    try:
        report = make(request, draft, user)
    except OptoutError as exc:
        ctx = {
            "draft": draft,
            "problem": mask(exc.render()),
            "fix": _fix_link(exc, draft),
            "errors": form_error(exc, "#problem"),
        }
        return render(request, "uploads/problem.html", ctx, status_code=409)
    return RedirectResponse(f"/releases/{report.release_id}/made", status_code=303)


@router.post("/releases/new/{draft_id}/abandon", include_in_schema=False)
def abandon(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    _delete(request, user, draft, reason="abandoned")
    flash(request, "The release was abandoned and the uploaded files deleted.", heading="Abandoned")
    return RedirectResponse("/releases/new", status_code=303)


# --------------------------------------------------------------------------- JSON API


def _api_load(request: Request, draft_id: str, user: User) -> Draft:
    return _load(request, draft_id, user)


def _state(draft: Draft) -> dict[str, Any]:
    d = draft.data
    return {
        "id": draft.id,
        "flow_id": d.get("flow_id"),
        "tables": {
            n: {k: t[k] for k in ("file", "format", "columns", "size", "rows")}
            for n, t in _tables(draft).items()
        },
        "nhs_columns": d.get("nhs_columns") or {},
        "chi": d.get("chi") or [],
        "links": d.get("links") or [],
        "unmatched": d.get("unmatched"),
        "release_reason": d.get("release_reason"),
        "check": d.get("check"),
        "next": _next_url(draft).rsplit("/", 1)[-1],
    }


@router.post("/api/releases/new", tags=["releases"], status_code=201)
def api_start(
    request: Request, body: dict[str, Any] = Body(...), user: User = Depends(require_role(*MAKERS))
) -> JSONResponse:
    """Start making a release for a registered flow (the opt-out must apply to it)."""
    flow_id = str(body.get("flow_id") or "")
    flows.flow_for_release(get_store(request), flow_id)
    sweep_uploads(request)
    draft = _drafts(request).create(user.username, {"tables": {}, "flow_id": flow_id})
    return JSONResponse(_state(draft), status_code=201)


@router.post(
    "/api/releases/new/{draft_id}/tables",
    tags=["releases"],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "tables": {"type": "array", "items": {"type": "string", "format": "binary"}}
                        },
                        "required": ["tables"],
                    }
                }
            },
        }
    },
)
async def api_tables(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> Response:
    """Upload the extract's tables (multipart field ``tables``, CSV or Parquet), streamed to an
    owner-only folder. The body is read here, not by the framework (no CSRF under /api)."""
    draft = _api_load(request, draft_id, user)
    errors = await _receive_tables(request, draft, check_csrf=False)
    draft.data["uploads_done"] = True
    _drafts(request).save(draft)
    if errors:
        return JSONResponse(
            {"error": "input", "message": "; ".join(e["text"] for e in errors), "state": _state(draft)},
            status_code=400,
        )
    _audit_upload(request, user, "upload.received", draft)
    return JSONResponse(_state(draft))


@router.put("/api/releases/new/{draft_id}/plan", tags=["releases"])
def api_plan(
    request: Request,
    draft_id: str,
    body: dict[str, Any] = Body(...),
    user: User = Depends(require_role(*MAKERS)),
) -> JSONResponse:
    """The NHS-number columns (``nhs_columns``: table -> column, detected when left out), ``chi``,
    ``links`` ("child.col=parent.col") and the missing-number choice (``unmatched``,
    ``release_reason``)."""
    draft = _api_load(request, draft_id, user)
    detected = _detected(draft)
    cols = {
        **{t: c or "" for t, c in detected.items()},
        **{str(k): str(v or "") for k, v in (body.get("nhs_columns") or {}).items()},
    }
    errors = set_columns(draft, cols, [str(t) for t in body.get("chi") or []])
    if not errors:
        draft.data["links_done"] = False
        errors = set_links(draft, [str(x) for x in body.get("links") or []])
    if not errors:
        errors = set_unmatched(draft, str(body.get("unmatched") or ""), body.get("release_reason"))
    _drafts(request).save(draft)
    if errors:
        return JSONResponse(
            {"error": "usage", "message": "; ".join(e["text"] for e in errors), "state": _state(draft)},
            status_code=400,
        )
    return JSONResponse(_state(draft))


@router.post("/api/releases/new/{draft_id}/check", tags=["releases"])
def api_check(
    request: Request,
    draft_id: str,
    body: dict[str, Any] = Body(...),
    user: User = Depends(require_role(*MAKERS)),
) -> dict[str, Any]:
    """Check the extract: ``{"mode": "one-off"}`` sends it over MESH (collect the reply with
    ``.../check/collect``); ``{"mode": "cache"}`` uses the temporary cache."""
    draft = _api_load(request, draft_id, user)
    try:
        start_check(request, draft, user, str(body.get("mode") or ""))
    finally:
        _drafts(request).save(draft)
    return _state(draft)


@router.post("/api/releases/new/{draft_id}/check/collect", tags=["releases"])
def api_collect(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> JSONResponse:
    """Collect the check service's reply if it has come (202 while it has not)."""
    draft = _api_load(request, draft_id, user)
    check = poll_check(request, draft, user, force=True)
    _drafts(request).save(draft)
    return JSONResponse(_state(draft), status_code=200 if check.get("state") == "collected" else 202)


@router.get("/api/releases/new/{draft_id}/preview", tags=["releases"])
def api_preview(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> dict[str, Any]:
    """The dry run: rows and people kept and removed per table, and why (internal counts)."""
    draft = _api_load(request, draft_id, user)
    return dict(preview(request, draft, user).to_dict(report_for="internal"))


@router.post("/api/releases/new/{draft_id}/make", tags=["releases"], status_code=201)
def api_make(request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))) -> JSONResponse:
    """Make the release; the uploaded files are deleted. Returns the report (internal counts)."""
    draft = _api_load(request, draft_id, user)
    report = make(request, draft, user)
    return JSONResponse(report.to_dict(report_for="internal"), status_code=201)


@router.delete("/api/releases/new/{draft_id}", tags=["releases"])
def api_abandon(
    request: Request, draft_id: str, user: User = Depends(require_role(*MAKERS))
) -> dict[str, Any]:
    """Abandon: delete the journey and every uploaded file."""
    draft = _api_load(request, draft_id, user)
    _delete(request, user, draft, reason="abandoned")
    return {"deleted": draft.id}

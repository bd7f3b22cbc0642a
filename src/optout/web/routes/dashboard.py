"""The dashboard: what needs doing, at a glance (and ``GET /api/dashboard`` for scripts).

Every figure comes from the library the CLI uses: ``optout.check.cache.status`` (cache age and
expiry), ``optout.release.lifecycle.list_releases`` (releases awaiting disclosure, days left),
``optout.check.state.list_requests`` (check requests not yet answered; read only, so a page view
changes nothing), ``optout.policy.register.list_flows`` (flows due for review) and
``optout.audit.verify`` (the chain and its head hash). Areas add panels with
``optout.web.panels.dashboard_panel`` (the compliance checklist's progress, for one).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from optout import audit
from optout.check import cache as check_cache
from optout.check import state as check_state
from optout.policy import register as flow_register
from optout.release import lifecycle
from optout.store import audit_log
from optout.web.accounts import User
from optout.web.deps import current_user, get_settings, get_store, render
from optout.web.panels import dashboard_panels

router = APIRouter()
log = logging.getLogger(__name__)

REVIEW_SOON = timedelta(days=30)  # a flow whose review date is this close is listed
DEADLINE_SOON_DAYS = 3  # a release this close to its deadline is flagged

_cache_lock = threading.Lock()
_cache_memo: dict[str, tuple[float, tuple[int, int] | None, Any]] = {}


def cache_status(settings: Any) -> check_cache.CacheStatus:
    """``optout.check.cache.status``, remembered for a minute while the file is unchanged
    (verifying a big cache means decrypting it: not for every page view)."""
    path = check_cache.cache_file(settings)
    try:
        st = path.stat()
        stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    key = str(path)
    with _cache_lock:
        hit = _cache_memo.get(key)
        if hit and hit[1] == stamp and time.monotonic() - hit[0] < 60:
            status: check_cache.CacheStatus = hit[2]
            return check_cache.CacheStatus(
                status.exists, status.path, status.verified, status.meta, datetime.now(UTC), status.problem
            )
    status = check_cache.status(settings)
    with _cache_lock:
        _cache_memo[key] = (time.monotonic(), stamp, status)
    return status


def _iso_short(text: str | None) -> str:
    return (text or "")[:16].replace("T", " ")


def dashboard_data(store: Any, settings: Any, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as plain data (the page and the API share it)."""
    t = now or datetime.now(UTC)
    # the temporary cache: age and expiry, never its members
    cs = cache_status(settings)
    cache: dict[str, Any] = {"state": cs.state, "verified": cs.verified, "problem": cs.problem}
    if cs.meta is not None:
        cache.update(
            refreshed_at=cs.meta.refreshed_at.isoformat(timespec="minutes"),
            age_days=round((t - cs.meta.refreshed_at).total_seconds() / 86400, 1),
            refresh_due=cs.meta.refresh_due.isoformat(timespec="minutes"),
            expires_at=cs.meta.expires_at.isoformat(timespec="minutes"),
        )
    # releases awaiting disclosure (prepared), and those whose deadline passed undisclosed
    awaiting: list[dict[str, Any]] = []
    for r in lifecycle.list_releases(store, now=t):
        state = r.state(t)
        if state not in ("prepared", "expired") or r.disclosures:
            continue
        left = r.days_left(t)
        awaiting.append(
            {
                "id": r.id,
                "flow_id": r.flow_id,
                "state": state,
                "deadline": r.deadline.isoformat(timespec="minutes") if r.deadline else None,
                "days_left": None if left is None else round(left, 1),
                "deadline_text": lifecycle.describe_deadline(r, t),
                "overdue": state == "expired",
                "soon": state == "prepared" and left is not None and left < DEADLINE_SOON_DAYS,
            }
        )
    awaiting.sort(key=lambda x: (not x["overdue"], x["days_left"] if x["days_left"] is not None else 1e9))
    # check requests not answered yet (read only: the sweep of stale ones happens in `optout check`)
    pending = [
        {
            "local_id": c.local_id,
            "mode": c.mode,
            "state": c.state,
            "created_at": check_state.iso(c.created_at),
            "sent_at": check_state.iso(c.sent_at) if c.sent_at else None,
        }
        for c in check_state.list_requests(store)
        if not c.final
    ]
    # flows whose review date has passed or is near
    due: list[dict[str, Any]] = []
    for f in flow_register.list_flows(store):
        if not f.review_date:
            continue
        try:
            review = date.fromisoformat(f.review_date)
        except ValueError:
            review = None
        if review is None or review <= (t + REVIEW_SOON).date():
            due.append(
                {
                    "id": f.id,
                    "name": f.name,
                    "review_date": f.review_date,
                    "overdue": f.review_overdue(t),
                }
            )
    due.sort(key=lambda x: x["review_date"])
    # the audit trail: verified now; the last evidence export and the head it recorded
    v = audit.verify(store)
    with store.begin() as conn:
        row = conn.execute(
            sa.select(audit_log.c.at, audit_log.c.actor, audit_log.c.details)
            .where(audit_log.c.action == "audit.exported")
            .order_by(audit_log.c.seq.desc())
            .limit(1)
        ).first()
    last_export = None
    if row is not None:
        head = json.loads(row.details).get("head_hash")
        last_export = {"at": row.at, "actor": row.actor, "head_hash": head}
    return {
        "now": t.isoformat(timespec="seconds"),
        "cache": cache,
        "releases_awaiting_disclosure": awaiting,
        "check_requests_pending": pending,
        "flows_due_for_review": due,
        "audit": {
            "ok": v.ok,
            "entries": v.count,
            "head_seq": v.head_seq,
            "head_hash": v.head_hash,
            "verified_at": t.isoformat(timespec="seconds"),
            "first_problem": v.first.to_dict() if v.first else None,
            "last_evidence_export": last_export,
        },
    }


def _panels(request: Request, store: Any, settings: Any, user: User) -> list[dict[str, Any]]:
    out = []
    for name, fn in dashboard_panels():
        try:
            panel = fn(request, store, settings, user)
        except Exception:  # a broken panel must not take the dashboard down
            log.exception("dashboard panel %s failed", name)
            out.append({"title": name.rsplit(".", 1)[-1].replace("_", " ").capitalize(), "failed": True})
            continue
        if panel is not None:
            out.append(
                {
                    "title": panel.title,
                    "template": panel.template,
                    "context": panel.context,
                    "href": panel.href,
                    "failed": False,
                }
            )
    return out


@router.get("/", include_in_schema=False)
def dashboard_page(request: Request, user: User = Depends(current_user)) -> Response:
    store, settings = get_store(request), get_settings(request)
    data = dashboard_data(store, settings)
    return render(
        request,
        "dashboard/index.html",
        {"d": data, "panels": _panels(request, store, settings, user), "short": _iso_short},
    )


@router.get("/api/dashboard", tags=["dashboard"], summary="What needs doing")
def dashboard_api(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """Cache age and expiry, releases awaiting disclosure (days left, overdue), check requests
    not answered yet, flows due for review, and the audit trail's verification and head hash."""
    return dashboard_data(get_store(request), get_settings(request))


@router.get("/accessibility", include_in_schema=False)
def accessibility_page(request: Request, user: User = Depends(current_user)) -> Response:
    return render(request, "accessibility.html", {})

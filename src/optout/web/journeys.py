"""What the journey pages share: drafts, the acting user's settings, errors shown on a form,
and how a decision of the rules is shown.

Used by ``routes/{assess,releases,uploads,checks,checklist,socialcare}.py``. No rule lives here:
decisions come from :mod:`optout.policy`, and this only arranges them for a page.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request

from optout.config import Settings
from optout.errors import OptoutError
from optout.policy import COMPLIANCE, Decision
from optout.policy.questions import question
from optout.policy.rules import exemption as rule_by_id
from optout.text import mask
from optout.web import security
from optout.web.accounts import User
from optout.web.deps import CsrfFailed, audit_actor, get_settings, get_web_config
from optout.web.drafts import Drafts

__all__ = [
    "HEADLINES",
    "StreamedCsrf",
    "acting_settings",
    "decision_view",
    "drafts",
    "form_error",
    "long_date",
    "poll_due",
    "uploads_root",
]

HEADLINES = {
    "applies": "The national data opt-out applies",
    "does-not-apply": "The national data opt-out does not apply",
    "cannot-decide": "We cannot decide yet",
}


def acting_settings(request: Request, user: User) -> Settings:
    """The library settings with the web user as the actor recorded in the audit trail (a copy:
    the check service fills the MESH settings in place when it uses a local sandbox)."""
    settings = get_settings(request)
    return dataclasses.replace(settings, actor=audit_actor(user), mesh=dataclasses.replace(settings.mesh))


def web_home(request: Request) -> Path:
    return Path(get_settings(request).home) / "web"


def uploads_root(request: Request) -> Path:
    cfg = get_web_config(request)
    return Path(cfg.upload_dir) if cfg.upload_dir else web_home(request) / "uploads"


def drafts(request: Request, kind: str) -> Drafts:
    """Assessment drafts under ``<home>/web/drafts``; release journeys (with their uploaded
    files) under the upload folder (``OPTOUT_WEB_UPLOAD_DIR``, default ``<home>/web/uploads``)."""
    if kind == "release":
        return Drafts(uploads_root(request), kind)
    return Drafts(web_home(request) / "drafts", kind)


class StreamedCsrf:
    """The CSRF check for a form whose body is streamed rather than parsed up front (uploads):
    the token field comes first in our forms and is checked as soon as it arrives, and no file
    is written before it has been (``before_file`` refuses). ``enabled=False`` for ``/api``."""

    def __init__(self, request: Request, *, enabled: bool = True) -> None:
        self.request = request
        self.ok = not enabled
        self.enabled = enabled
        session = getattr(request.state, "session", None)
        self.binding = security.session_binding(session.id_sha256 if session else None)

    def on_field(self, name: str, value: str) -> None:
        if not self.enabled or name != security.CSRF_FIELD:
            return
        cookie = getattr(self.request.state, "csrf_cookie", None)
        if not self.request.app.state.csrf.valid(value, cookie, self.binding):
            raise CsrfFailed()
        self.ok = True

    def before_file(self) -> None:
        if not self.ok:
            raise CsrfFailed()


FIRST_POLL_SECONDS = 5.0
MAX_POLL_SECONDS = 300.0  # MESH guidance: poll about every 5 minutes


def poll_due(started: datetime | None, last: datetime | None, now: datetime) -> bool:
    """Whether a page waiting for a check reply should ask MESH again now.

    The page reloads itself every few seconds, but MESH is asked at most every quarter of the time
    waited so far (at least 5 seconds apart, at most 5 minutes), as ``optout check`` backs off."""
    if last is None or started is None:
        return True
    interval = min(MAX_POLL_SECONDS, max(FIRST_POLL_SECONDS, (now - started).total_seconds() / 4))
    return (now - last).total_seconds() >= interval - 0.5


def form_error(exc: OptoutError, href: str) -> list[dict[str, str]]:
    """An error for the NHS error summary, linked to the field; never a value from a row."""
    text = mask(exc.message)
    w = exc.where
    if w is not None:
        shown = Path(str(w.file)).name if w.file is not None else None
        where = dataclasses.replace(w, file=None if shown and shown in text else w.file).describe()
        if where and where not in text:
            text = f"{text} ({mask(where)})"
    return [{"text": text, "href": href}]


def long_date(value: datetime | str | None) -> str:
    """'3 March 2026, 09:30 UTC' (or '' for nothing)."""
    if value is None or value == "":
        return ""
    t = datetime.fromisoformat(value) if isinstance(value, str) else value
    text = f"{t.day} {t:%B %Y}"
    return text + (f", {t:%H:%M} UTC" if (t.hour, t.minute) != (0, 0) else "")


def decision_view(decision: Decision, *, change_href: str | None = None) -> dict[str, Any]:
    """A decision arranged for the page: headline, how it complies, the reasons with their clauses,
    the notes, and the facts still missing (each with the question that answers it)."""
    steps = [r for r in decision.reasons if r.kind not in ("note", "missing")]
    notes = [r for r in decision.reasons if r.kind in ("note", "missing")]
    missing = []
    for path in decision.missing:
        try:
            q = question(path)
            title = q.title
        except KeyError:
            title = path
        missing.append(
            {"fact": path, "question": title, "href": f"{change_href}/{path}" if change_href else None}
        )
    exemption = None
    if decision.exemption:
        try:
            rule = rule_by_id(decision.exemption)
            exemption = {"id": rule.id, "clause": rule.clause, "wording": rule.wording}
        except KeyError:
            exemption = {"id": decision.exemption, "clause": "", "wording": ""}
    holder = None
    if decision.holder is not None:
        h = decision.holder
        holder = {"name": h.now_name, "since": long_date(h.since.isoformat()) if h.since else ""}
    return {
        "outcome": decision.outcome,
        "headline": HEADLINES.get(decision.outcome, decision.outcome),
        "compliance": decision.compliance,
        "compliance_text": COMPLIANCE.get(decision.compliance or "", decision.compliance or ""),
        "exemption": exemption,
        "holder": holder,
        "alternatives": list(decision.alternatives),
        "steps": [{"clause": r.clause, "text": r.text, "kind": r.kind, "file": r.file} for r in steps],
        "notes": [{"clause": r.clause, "text": r.text, "kind": r.kind} for r in notes],
        "missing": missing,
        "rules_version": decision.rules_version,
    }

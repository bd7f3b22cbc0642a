"""The app's routers, one module per area, each exposing ``router = APIRouter()``.

Add an area: write ``routes/<area>.py`` with ``router = APIRouter()`` and add one line to the
import and one to ``ROUTERS`` below (kept sorted, one per line, so parallel additions merge).
An area's pages and its ``/api/...`` operations live in the same module.
"""

from __future__ import annotations

from fastapi import APIRouter

from optout.web.routes import (
    api_docs,
    api_tokens,
    assess,
    audit,
    auth,
    checklist,
    checks,
    dashboard,
    releases,
    settings,
    socialcare,
    users,
)

ROUTERS: list[APIRouter] = [
    api_docs.router,
    api_tokens.router,
    assess.router,
    audit.router,
    auth.router,
    checklist.router,
    checks.router,
    dashboard.router,
    releases.router,
    settings.router,
    socialcare.router,
    users.router,
]

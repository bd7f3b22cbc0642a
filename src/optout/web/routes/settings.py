"""Settings: MESH configuration status and a test connection, the cache key, the database.

Nothing secret is shown: for MESH whether the password and shared key are set, never them; for
the cache key whether it is there (and owner-only), never the key; the database URL with its
password masked. "Test connection" is a MESH handshake (``optout.mesh.MeshMailbox``) with the
settings the checks use (``optout.mesh.with_local_sandbox``: the running local sandbox when no
MESH URL is configured); it is recorded in the audit trail.
"""

from __future__ import annotations

import copy
import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from optout import audit
from optout.check import cache as check_cache
from optout.config import Settings
from optout.errors import OptoutError
from optout.mesh import MeshMailbox, with_local_sandbox
from optout.text import mask
from optout.web.accounts import User
from optout.web.deps import (
    audit_actor,
    current_user,
    flash,
    get_settings,
    get_store,
    get_web_config,
    render,
    require_role,
)

router = APIRouter()

MESH_TEST_ROLES = ("analyst", "ig_lead")  # and admin


def _strip_userinfo(url: str | None) -> str | None:
    if not url:
        return url
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def mesh_settings(settings: Settings) -> Settings:
    """A copy of the settings with the MESH fallback to a running local sandbox applied."""
    return with_local_sandbox(copy.deepcopy(settings))


def mesh_status(settings: Settings) -> dict[str, Any]:
    configured = settings.mesh
    effective = mesh_settings(settings).mesh
    sandbox = not configured.url and bool(effective.url)
    missing = [
        name
        for name, value in (
            ("OPTOUT_MESH_URL", effective.url),
            ("OPTOUT_MESH_MAILBOX", effective.mailbox),
            ("OPTOUT_MESH_PASSWORD", effective.password),
            ("OPTOUT_MESH_SHARED_KEY", effective.shared_key),
        )
        if not value
    ]
    return {
        "state": "configured" if not missing else "not-configured",
        "local_sandbox": sandbox,
        "url": _strip_userinfo(effective.url),
        "mailbox": effective.mailbox,
        "recipient": effective.recipient,
        "workflow_id": effective.workflow_id,
        "password_set": bool(effective.password),
        "shared_key_set": bool(effective.shared_key),
        "client_certificate": bool(effective.client_cert and effective.client_key),
        "ca_bundle": bool(effective.ca_bundle),
        "missing": missing,
    }


def cache_key_status(settings: Settings) -> dict[str, Any]:
    """Whether the cache key is there and usable: never the key itself."""
    source = "OPTOUT_CACHE_KEY" if os.environ.get("OPTOUT_CACHE_KEY") else "key file"
    try:
        check_cache.load_key(settings)
    except OptoutError as exc:
        if exc.message.startswith("no key"):
            problem = "There is no key. Make one with: optout cache keygen"
        else:
            problem = mask(exc.message)
        return {"present": False, "source": source, "problem": problem}
    return {"present": True, "source": source, "problem": None}


def database_status(settings: Settings) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    url = make_url(settings.db_url)
    kind = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(
        url.get_backend_name(), url.get_backend_name()
    )
    return {"kind": kind, "url": url.render_as_string(hide_password=True)}


def settings_data(request: Request) -> dict[str, Any]:
    settings = get_settings(request)
    cfg = get_web_config(request)
    return {
        "mesh": mesh_status(settings),
        "cache_key": cache_key_status(settings),
        "database": database_status(settings),
        "web": {
            "cookie_secure": cfg.cookie_secure,
            "secure_cookies_now": bool(getattr(request.state, "cookies_secure", True)),
            "session_idle_minutes": cfg.session_idle_minutes,
            "session_max_hours": cfg.session_max_hours,
            "max_failed_logins": cfg.max_failed_logins,
            "lockout_minutes": cfg.lockout_minutes,
            "max_upload_mb": cfg.max_upload_bytes // (1024 * 1024),
        },
    }


def mesh_handshake(request: Request, user: User) -> dict[str, Any]:
    """A MESH handshake with the settings checks use; audited (``web.mesh.tested``)."""
    settings = mesh_settings(get_settings(request))
    result: dict[str, Any]
    try:
        with MeshMailbox(settings.mesh, timeout=20.0, max_retries=0) as mailbox:
            mailbox.handshake()
        result = {"ok": True, "message": f"Connected to MESH as mailbox {settings.mesh.mailbox}."}
    except OptoutError as exc:
        result = {"ok": False, "message": mask(exc.message), "hint": mask(exc.hint) if exc.hint else None}
    audit.record(
        get_store(request),
        "web.mesh.tested",
        actor=audit_actor(user),
        subject=settings.mesh.mailbox,
        details={"ok": result["ok"]},
    )
    return result


@router.get("/settings", include_in_schema=False)
def settings_page(request: Request, user: User = Depends(current_user)) -> Response:
    return render(
        request,
        "settings/index.html",
        {"s": settings_data(request), "can_test": user.has_role(*MESH_TEST_ROLES)},
    )


@router.post("/settings/mesh/test", include_in_schema=False)
def mesh_test(request: Request, user: User = Depends(require_role(*MESH_TEST_ROLES))) -> Response:
    result = mesh_handshake(request, user)
    if result["ok"]:
        flash(request, result["message"], "success", heading="MESH connection works")
    else:
        text = result["message"] + (f" How to fix it: {result['hint']}" if result.get("hint") else "")
        flash(request, text, "warning", heading="MESH connection failed")
    return RedirectResponse("/settings#mesh", status_code=303)


@router.get("/api/settings", tags=["settings"], summary="Configuration status (no secrets)")
def api_settings(request: Request, user: User = Depends(current_user)) -> dict[str, Any]:
    """MESH configuration status, whether the cache key is present, the database in use
    (password masked) and the web app's own settings."""
    return settings_data(request)


@router.post("/api/settings/mesh/test", tags=["settings"], summary="Test the MESH connection")
def api_mesh_test(request: Request, user: User = Depends(require_role(*MESH_TEST_ROLES))) -> dict[str, Any]:
    """A MESH handshake with the configured mailbox (or the local sandbox); recorded in the audit trail."""
    return mesh_handshake(request, user)

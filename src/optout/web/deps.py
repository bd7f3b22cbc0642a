"""What every page and API route uses: the user, roles, the store, settings, rendering.

Pages: ``user: User = Depends(current_user)`` (signed out -> redirect to /login), or
``Depends(require_role("ig_lead"))`` (an admin passes every role check). API routes under
``/api`` take only ``Authorization: Bearer <token>`` (401 otherwise) and never a cookie, which is
why they need no CSRF token.

``render(request, "area/page.html", {...})`` adds the user, ``csrf_input()``, flash messages,
the navigation and ``errors`` (the NHS error summary) to the context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates
from jinja2 import (
    ChainableUndefined,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    pass_context,
)
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from optout.config import Settings
from optout.store import Store
from optout.web import accounts, security
from optout.web.accounts import ROLES, User
from optout.web.config import WebConfig

TEMPLATES_DIR = Path(__file__).with_name("templates")
SERVICE_NAME = "National data opt-out"

__all__ = [
    "ROLES",
    "SERVICE_NAME",
    "Forbidden",
    "LoginRequired",
    "NavItem",
    "Unauthorised",
    "User",
    "audit_actor",
    "current_user",
    "flash",
    "get_settings",
    "get_store",
    "get_web_config",
    "optional_user",
    "render",
    "require_role",
    "templates",
]


# --------------------------------------------------------------------------- exceptions


class LoginRequired(Exception):
    """A page was asked for while signed out: the app redirects to /login?next=..."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


class Unauthorised(Exception):
    """An /api request without a valid bearer token: 401."""


class Forbidden(Exception):
    """Signed in, but the role may not do this: 403 page (or JSON under /api)."""

    def __init__(self, roles: tuple[str, ...] = ()) -> None:
        self.roles = roles


class CsrfFailed(Exception):
    """A form came without a valid CSRF token: 403 page."""


# --------------------------------------------------------------------------- app state


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def get_web_config(request: Request) -> WebConfig:
    return request.app.state.web_config  # type: ignore[no-any-return]


def is_api(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


# --------------------------------------------------------------------------- who is asking


def _session_cookie(request: Request) -> str | None:
    secure = bool(getattr(request.state, "cookies_secure", True))
    return request.cookies.get(security.cookie_name(security.SESSION_COOKIE, secure))


def _load(request: Request) -> User | None:
    if hasattr(request.state, "user"):
        return request.state.user  # type: ignore[no-any-return]
    store = get_store(request)
    user: User | None = None
    request.state.session = None
    if is_api(request):
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token:
            user = accounts.user_for_token(store, token)
    else:
        value = _session_cookie(request)
        if value:
            found = accounts.load_session(
                store, value, idle_minutes=get_web_config(request).session_idle_minutes
            )
            if found is not None:
                request.state.session, user = found
    request.state.user = user
    return user


def optional_user(request: Request) -> User | None:
    """The signed-in user, or None (the login page, error pages)."""
    return _load(request)


def current_user(request: Request) -> User:
    """The signed-in user; a page redirects to /login when signed out, /api answers 401."""
    user = _load(request)
    if user is None:
        if is_api(request):
            raise Unauthorised()
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return user


def require_role(*roles: str) -> Callable[..., User]:
    """A dependency: the current user if they hold one of ``roles`` (admin always does), else 403."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; use {ROLES}")

    def dependency(user: User = Depends(current_user)) -> User:
        if not user.has_role(*roles):
            raise Forbidden(roles)
        return user

    return dependency


def audit_actor(user: User) -> str:
    """The actor recorded in the audit trail for what ``user`` does through the web app."""
    return f"web:{user.username}"


# --------------------------------------------------------------------------- CSRF


async def csrf_protect(request: Request) -> None:
    """App-wide dependency: a state-changing request outside /api needs a valid CSRF token.

    The token comes from the form field ``csrf_token`` (every form has ``{{ csrf_input() }}``) or
    the ``X-CSRF-Token`` header. Reading the form here is free: Starlette parses it once per
    request and the route's own ``Form``/``UploadFile`` parameters get the same parsed form.
    """
    if request.method in security.SAFE_METHODS or is_api(request):
        return
    token = request.headers.get(security.CSRF_HEADER)
    if token is None:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get(security.CSRF_FIELD)
            token = value if isinstance(value, str) else None
    _load(request)
    session = getattr(request.state, "session", None)
    binding = security.session_binding(session.id_sha256 if session else None)
    if not request.app.state.csrf.valid(token, getattr(request.state, "csrf_cookie", None), binding):
        raise CsrfFailed()


def csrf_token(request: Request) -> str:
    _load(request)
    session = getattr(request.state, "session", None)
    binding = security.session_binding(session.id_sha256 if session else None)
    return request.app.state.csrf.token(request.state.csrf_cookie, binding)  # type: ignore[no-any-return]


@pass_context
def _csrf_input(ctx: Any) -> Markup:
    request: Request = ctx["request"]
    return Markup('<input type="hidden" name="{}" value="{}">').format(
        security.CSRF_FIELD, escape(csrf_token(request))
    )


def _link(href: str, text: Any, hidden: str | None = None) -> Markup:
    """``<a href="...">text</a>`` (both escaped), with visually hidden extra text for screen readers."""
    extra = Markup('<span class="nhsuk-u-visually-hidden"> {}</span>').format(hidden) if hidden else ""
    return Markup('<a href="{}">{}{}</a>').format(href, text, extra)


def _code(text: Any) -> Markup:
    return Markup('<code class="app-hash">{}</code>').format(text)


# --------------------------------------------------------------------------- flash messages


def flash(request: Request, text: str, kind: str = "success", heading: str | None = None) -> None:
    """A message shown once on the next page this user sees (kind: success | info | warning)."""
    _load(request)
    session = getattr(request.state, "session", None)
    if session is None:
        return
    data = dict(session.data)
    data["flash"] = [*data.get("flash", []), {"text": text, "kind": kind, "heading": heading}]
    accounts.save_session_data(get_store(request), session.id_sha256, data)
    request.state.session = accounts.Session(
        session.id_sha256, session.username, session.created_at, session.expires_at, data
    )


def _pop_flashes(request: Request) -> list[dict[str, Any]]:
    session = getattr(request.state, "session", None)
    if session is None or not session.data.get("flash"):
        return []
    data = dict(session.data)
    messages = list(data.pop("flash"))
    accounts.save_session_data(get_store(request), session.id_sha256, data)
    request.state.session = accounts.Session(
        session.id_sha256, session.username, session.created_at, session.expires_at, data
    )
    return messages


# --------------------------------------------------------------------------- navigation


@dataclass(frozen=True)
class NavItem:
    href: str
    text: str
    roles: tuple[str, ...] = ()  # empty: everyone signed in


# The header's navigation, in order. An item shows only when its page exists in the app (so an
# area that is not mounted does not appear) and the user holds one of its roles.
NAV: list[NavItem] = [
    NavItem("/", "Dashboard"),
    NavItem("/flows", "Data flows"),
    NavItem("/releases", "Releases"),
    NavItem("/checks", "Checks and cache"),
    NavItem("/checklist", "Compliance checklist"),
    NavItem("/social-care", "Social care"),
    NavItem("/audit", "Audit trail"),
    NavItem("/settings", "Settings"),
    NavItem("/users", "Users", ("admin",)),
]


def _nav(request: Request, user: User | None) -> list[dict[str, Any]]:
    if user is None:
        return []
    paths: set[str] = request.app.state.page_paths
    here = request.url.path
    items = []
    for item in NAV:
        if item.href not in paths or (item.roles and not user.has_role(*item.roles)):
            continue
        current = here == item.href
        active = current or (item.href != "/" and here.startswith(item.href + "/"))
        items.append({"href": item.href, "text": item.text, "current": current, "active": active})
    return items


# --------------------------------------------------------------------------- templates


def _environment() -> Environment:
    env = Environment(
        loader=ChoiceLoader(
            [
                FileSystemLoader(str(TEMPLATES_DIR)),
                PackageLoader("nhsuk_frontend_jinja", package_path="templates"),
            ]
        ),
        undefined=ChainableUndefined,
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["csrf_input"] = _csrf_input
    env.globals["link"] = _link
    env.globals["code"] = _code
    env.globals["SERVICE_NAME"] = SERVICE_NAME
    env.globals["ROLE_LABELS"] = accounts.ROLE_LABELS
    env.filters["urlquote"] = lambda s: quote(str(s), safe="")
    return env


templates = Jinja2Templates(env=_environment())


def render(
    request: Request, template_name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page with the user, nav, flash messages, ``csrf_input()`` and ``errors``."""
    user = optional_user(request)
    ctx: dict[str, Any] = {
        "user": user,
        "nav": _nav(request, user),
        "flashes": _pop_flashes(request) if user else [],
        "errors": [],
    }
    ctx.update(context or {})
    return templates.TemplateResponse(request, template_name, ctx, status_code=status_code)

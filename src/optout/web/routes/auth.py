"""Signing in and out, and the user's own account (change password).

``POST /login`` is throttled per client address and counts wrong passwords per account (lock-out
after ``max_failed_logins``); every sign-in, failure, lock and sign-out is in the audit trail.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from optout import audit
from optout.web import accounts, security
from optout.web.accounts import User
from optout.web.deps import (
    audit_actor,
    current_user,
    get_store,
    get_web_config,
    optional_user,
    render,
)

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no host, no '//' or '\\' tricks)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or "\\" in target:
        return "/"
    if any(ch in target for ch in "\r\n\t"):
        return "/"
    return target


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str = "/", signed_out: int = 0) -> Response:
    if optional_user(request) is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(
        request,
        "auth/login.html",
        {"next": _safe_next(next), "signed_out": bool(signed_out), "username": "", "field_errors": {}},
    )


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form("/"),
) -> Response:
    cfg = get_web_config(request)
    store = get_store(request)
    username = username.strip().lower()
    target = _safe_next(next)

    def again(errors: dict[str, str], status: int = 200) -> Response:
        return render(
            request,
            "auth/login.html",
            {
                "next": target,
                "username": username if accounts.username_problem(username) is None else "",
                "field_errors": errors,
                "errors": [{"text": t, "href": f"#{k}"} for k, t in errors.items()],
            },
            status_code=status,
        )

    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "Enter your username"
    if not password:
        errors["password"] = "Enter your password"
    if errors:
        return again(errors, 400)
    if not request.app.state.login_throttle.allow(_client(request)):
        minutes = max(1, cfg.login_window_seconds // 60)
        return again(
            {
                "username": "Too many attempts to sign in from this computer. "
                f"Wait {minutes} minutes and try again"
            },
            429,
        )
    result = accounts.authenticate(
        store,
        username,
        password,
        max_failed=cfg.max_failed_logins,
        lockout_minutes=cfg.lockout_minutes,
        client=_client(request),
    )
    if result.user is None:
        if result.problem == "locked":
            until = (
                datetime.fromisoformat(result.locked_until or "").strftime("%H:%M UTC")
                if result.locked_until
                else ""
            )
            text = (
                f"This account is locked after too many wrong passwords. Try again after {until}, "
                "or ask your administrator to unlock it"
            )
            return again({"username": text}, 403)
        if result.problem == "disabled":
            return again({"username": "This account has been disabled. Ask your administrator"}, 403)
        return again({"username": "Enter a correct username and password"}, 401)
    value, _session = accounts.create_session(store, result.user.username, max_hours=cfg.session_max_hours)
    old = request.cookies.get(security.cookie_name(security.SESSION_COOKIE, request.state.cookies_secure))
    if old:  # a new id at every sign-in; the old session (if any) ends
        accounts.end_session(store, security.digest(old))
    response = RedirectResponse(target, status_code=303)
    secure = bool(request.state.cookies_secure)
    response.headers.append(
        "set-cookie",
        security.set_cookie_header(
            security.cookie_name(security.SESSION_COOKIE, secure), value, secure=secure, samesite="Lax"
        ),
    )
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request) -> Response:
    user = optional_user(request)
    session = getattr(request.state, "session", None)
    store = get_store(request)
    if user is not None and session is not None:
        accounts.end_session(store, session.id_sha256)
        audit.record(store, "web.logout", actor=audit_actor(user), subject=user.username)
    secure = bool(request.state.cookies_secure)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    response.headers.append(
        "set-cookie",
        security.set_cookie_header(
            security.cookie_name(security.SESSION_COOKIE, secure), "", secure=secure, max_age=0
        ),
    )
    return response


@router.get("/account", include_in_schema=False)
def account_page(request: Request, user: User = Depends(current_user)) -> Response:
    return render(request, "auth/account.html", {"field_errors": {}})


@router.post("/account/password", include_in_schema=False)
def change_password(
    request: Request,
    current_password: str = Form(""),
    new_password: str = Form(""),
    confirm_password: str = Form(""),
    user: User = Depends(current_user),
) -> Response:
    store = get_store(request)
    errors: dict[str, str] = {}
    import sqlalchemy as sa

    from optout.store import web_users

    with store.begin() as conn:
        stored = conn.execute(
            sa.select(web_users.c.password_hash).where(web_users.c.username == user.username)
        ).scalar_one()
    if not security.verify_password(stored, current_password):
        errors["current-password"] = "Enter your current password correctly"
    problem = security.password_problem(new_password, user.username)
    if problem:
        errors["new-password"] = problem
    elif new_password != confirm_password:
        errors["confirm-password"] = "The new passwords do not match"
    if errors:
        return render(
            request,
            "auth/account.html",
            {"field_errors": errors, "errors": [{"text": t, "href": f"#{k}"} for k, t in errors.items()]},
            status_code=400,
        )
    accounts.set_password(store, user.username, new_password, actor=audit_actor(user))
    # set_password signs the user out everywhere (this session included): sign in again
    return RedirectResponse("/login?next=/account", status_code=303)

"""Users and roles (administrators only): create, change role, unlock, disable, reset password.

Every change goes through ``optout.web.accounts`` and is recorded in the audit trail with the
administrator who made it. The last active administrator cannot be demoted or disabled.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from optout.errors import NotFoundError, UsageError
from optout.web import accounts, security
from optout.web.accounts import ROLE_HINTS, ROLE_LABELS, ROLES, User
from optout.web.deps import audit_actor, flash, get_store, render, require_role

router = APIRouter()
admin_only = require_role("admin")


def _user_dict(u: User) -> dict[str, Any]:
    return {
        "username": u.username,
        "role": u.role,
        "role_label": u.role_label,
        "state": "disabled" if u.disabled else ("locked" if u.locked() else "active"),
        "locked_until": u.locked_until if u.locked() else None,
        "created_at": u.created_at,
        "last_login_at": u.last_login_at,
    }


def _role_items(selected: str | None) -> list[dict[str, Any]]:
    return [
        {"value": r, "text": ROLE_LABELS[r], "hint": {"text": ROLE_HINTS[r]}, "checked": r == selected}
        for r in reversed(ROLES)
    ]


@router.get("/users", include_in_schema=False)
def users_page(request: Request, user: User = Depends(admin_only)) -> Response:
    users = [_user_dict(u) for u in accounts.list_users(get_store(request))]
    return render(request, "users/index.html", {"users": users})


@router.get("/users/new", include_in_schema=False)
def new_user_page(request: Request, user: User = Depends(admin_only)) -> Response:
    return render(
        request, "users/new.html", {"values": {}, "field_errors": {}, "role_items": _role_items("viewer")}
    )


@router.post("/users/new", include_in_schema=False)
def new_user(
    request: Request,
    username: str = Form(""),
    role: str = Form(""),
    password: str = Form(""),
    confirm_password: str = Form(""),
    user: User = Depends(admin_only),
) -> Response:
    store = get_store(request)
    username = username.strip().lower()
    errors: dict[str, str] = {}
    problem = accounts.username_problem(username) if username else "Enter a username"
    if problem:
        errors["username"] = problem
    elif accounts.get_user(store, username) is not None:
        errors["username"] = "A user with this username already exists"
    if role not in ROLES:
        errors["role"] = "Choose a role"
    pw_problem = security.password_problem(password, username)
    if pw_problem:
        errors["password"] = pw_problem
    elif password != confirm_password:
        errors["confirm-password"] = "The passwords do not match"
    if errors:
        return render(
            request,
            "users/new.html",
            {
                "values": {"username": username if "username" not in errors else ""},
                "field_errors": errors,
                "errors": [
                    {"text": t, "href": f"#{k}" if k != "role" else "#role"} for k, t in errors.items()
                ],
                "role_items": _role_items(role if role in ROLES else None),
            },
            status_code=400,
        )
    accounts.create_user(store, username, role, password, actor=audit_actor(user))
    flash(
        request,
        f"{username} can now sign in as {ROLE_LABELS[role]}. Give them their password in person or by phone.",
    )
    return RedirectResponse(f"/users/{username}", status_code=303)


def _get(request: Request, username: str) -> User:
    found = accounts.get_user(get_store(request), username)
    if found is None:
        raise NotFoundError("there is no user with that username", hint="see the list of users")
    return found


@router.get("/users/{username}", include_in_schema=False)
def user_page(request: Request, username: str, user: User = Depends(admin_only)) -> Response:
    target = _get(request, username)
    return render(
        request,
        "users/show.html",
        {"u": _user_dict(target), "role_items": _role_items(target.role), "field_errors": {}},
    )


def _change(request: Request, username: str, admin: User, what: str, value: str | None = None) -> Response:
    store = get_store(request)
    target = _get(request, username)
    actor = audit_actor(admin)
    try:
        if what == "role":
            if value not in ROLES:
                raise UsageError("Choose a role")
            accounts.set_role(store, target.username, value, actor=actor)
            message = f"{target.username} is now {ROLE_LABELS[value]}."
        elif what == "unlock":
            accounts.unlock(store, target.username, actor=actor)
            message = f"{target.username} is unlocked and can sign in again."
        elif what == "disable":
            if target.username == admin.username:
                raise UsageError("You cannot disable your own account")
            accounts.set_disabled(store, target.username, True, actor=actor)
            message = f"{target.username} is disabled: they are signed out and cannot sign in."
        elif what == "enable":
            accounts.set_disabled(store, target.username, False, actor=actor)
            message = f"{target.username} is enabled and can sign in again."
        else:  # pragma: no cover - routes below name only the above
            raise UsageError("unknown change")
    except UsageError as exc:
        text = exc.message[0].upper() + exc.message[1:]
        if exc.hint and exc.hint not in text:
            text += f": {exc.hint}"
        field = "role" if what == "role" else "actions"
        return render(
            request,
            "users/show.html",
            {
                "u": _user_dict(target),
                "role_items": _role_items(target.role),
                "field_errors": {field: text},
                "errors": [{"text": text, "href": f"#{field}"}],
            },
            status_code=400,
        )
    flash(request, message)
    return RedirectResponse(f"/users/{target.username}", status_code=303)


@router.post("/users/{username}/role", include_in_schema=False)
def change_role(
    request: Request, username: str, role: str = Form(""), user: User = Depends(admin_only)
) -> Response:
    return _change(request, username, user, "role", role)


@router.post("/users/{username}/unlock", include_in_schema=False)
def unlock_user(request: Request, username: str, user: User = Depends(admin_only)) -> Response:
    return _change(request, username, user, "unlock")


@router.post("/users/{username}/disable", include_in_schema=False)
def disable_user(request: Request, username: str, user: User = Depends(admin_only)) -> Response:
    return _change(request, username, user, "disable")


@router.post("/users/{username}/enable", include_in_schema=False)
def enable_user(request: Request, username: str, user: User = Depends(admin_only)) -> Response:
    return _change(request, username, user, "enable")


@router.post("/users/{username}/password", include_in_schema=False)
def reset_password(
    request: Request,
    username: str,
    password: str = Form(""),
    confirm_password: str = Form(""),
    user: User = Depends(admin_only),
) -> Response:
    target = _get(request, username)
    errors: dict[str, str] = {}
    problem = security.password_problem(password, target.username)
    if problem:
        errors["password"] = problem
    elif password != confirm_password:
        errors["confirm-password"] = "The passwords do not match"
    if errors:
        return render(
            request,
            "users/show.html",
            {
                "u": _user_dict(target),
                "role_items": _role_items(target.role),
                "field_errors": errors,
                "errors": [{"text": t, "href": f"#{k}"} for k, t in errors.items()],
            },
            status_code=400,
        )
    accounts.set_password(get_store(request), target.username, password, actor=audit_actor(user))
    flash(request, f"The password of {target.username} is changed; they are signed out everywhere.")
    return RedirectResponse(f"/users/{target.username}", status_code=303)


# --------------------------------------------------------------------------- API


class NewUser(BaseModel):
    username: str
    role: str
    password: str


class RoleChange(BaseModel):
    role: str


@router.get("/api/users", tags=["users"], summary="List users")
def api_users(request: Request, user: User = Depends(admin_only)) -> list[dict[str, Any]]:
    return [_user_dict(u) for u in accounts.list_users(get_store(request))]


@router.post("/api/users", tags=["users"], summary="Create a user", status_code=201)
def api_create_user(request: Request, body: NewUser, user: User = Depends(admin_only)) -> dict[str, Any]:
    created = accounts.create_user(
        get_store(request), body.username.strip().lower(), body.role, body.password, actor=audit_actor(user)
    )
    return _user_dict(created)


@router.post("/api/users/{username}/role", tags=["users"], summary="Change a user's role")
def api_set_role(
    request: Request, username: str, body: RoleChange, user: User = Depends(admin_only)
) -> dict[str, Any]:
    return _user_dict(accounts.set_role(get_store(request), username, body.role, actor=audit_actor(user)))


@router.post("/api/users/{username}/unlock", tags=["users"], summary="Unlock a user")
def api_unlock(request: Request, username: str, user: User = Depends(admin_only)) -> dict[str, Any]:
    return _user_dict(accounts.unlock(get_store(request), username, actor=audit_actor(user)))


@router.post("/api/users/{username}/disable", tags=["users"], summary="Disable a user")
def api_disable(request: Request, username: str, user: User = Depends(admin_only)) -> dict[str, Any]:
    if username == user.username:
        raise UsageError("you cannot disable your own account", hint="ask another administrator")
    return _user_dict(accounts.set_disabled(get_store(request), username, True, actor=audit_actor(user)))


@router.post("/api/users/{username}/enable", tags=["users"], summary="Enable a user")
def api_enable(request: Request, username: str, user: User = Depends(admin_only)) -> dict[str, Any]:
    return _user_dict(accounts.set_disabled(get_store(request), username, False, actor=audit_actor(user)))

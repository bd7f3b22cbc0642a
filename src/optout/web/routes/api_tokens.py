"""API tokens: each user makes their own (acting with their role); an admin sees and revokes all.

A token is shown once, when it is made, and stored only as a SHA-256 digest. Creating and
revoking are recorded in the audit trail.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel

from optout.errors import NotFoundError, UsageError
from optout.web import accounts
from optout.web.accounts import User
from optout.web.deps import audit_actor, current_user, flash, get_store, render

router = APIRouter()


def _token_dict(t: accounts.ApiToken) -> dict[str, Any]:
    return {
        "id": t.id,
        "username": t.username,
        "name": t.name,
        "created_at": t.created_at,
        "last_used_at": t.last_used_at,
        "revoked_at": t.revoked_at,
        "state": "revoked" if t.revoked_at else "active",
    }


def _visible(store: Any, user: User) -> list[dict[str, Any]]:
    owner = None if user.has_role("admin") else user.username
    return [_token_dict(t) for t in accounts.list_tokens(store, owner)]


def _page(request: Request, user: User, **extra: Any) -> Response:
    ctx: dict[str, Any] = {
        "tokens": _visible(get_store(request), user),
        "field_errors": {},
        "new_token": None,
    }
    status = extra.pop("status_code", 200)
    ctx.update(extra)
    return render(request, "api_tokens/index.html", ctx, status_code=status)


@router.get("/api-tokens", include_in_schema=False)
def tokens_page(request: Request, user: User = Depends(current_user)) -> Response:
    return _page(request, user)


@router.post("/api-tokens", include_in_schema=False)
def create_token(request: Request, name: str = Form(""), user: User = Depends(current_user)) -> Response:
    try:
        token, secret = accounts.create_token(
            get_store(request), user.username, name, actor=audit_actor(user)
        )
    except UsageError as exc:
        text = "Enter a name for the token, 100 characters or fewer" if "name" in exc.message else exc.message
        if "NHS number" in exc.message:
            text = "The name must not contain an NHS number"
        return _page(
            request,
            user,
            field_errors={"name": text},
            errors=[{"text": text, "href": "#name"}],
            status_code=400,
        )
    # shown once, on this response only (no-store); never stored or logged
    return _page(request, user, new_token={"id": token.id, "name": token.name, "secret": secret})


@router.post("/api-tokens/{token_id}/revoke", include_in_schema=False)
def revoke_token(request: Request, token_id: str, user: User = Depends(current_user)) -> Response:
    store = get_store(request)
    token = accounts.get_token(store, token_id)
    if token is None or (token.username != user.username and not user.has_role("admin")):
        raise NotFoundError("there is no such API token", hint="see the list of your API tokens")
    accounts.revoke_token(store, token_id, actor=audit_actor(user))
    flash(request, f"The API token “{token.name}” is revoked: scripts using it are refused from now on.")
    return RedirectResponse("/api-tokens", status_code=303)


# --------------------------------------------------------------------------- API


class NewToken(BaseModel):
    name: str


@router.get("/api/tokens", tags=["tokens"], summary="List API tokens")
def api_tokens(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    """Your tokens (an admin: everyone's); never the tokens themselves."""
    return _visible(get_store(request), user)


@router.post("/api/tokens", tags=["tokens"], summary="Create an API token", status_code=201)
def api_create_token(request: Request, body: NewToken, user: User = Depends(current_user)) -> dict[str, Any]:
    """A new token for yourself; ``token`` is in this answer only."""
    token, secret = accounts.create_token(
        get_store(request), user.username, body.name, actor=audit_actor(user)
    )
    return {**_token_dict(token), "token": secret}


@router.post("/api/tokens/{token_id}/revoke", tags=["tokens"], summary="Revoke an API token")
def api_revoke_token(request: Request, token_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
    store = get_store(request)
    token = accounts.get_token(store, token_id)
    if token is None or (token.username != user.username and not user.has_role("admin")):
        raise NotFoundError("there is no such API token", hint="list your tokens with GET /api/tokens")
    return _token_dict(accounts.revoke_token(store, token_id, actor=audit_actor(user)))

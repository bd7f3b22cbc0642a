"""Every foundation page for every role, and the signed-out visitor on every page of the app.

A viewer sees but changes nothing; only an admin manages users; only an IG lead (or admin)
exports evidence; MESH test connection is for analysts, IG leads and admins.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from tests.web.conftest import ROLES, USERS, post_form

from optout import audit

EVERYONE = set(ROLES)
PAGES = {
    "/": EVERYONE,
    "/audit": EVERYONE,
    "/audit/verify": EVERYONE,
    "/audit/export": {"ig_lead", "admin"},
    "/settings": EVERYONE,
    "/users": {"admin"},
    "/users/new": {"admin"},
    f"/users/{USERS['viewer']}": {"admin"},
    "/api-tokens": EVERYONE,
    "/account": EVERYONE,
    "/accessibility": EVERYONE,
    "/api-docs": EVERYONE,
}

# state-changing forms of the foundation, with the roles allowed and a valid body
FORMS = {
    "/users/new": (
        {"admin"},
        {
            "username": "new-user",
            "role": "viewer",
            "password": "a long enough pw",
            "confirm_password": "a long enough pw",
        },
    ),
    f"/users/{USERS['analyst']}/role": ({"admin"}, {"role": "ig_lead"}),
    f"/users/{USERS['analyst']}/unlock": ({"admin"}, {}),
    f"/users/{USERS['analyst']}/disable": ({"admin"}, {}),
    f"/users/{USERS['analyst']}/password": (
        {"admin"},
        {"password": "another long pw", "confirm_password": "another long pw"},
    ),
    "/audit/export": ({"ig_lead", "admin"}, {"report_for": "external"}),
    "/settings/mesh/test": ({"analyst", "ig_lead", "admin"}, {}),
}


@pytest.mark.parametrize("role", ROLES)
def test_every_page_for_every_role(client: Any, role: str) -> None:
    c = client(role)
    for path, allowed in PAGES.items():
        r = c.get(path, follow_redirects=False)
        want = 200 if role in allowed else 403
        assert r.status_code == want, f"{role} GET {path}: {r.status_code}"
        if want == 403:
            assert "You do not have permission" in r.text


@pytest.mark.parametrize("role", ROLES)
def test_every_form_for_every_role(client: Any, web_app: FastAPI, role: str) -> None:
    store = web_app.state.store
    for path, (allowed, data) in FORMS.items():
        c = client(role)  # a fresh session each time (a password change signs everyone out)
        before = len(audit.entries(store))
        r = post_form(c, path, data, page="/")
        if role in allowed:
            assert r.status_code in (200, 303), f"{role} POST {path}: {r.status_code}"
        else:
            assert r.status_code == 403, f"{role} POST {path}: {r.status_code}"
            new = [e.action for e in audit.entries(store)[before:]]
            assert not [a for a in new if a != "web.login"], f"{role} POST {path} changed something: {new}"


def _app_paths(app: FastAPI) -> list[tuple[str, str]]:
    from optout.web.routes import ROUTERS

    out = []
    for router in ROUTERS:
        for route in router.routes:
            for method in sorted(getattr(route, "methods", None) or ()):
                out.append((method, re.sub(r"\{[^}]+\}", "x", route.path)))
    return out


def test_signed_out_sees_only_the_login_page_on_every_route(client: Any, web_app: FastAPI) -> None:
    c = client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text).group(1)  # type: ignore[union-attr]
    for method, path in _app_paths(web_app):
        if path in ("/login", "/logout"):
            continue
        if path.startswith("/api/"):
            r = c.request(method, path, follow_redirects=False)
            assert r.status_code == 401, f"{method} {path}: {r.status_code}"
            continue
        if method == "GET":
            r = c.get(path, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), f"GET {path}"
        else:
            r = c.request(method, path, data={"csrf_token": token}, follow_redirects=False)
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), (
                f"{method} {path}: {r.status_code}"
            )
            r = c.request(method, path, data={}, follow_redirects=False)
            refused = r.status_code == 403 or (
                r.status_code == 303 and r.headers["location"].startswith("/login")
            )  # a streamed upload checks who is asking before it reads the token
            assert refused, f"{method} {path} without a CSRF token: {r.status_code}"


def test_nav_shows_users_to_admins_only(client: Any) -> None:
    assert 'href="/users"' in client("admin").get("/").text
    assert 'href="/users"' not in client("ig_lead").get("/").text


@pytest.mark.parametrize("role", ["admin"])
def test_every_form_of_the_app_needs_a_csrf_token(client: Any, web_app: FastAPI, role: str) -> None:
    c = client(role)
    store = web_app.state.store
    for method, path in _app_paths(web_app):
        if method == "GET" or path.startswith("/api/") or path == "/login":
            continue
        before = len(audit.entries(store))
        # a plain form, and a multipart one with a file (as the streamed uploads take)
        r = c.request(method, path, data={"x": "1"}, follow_redirects=False)
        assert r.status_code in (400, 403), f"{method} {path} without a CSRF token: {r.status_code}"
        files = {"file": ("cohort.csv", b"nhs_number\n", "text/csv")}
        r = c.request(method, path, data={"x": "1"}, files=files, follow_redirects=False)
        assert r.status_code == 403, f"{method} {path} (multipart) without a CSRF token: {r.status_code}"
        assert len(audit.entries(store)) == before, f"{method} {path} changed something without a CSRF token"


OWN_ACCOUNT = {"/logout", "/login", "/account/password", "/api-tokens", "/api-tokens/x/revoke"}


def test_a_viewer_changes_nothing_anywhere(client: Any, web_app: FastAPI) -> None:
    """Every POST of every area, with a valid CSRF token, as a viewer: no change is recorded
    (only their own password and API tokens are theirs to change)."""
    c = client("viewer")
    store = web_app.state.store
    for method, path in _app_paths(web_app):
        if method == "GET" or path.startswith("/api/") or path in OWN_ACCOUNT:
            continue
        before = len(audit.entries(store))
        r = post_form(c, path, {"x": "1"}, page="/")
        assert r.status_code < 500, f"viewer {method} {path}: {r.status_code}"
        changed = [e.action for e in audit.entries(store)[before:]]
        assert changed == [], f"viewer {method} {path} changed something: {changed}"


def test_a_viewer_changes_nothing_through_the_api(api_client: Any, web_app: FastAPI) -> None:
    c = api_client("viewer")
    store = web_app.state.store
    for method, path in _app_paths(web_app):
        if method == "GET" or not path.startswith("/api/") or path.startswith("/api/tokens"):
            continue
        before = len(audit.entries(store))
        r = c.request(method, path, json={})
        assert r.status_code < 500, f"viewer {method} {path}: {r.status_code}"  # e.g. a dry run
        changed = [e.action for e in audit.entries(store)[before:]]
        assert changed == [], f"viewer {method} {path} changed something: {changed}"

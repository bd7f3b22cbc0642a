"""Signing in and out, sessions, lock-out and throttling, CSRF, security headers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from tests.web.conftest import PASSWORD, USERS, csrf, post_form, sign_in

from optout import audit


def test_signed_out_sees_only_the_login_page(client: Any) -> None:
    c = client()
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = c.get("/audit?action=x", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/audit%3Faction%3Dx"
    r = c.get("/login")
    assert r.status_code == 200 and "Sign in" in r.text


def test_sign_in_and_out(client: Any, web_app: FastAPI) -> None:
    c = client()
    r = sign_in(c, USERS["viewer"])
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert c.get("/").status_code == 200
    r = post_form(c, "/logout", {}, page="/")
    assert r.status_code == 303 and r.headers["location"] == "/login?signed_out=1"
    assert c.get("/", follow_redirects=False).status_code == 303
    actions = [e.action for e in audit.entries(web_app.state.store)]
    assert "web.login" in actions and "web.logout" in actions


def test_post_without_or_with_a_wrong_csrf_token_is_refused(client: Any) -> None:
    c = client()
    r = c.post("/login", data={"username": USERS["admin"], "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403 and "could not be sent" in r.text
    r = c.post(
        "/login",
        data={"username": USERS["admin"], "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    token = csrf(c, "/login")
    r = c.post(
        "/login",
        data={"username": USERS["admin"], "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_security_headers(client: Any) -> None:
    r = client().get("/login")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "same-origin"
    assert r.headers["cache-control"] == "no-store"


def test_a_bug_gets_the_error_page_with_the_security_headers(web_app: FastAPI) -> None:
    from fastapi.testclient import TestClient

    def boom() -> None:
        raise ValueError("patient 943 476 5919 broke it")

    web_app.router.add_api_route("/boom", boom)
    web_app.router.add_api_route("/api/boom", boom)
    with TestClient(web_app, base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        r = c.get("/boom")
        assert r.status_code == 500 and "Sorry, there is a problem with the service" in r.text
        assert "943 476 5919" not in r.text and "ValueError" not in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        r = c.get("/api/boom")
        assert r.status_code == 500 and r.json() == {"error": "internal", "message": "internal error"}

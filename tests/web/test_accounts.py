"""Accounts: lock-out, throttling, sessions, cookies, passwords, the secret key, the CLI."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.web.conftest import PASSWORD, USERS, csrf, post_form, sign_in

from optout import audit
from optout.errors import UsageError
from optout.web import accounts, security


def test_five_wrong_passwords_lock_the_account_and_an_admin_unlocks_it(client: Any, web_app: FastAPI) -> None:
    store = web_app.state.store
    c = client()
    name = USERS["analyst"]
    for _ in range(4):
        r = sign_in(c, name, "wrong password!")
        assert r.status_code == 401 and "Enter a correct username and password" in r.text
    r = sign_in(c, name, "wrong password!")
    assert r.status_code == 403 and "locked" in r.text
    r = sign_in(c, name)  # the right password no longer helps
    assert r.status_code == 403 and "locked" in r.text
    actions = [e.action for e in audit.entries(store) if e.subject == name]
    assert actions.count("web.login.failed") == 4 and "web.login.locked" in actions
    assert "web.login.refused" in actions
    admin = client("admin")
    r = post_form(admin, f"/users/{name}/unlock", {}, page=f"/users/{name}")
    assert r.status_code == 303
    unlock = [e for e in audit.entries(store) if e.action == "web.user.unlocked"][-1]
    assert unlock.actor == f"web:{USERS['admin']}" and unlock.subject == name
    assert sign_in(c, name).status_code == 303


def test_the_lock_expires(web_app: FastAPI) -> None:
    store = web_app.state.store
    name = USERS["viewer"]
    t = datetime.now(UTC)
    for _ in range(5):
        res = accounts.authenticate(store, name, "nope nope nope", max_failed=5, lockout_minutes=15, now=t)
    assert res.problem == "locked"
    later = accounts.authenticate(
        store, name, PASSWORD, max_failed=5, lockout_minutes=15, now=t + timedelta(minutes=10)
    )
    assert later.problem == "locked"
    after = accounts.authenticate(
        store, name, PASSWORD, max_failed=5, lockout_minutes=15, now=t + timedelta(minutes=16)
    )
    assert after.user is not None


def test_unknown_users_are_not_audited_and_get_the_same_answer(client: Any, web_app: FastAPI) -> None:
    before = len(audit.entries(web_app.state.store))
    r = sign_in(client(), "nobody-here", "whatever whatever")
    assert r.status_code == 401 and "Enter a correct username and password" in r.text
    assert len(audit.entries(web_app.state.store)) == before


def test_sign_in_attempts_are_throttled_per_address(client: Any, web_app: FastAPI) -> None:
    web_app.state.login_throttle = security.LoginThrottle(3, 300)
    c = client()
    for _ in range(3):
        assert sign_in(c, "nobody-here", "whatever whatever").status_code == 401
    r = sign_in(c, USERS["admin"])
    assert r.status_code == 429 and "Too many attempts" in r.text


def test_session_cookie_flags_and_a_new_id_at_each_sign_in(client: Any) -> None:
    c = client()
    r1 = sign_in(c, USERS["viewer"])
    cookie = r1.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie  # http on loopback
    first = c.cookies.get("optout-session")
    r2 = sign_in(c, USERS["viewer"])
    assert r2.status_code == 303 and c.cookies.get("optout-session") != first


def test_cookies_are_secure_over_https(web_app: FastAPI) -> None:
    with TestClient(web_app, base_url="https://optout.example.nhs.uk") as c:
        r = c.get("/login")
        csrf_cookie = r.headers["set-cookie"]
        assert csrf_cookie.startswith("__Host-optout-csrf=") and "Secure" in csrf_cookie
        assert "SameSite=Strict" in csrf_cookie
        assert "max-age=31536000" in r.headers["strict-transport-security"]
        r = post_form(c, "/login", {"username": USERS["viewer"], "password": PASSWORD})
        assert r.status_code == 303
        assert (
            r.headers["set-cookie"].startswith("__Host-optout-session=")
            and "Secure" in r.headers["set-cookie"]
        )
        assert c.get("/", follow_redirects=False).status_code == 200


def test_plain_http_to_another_address_gets_secure_cookies(web_app: FastAPI) -> None:
    with TestClient(web_app, base_url="http://optout.example.nhs.uk") as c:
        assert "Secure" in c.get("/login").headers["set-cookie"]


def test_sessions_expire_when_idle(web_app: FastAPI) -> None:
    store = web_app.state.store
    t = datetime.now(UTC)
    value, _ = accounts.create_session(store, USERS["viewer"], max_hours=10, now=t)
    assert accounts.load_session(store, value, idle_minutes=30, now=t + timedelta(minutes=20)) is not None
    assert accounts.load_session(store, value, idle_minutes=30, now=t + timedelta(minutes=45)) is not None
    assert accounts.load_session(store, value, idle_minutes=30, now=t + timedelta(minutes=90)) is None
    value, _ = accounts.create_session(store, USERS["viewer"], max_hours=1, now=t)
    assert accounts.load_session(store, value, idle_minutes=600, now=t + timedelta(minutes=61)) is None


def test_disabling_a_user_signs_them_out(client: Any) -> None:
    viewer = client("viewer")
    assert viewer.get("/", follow_redirects=False).status_code == 200
    admin = client("admin")
    r = post_form(admin, f"/users/{USERS['viewer']}/disable", {}, page="/users")
    assert r.status_code == 303
    assert viewer.get("/", follow_redirects=False).status_code == 303
    r = sign_in(client(), USERS["viewer"])
    assert r.status_code == 403 and "disabled" in r.text


def test_the_last_admin_cannot_be_demoted_or_disable_themselves(client: Any) -> None:
    admin = client("admin")
    r = post_form(admin, f"/users/{USERS['admin']}/role", {"role": "viewer"}, page="/users")
    assert r.status_code == 400 and "only active administrator" in r.text
    r = post_form(admin, f"/users/{USERS['admin']}/disable", {}, page="/users")
    assert r.status_code == 400 and "cannot disable your own account" in r.text


def test_create_user_form_errors(client: Any) -> None:
    admin = client("admin")
    r = post_form(
        admin,
        "/users/new",
        {"username": "Bad Name", "role": "boss", "password": "short", "confirm_password": ""},
    )
    assert r.status_code == 400
    for text in ("Username must be", "Choose a role", "Password must be 12 characters or more"):
        assert text in r.text
    assert 'href="#username"' in r.text and "Error: Add a user" in r.text
    r = post_form(admin, "/users/new", {"username": "9434765919", "role": "viewer", "password": "x" * 12})
    assert r.status_code == 400 and "9434765919" not in r.text


def test_change_own_password(client: Any, web_app: FastAPI) -> None:
    c = client("analyst")
    r = post_form(
        c, "/account/password", {"current_password": "wrong", "new_password": "n", "confirm_password": ""}
    )
    assert r.status_code == 400 and "current password" in r.text
    new = "a brand new passphrase"
    r = post_form(
        c, "/account/password", {"current_password": PASSWORD, "new_password": new, "confirm_password": new}
    )
    assert r.status_code == 303
    assert c.get("/", follow_redirects=False).status_code == 303  # signed out everywhere
    assert sign_in(client(), USERS["analyst"], new).status_code == 303


def test_a_csrf_token_is_bound_to_its_session(client: Any) -> None:
    a, b = client("admin"), client("admin")
    token_a = csrf(a, "/users/new")
    r = b.post("/users/new", data={"username": "someone", "csrf_token": token_a}, follow_redirects=False)
    assert r.status_code == 403


def test_oversized_form_is_refused(client: Any) -> None:
    c = client("viewer")
    r = c.post("/logout", data={"x": "a" * (2 * 1024 * 1024)})
    assert r.status_code == 413 and "too large" in r.text


def test_production_password_hashes_are_argon2id() -> None:
    from argon2 import PasswordHasher

    h = PasswordHasher().hash("correct horse battery staple")
    assert h.startswith("$argon2id$")
    assert security.hash_password("x" * 12).startswith("$argon2id$")


def test_secret_key_file_is_made_owner_only(tmp_path: Path) -> None:
    key = security.load_secret_key(tmp_path, env={})
    path = tmp_path / "web.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(key) >= 32
    assert security.load_secret_key(tmp_path, env={}) == key
    os.chmod(path, 0o644)
    with pytest.raises(UsageError, match="readable by other users"):
        security.load_secret_key(tmp_path, env={})
    with pytest.raises(UsageError, match="too short"):
        security.load_secret_key(tmp_path, env={"OPTOUT_WEB_SECRET_KEY": "short"})
    assert security.load_secret_key(tmp_path, env={"OPTOUT_WEB_SECRET_KEY": "k" * 40}) == b"k" * 40


def test_accounts_refuse_bad_input(web_app: FastAPI) -> None:
    store = web_app.state.store
    with pytest.raises(UsageError):
        accounts.create_user(store, USERS["viewer"], "viewer", PASSWORD, actor="t")  # exists
    with pytest.raises(UsageError):
        accounts.create_user(store, "ok-name", "superuser", PASSWORD, actor="t")
    with pytest.raises(UsageError, match="NHS number"):
        accounts.create_token(store, USERS["viewer"], "for 943 476 5919", actor="t")


def test_behind_a_proxy_on_this_machine_cookies_are_secure(web_app: FastAPI) -> None:
    with TestClient(web_app, base_url="http://127.0.0.1") as c:
        assert "Secure" not in c.get("/login").headers["set-cookie"]  # a developer's own browser
        r = c.get("/login", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3"})
        assert "Secure" in r.headers["set-cookie"]
        r = c.get("/login", headers={"Host": "optout.trust.nhs.uk"})
        assert "Secure" in r.headers["set-cookie"]

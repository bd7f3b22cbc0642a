"""The JSON API: bearer tokens only (no cookies, so no CSRF), the same operations as the pages."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.web.conftest import BASE_URL, USERS

from optout import audit
from optout.web import accounts


def test_no_token_bad_token_and_cookies_get_401(client: Any, web_app: FastAPI) -> None:
    r = client().get("/api/dashboard")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    with TestClient(
        web_app, base_url=BASE_URL, headers={"Authorization": "Bearer optout_0123456789ab_nope"}
    ) as c:
        assert c.get("/api/dashboard").status_code == 401
    signed_in = client("admin")  # a session cookie is not accepted under /api
    assert signed_in.get("/api/dashboard").status_code == 401


def test_token_auth_and_revocation(api_client: Any, web_app: FastAPI) -> None:
    c = api_client("viewer")
    r = c.get("/api/dashboard")
    assert r.status_code == 200
    body = r.json()
    for key in (
        "cache",
        "releases_awaiting_disclosure",
        "check_requests_pending",
        "flows_due_for_review",
        "audit",
    ):
        assert key in body
    assert body["audit"]["ok"] is True and len(body["audit"]["head_hash"]) == 64
    token_id = c.get("/api/tokens").json()[0]["id"]
    r = c.post(f"/api/tokens/{token_id}/revoke")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert c.get("/api/dashboard").status_code == 401


def test_a_disabled_users_token_stops_working(api_client: Any, web_app: FastAPI) -> None:
    c = api_client("analyst")
    assert c.get("/api/settings").status_code == 200
    accounts.set_disabled(web_app.state.store, USERS["analyst"], True, actor="t")
    assert c.get("/api/settings").status_code == 401


def test_tokens_are_stored_hashed_and_shown_once(api_client: Any, web_app: FastAPI) -> None:
    c = api_client("ig_lead")
    r = c.post("/api/tokens", json={"name": "nightly"})
    assert r.status_code == 201
    secret = r.json()["token"]
    listed = c.get("/api/tokens").json()
    assert all("token" not in t for t in listed) and secret not in str(listed)
    import sqlalchemy as sa

    from optout.store import web_api_tokens

    with web_app.state.store.begin() as conn:
        stored = [tuple(row) for row in conn.execute(sa.select(web_api_tokens))]
    assert secret not in str(stored)


def test_roles_apply_to_the_api(api_client: Any, web_app: FastAPI) -> None:
    viewer, admin = api_client("viewer"), api_client("admin")
    body = {"username": "scripted", "role": "analyst", "password": "a long enough password"}
    assert viewer.post("/api/users", json=body).status_code == 403
    assert viewer.get("/api/users").status_code == 403
    assert viewer.post("/api/audit/evidence", json={}).status_code == 403
    r = admin.post("/api/users", json=body)  # no CSRF token needed: bearer only
    assert r.status_code == 201 and r.json()["role"] == "analyst"
    entry = [e for e in audit.entries(web_app.state.store) if e.action == "web.user.created"][-1]
    assert entry.actor == f"web:{USERS['admin']}" and entry.subject == "scripted"
    r = admin.post("/api/users/scripted/role", json={"role": "superuser"})
    assert r.status_code == 400 and r.json()["error"] == "usage"
    assert admin.post("/api/users/nobody/unlock").status_code == 404


def test_audit_api(api_client: Any, web_app: FastAPI) -> None:
    ig = api_client("ig_lead")
    r = ig.get("/api/audit/entries", params={"action": "web.token"})
    assert r.status_code == 200 and r.json()["total"] >= 1
    assert {e["action"] for e in r.json()["entries"]} == {"web.token.created"}
    v = ig.get("/api/audit/verify").json()
    assert v["ok"] is True
    r = ig.post("/api/audit/evidence", json={"report_for": "external"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert sorted(n.rsplit("/", 1)[1] for n in names) == ["evidence.html", "evidence.json"]
    assert ig.get("/api/audit/verify", params={"expect_head": "nothex"}).status_code == 400


def test_openapi_needs_a_token_and_lists_the_operations(api_client: Any, client: Any) -> None:
    assert client().get("/api/openapi.json").status_code == 401
    doc = api_client("viewer").get("/api/openapi.json").json()
    for path in ("/api/dashboard", "/api/audit/entries", "/api/settings", "/api/users", "/api/tokens"):
        assert path in doc["paths"]
    page = client("viewer").get("/api-docs")
    assert page.status_code == 200 and "/api/dashboard" in page.text

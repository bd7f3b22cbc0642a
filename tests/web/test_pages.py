"""The foundation's pages show what the library says, and never a secret or an NHS number."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from tests.support.releases import make_release
from tests.web.conftest import USERS, post_form

from optout import audit
from optout.check import state as check_state
from optout.config import Settings
from optout.web.routes.settings import database_status


def test_dashboard_shows_what_needs_doing(client: Any, web_app: FastAPI, tmp_path: Path) -> None:
    store = web_app.state.store
    now = datetime.now(UTC)
    make_release(store, tmp_path / "rel", "rel-soon", checked_at=now - timedelta(days=18))
    make_release(store, tmp_path / "rel", "rel-late", checked_at=now - timedelta(days=25))
    make_release(store, tmp_path / "rel", "rel-fine", checked_at=now - timedelta(days=1))
    check_state.create(
        store,
        local_id="REQ-1",
        mode="one-off",
        created_at=now,
        cohort_sha256="0" * 64,
        cohort_size=10,
        out_path=None,
        details={},
    )
    html = client("viewer").get("/").text
    assert "rel-soon" in html and "rel-late" in html and "rel-fine" in html
    assert html.index("rel-late") < html.index("rel-soon") < html.index("rel-fine")  # overdue first
    assert "Overdue" in html and "REQ-1" in html
    head = audit.verify(store).head_hash
    assert head and head in html


def test_audit_filters_and_pages(client: Any, web_app: FastAPI) -> None:
    store = web_app.state.store
    for i in range(60):
        audit.record(store, "test.many", actor="someone-else", subject=f"item-{i}")
    c = client("viewer")
    html = c.get("/audit", params={"action": "test.many"}).text
    assert "60 entries, page 1 of 2" in html and "item-59" in html and "item-0<" not in html
    html = c.get("/audit", params={"action": "test.many", "page": 2}).text
    assert "item-0<" in html
    html = c.get("/audit", params={"actor": "web:"}).text
    assert "test.many" not in html.split("Newest first")[1]
    r = c.get("/audit", params={"from": "31/12/2026"})
    assert r.status_code == 400 and 'href="#from"' in r.text


def test_audit_verify_page_finds_a_tampered_entry(client: Any, web_app: FastAPI) -> None:
    store = web_app.state.store
    c = client("viewer")
    v = audit.verify(store)
    r = c.get("/audit/verify", params={"expect_head": v.head_hash})
    assert "The audit trail is intact" in r.text and v.head_hash in r.text
    from tests.support.tamper import open_for_tampering

    con = open_for_tampering(web_app.state.settings.home / "optout.db")
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    con.commit()
    con.close()
    r = c.get("/audit/verify")
    assert "The audit trail is not intact" in r.text


def test_evidence_pack_download(client: Any, web_app: FastAPI) -> None:
    c = client("ig_lead")
    today = datetime.now(UTC).date().isoformat()
    r = post_form(c, "/audit/export", {"from": today, "to": today, "report_for": "external"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'attachment; filename="evidence-{today}-to-{today}.zip"'
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    data = json.loads(zf.read(f"evidence-{today}-to-{today}/evidence.json"))
    assert data["chain"]["ok"] is True
    entry = audit.entries(web_app.state.store)[-1]
    assert entry.action == "audit.exported" and entry.actor == f"web:{USERS['ig_lead']}"
    r = post_form(c, "/audit/export", {"from": today, "to": "2000-01-01"})
    assert r.status_code == 400 and "on or after" in r.text


def test_settings_never_show_a_secret(client: Any, web_app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    settings: Settings = web_app.state.settings
    settings.mesh.url = "https://mesh.example.nhs.uk"
    settings.mesh.mailbox = "X26ABC123"
    settings.mesh.password = "mesh-password-value"
    settings.mesh.shared_key = "mesh-shared-key-value"
    key = base64.b64encode(b"k" * 32).decode()
    monkeypatch.setenv("OPTOUT_CACHE_KEY", key)
    html = client("viewer").get("/settings").text
    assert "X26ABC123" in html and "Configured" in html and "There is a key" in html
    for secret in ("mesh-password-value", "mesh-shared-key-value", key):
        assert secret not in html
    body = json.dumps(client("viewer").get("/settings").text)
    assert "mesh-password-value" not in body


def test_database_url_password_is_masked() -> None:
    s = Settings(store_url="postgresql+psycopg://optout:hunter2-secret@db.example/optout")
    d = database_status(s)
    assert d["kind"] == "PostgreSQL" and "hunter2-secret" not in d["url"] and "***" in d["url"]


def test_mesh_test_connection_without_configuration(client: Any, web_app: FastAPI) -> None:
    c = client("analyst")
    r = post_form(c, "/settings/mesh/test", {}, page="/settings")
    assert r.status_code == 303
    html = c.get("/settings").text
    assert "MESH connection failed" in html and "not configured" in html
    assert audit.entries(web_app.state.store)[-1].action == "web.mesh.tested"


@pytest.mark.sandbox
def test_mesh_test_connection_with_the_sandbox(client: Any, web_app: FastAPI, org_settings: Any) -> None:
    web_app.state.settings.mesh = org_settings
    c = client("ig_lead")
    r = post_form(c, "/settings/mesh/test", {}, page="/settings")
    assert r.status_code == 303
    html = c.get("/settings").text
    assert "MESH connection works" in html
    e = audit.entries(web_app.state.store)[-1]
    assert e.action == "web.mesh.tested" and e.details_dict == {"ok": True}

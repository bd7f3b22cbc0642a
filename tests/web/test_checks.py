"""Checks and cache: requests and their state, collecting a reply, refreshing the cache (IG lead)
over a real mesh-sandbox, its status; never a member of the cache nor a count returned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.web.conftest import USERS, csrf
from tests.web.journey import POPULATION, SEED, error_summary

from optout import audit
from optout.check import cache as cache_mod
from optout.config import MeshSettings, Settings
from optout.nhs_number import synthetic


@pytest.fixture
def web_settings(
    web_settings: Settings, org_settings: MeshSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Settings:
    monkeypatch.delenv("OPTOUT_CACHE_KEY", raising=False)
    web_settings.mesh = org_settings
    web_settings.cache_key_file = cache_mod.keygen(tmp_path / "keys" / "cache.key")
    return web_settings


@pytest.fixture
def service(central_service: Any) -> Any:
    central_service.register.seed(POPULATION, 0.1, seed=SEED)
    central_service.register.publish()
    return central_service


def _refresh(c: Any, body: bytes, name: str = "everyone.csv", column: str = "") -> Any:
    token = csrf(c, "/checks/cache/refresh")
    return c.post(
        "/checks/cache/refresh",
        data={"csrf_token": token, "column": column},
        files=[("cohort", (name, body, "text/csv"))],
        follow_redirects=False,
    )


def test_every_role_sees_the_checks_page(client: Any, web_app: Any) -> None:
    for role in ("viewer", "analyst", "ig_lead", "admin"):
        page = client(role).get("/checks")
        assert page.status_code == 200
        assert "The temporary cache" in page.text and "No cache" in page.text
        assert ("Refresh the cache" in page.text) is (role in ("ig_lead", "admin"))
    assert client(None).get("/checks", follow_redirects=False).status_code == 303


def test_an_ig_lead_refreshes_the_cache(client: Any, web_app: Any, service: Any, tmp_path: Path) -> None:
    lead = client("ig_lead")
    people = synthetic(POPULATION, seed=SEED)[:500]
    body = ("nhs_number\n" + "".join(f"{n}\n" for n in people)).encode()
    r = _refresh(lead, body)
    assert r.status_code == 303, error_summary(r.text)
    wait_url = r.headers["location"]
    local_id = wait_url.split("/")[2]
    assert not any((Path(web_app.state.settings.home) / "web" / "cohorts").glob("*/*"))  # deleted once sent
    page = lead.get(wait_url, follow_redirects=False)
    assert page.status_code == 200 and '<noscript><meta http-equiv="refresh"' in page.text
    service.responder.run_once()
    # the page reloads every few seconds, but MESH is asked with a back-off: not again so soon
    assert lead.get(wait_url, follow_redirects=False).status_code == 200
    r = lead.get(f"{wait_url}?now=1", follow_redirects=False)  # "Check again" asks at once
    assert r.status_code == 303 and r.headers["location"] == f"/checks/{local_id}"
    shown = lead.get(r.headers["location"])
    assert "Cache refreshed" in shown.text and "collected" in shown.text.lower()
    status = lead.get("/checks").text
    assert "Fresh" in status and "13 days from the refresh" in status
    for n in people[:50]:
        assert str(n) not in status and str(n) not in shown.text
    entries = audit.entries(web_app.state.store)
    assert any(e.action.startswith("cache.") and e.actor == f"web:{USERS['ig_lead']}" for e in entries)
    api = client("viewer")
    assert api.get("/checks").status_code == 200


def test_bad_cohort_files_are_clear(client: Any, web_app: Any, service: Any) -> None:
    lead = client("ig_lead")
    r = _refresh(lead, b"nhs_number\n1234\n12\n")
    assert r.status_code == 400
    assert "none of the 2 rows" in (error_summary(r.text) or "")
    r = _refresh(lead, b"a,b\n1,2\n")
    assert r.status_code == 400 and "which column" in (error_summary(r.text) or "").lower()
    token = csrf(lead, "/checks/cache/refresh")
    r = lead.post("/checks/cache/refresh", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 400


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_only_an_ig_lead_refreshes(client: Any, role: str) -> None:
    c = client(role)
    assert c.get("/checks/cache/refresh").status_code == 403
    token = csrf(c, "/checks")
    r = c.post(
        "/checks/cache/refresh",
        data={"csrf_token": token},
        files=[("cohort", ("x.csv", b"nhs_number\n", "text/csv"))],
    )
    assert r.status_code == 403


def test_collect_a_pending_reply_and_the_api(
    client: Any, api_client: Any, web_app: Any, service: Any
) -> None:
    lead = api_client("ig_lead")
    people = synthetic(POPULATION, seed=SEED)[:100]
    files = [
        (
            "cohort",
            ("everyone.csv", ("nhs_number\n" + "".join(f"{n}\n" for n in people)).encode(), "text/csv"),
        )
    ]
    r = lead.post("/api/cache/refresh", files=files)
    assert r.status_code == 202, r.text
    local_id = r.json()["local_id"]
    analyst = api_client("analyst")
    assert analyst.post(f"/api/checks/{local_id}/collect").status_code == 202
    page = client("analyst")
    shown = page.get(f"/checks/{local_id}")
    assert 'id="collect"' in shown.text
    service.responder.run_once()
    token = csrf(page, f"/checks/{local_id}")
    r = page.post(f"/checks/{local_id}/collect", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert "Reply collected" in page.get(r.headers["location"]).text
    listed = api_client("viewer").get("/api/checks").json()
    assert listed[0]["local_id"] == local_id and "returned_count" not in listed[0]
    status = api_client("viewer").get("/api/cache").json()
    assert status["state"] == "fresh" and "returned_count" not in status and "path" not in status
    assert api_client("viewer").post(f"/api/checks/{local_id}/collect").status_code == 403

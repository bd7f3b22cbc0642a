"""Make a release from the browser, over a real mesh-sandbox and the reference check service;
then the release's pages: report (<5 outside the organisation), manifest, download, disclose,
withdraw, linkage check; and who may do what."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.web.conftest import USERS
from tests.web.journey import (
    FLOW_ID,
    POPULATION,
    RECIPIENT,
    SEED,
    error_summary,
    extract,
    post,
    prepare,
    register_flow,
)

from optout import audit
from optout.config import MeshSettings, Settings
from optout.release.lifecycle import get_release, list_releases


@pytest.fixture
def web_settings(
    web_settings: Settings, org_settings: MeshSettings, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The web app's settings (conftest's), talking to the test's mesh-sandbox as the organisation."""
    monkeypatch.delenv("OPTOUT_CACHE_KEY", raising=False)
    web_settings.mesh = org_settings
    return web_settings


@pytest.fixture
def service(central_service: Any) -> Any:
    central_service.register.seed(POPULATION, 0.1, seed=SEED)
    central_service.register.publish()
    return central_service


def _made_release(client: Any, web_app: Any, service: Any, tmp_path: Path) -> str:
    register_flow(web_app.state.store)
    tables = extract(tmp_path / "extract")
    base = prepare(client, tables)
    r = post(client, f"{base}/check", {"mode": "one-off"})
    assert r.status_code == 303, error_summary(r.text)
    assert r.headers["location"].endswith("/check/wait")
    waiting = client.get(f"{base}/check/wait", follow_redirects=False)
    assert waiting.status_code == 200
    assert '<noscript><meta http-equiv="refresh"' in waiting.text and "Check again" in waiting.text
    assert service.responder.run_once() >= 1
    r = client.get(f"{base}/check/wait?now=1", follow_redirects=False)  # "Check again"
    assert r.status_code == 303 and r.headers["location"].endswith("/preview")
    preview = client.get(f"{base}/preview")
    assert preview.status_code == 200, preview.text
    assert "What the release will contain" in preview.text and "Nothing has been written yet" in preview.text
    assert list_releases(web_app.state.store) == []  # a dry run writes nothing
    confirm = client.get(f"{base}/confirm")
    assert "Check your answers before making the release" in confirm.text
    r = post(client, f"{base}/make", {}, page=f"{base}/confirm")
    assert r.status_code == 303, r.text
    release_id = r.headers["location"].split("/")[2]
    assert r.headers["location"] == f"/releases/{release_id}/made"
    folder = Path(web_app.state.web_config.upload_dir) / base.rsplit("/", 1)[1]
    assert not folder.exists()  # uploaded files deleted once the release is made
    return release_id


def test_an_analyst_makes_a_release_over_mesh(
    client: Any, web_app: Any, service: Any, tmp_path: Path
) -> None:
    c = client("analyst")
    release_id = _made_release(c, web_app, service, tmp_path)
    store = web_app.state.store
    rel = get_release(store, release_id)
    assert rel.state() == "prepared" and rel.flow_id == FLOW_ID and rel.check_source == "one-off"
    made = c.get(f"/releases/{release_id}/made")
    assert "Release made" in made.text and "Your uploaded files have been deleted" in made.text
    actors = {e.action: e.actor for e in audit.entries(store) if e.subject == release_id}
    assert actors["release.preparing"] == f"web:{USERS['analyst']}"
    assert actors["release.prepared"] == f"web:{USERS['analyst']}"
    actions = [e.action for e in audit.entries(store)]
    assert "upload.received" in actions and "upload.deleted" in actions
    # the check request is listed on the checks page, with what was sent and never what came back
    checks = c.get("/checks")
    assert "one-off check" in checks.text and "collected" in checks.text.lower()
    # the analyst may download their release; an IG lead discloses it
    z = c.get(f"/releases/{release_id}/download")
    assert z.status_code == 200 and z.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(z.content)).namelist()
    assert sorted(names) == sorted(
        f"{release_id}/{n}"
        for n in ("release.json", "patients.csv", "episodes.parquet", "procedures.parquet")
    )
    assert "release.downloaded" in [e.action for e in audit.entries(store)]
    token = c.get(f"/releases/{release_id}")
    assert token.status_code == 200 and 'id="disclose"' not in token.text  # analysts do not disclose


def test_an_ig_lead_discloses_and_reports(client: Any, web_app: Any, service: Any, tmp_path: Path) -> None:
    lead = client("ig_lead")
    release_id = _made_release(lead, web_app, service, tmp_path)
    internal = lead.get(f"/releases/{release_id}/report")
    external = lead.get(f"/releases/{release_id}/report?for=external")
    assert internal.status_code == external.status_code == 200
    manifest = json.loads(lead.get(f"/releases/{release_id}/manifest.json").content)
    small = [
        c["rows"]
        for t in manifest["counts"]
        for c in list(t["removed"].values()) + list(t["kept"].values())
        if 0 < c["rows"] < 5
    ]
    if small:  # counts 1-4 appear as <5 only in the external report
        assert "&lt;5" in external.text and "&lt;5" not in internal.text.split('id="counts"', 1)[1]
    api = lead.get(f"/releases/{release_id}/linkcheck")
    assert api.status_code == 200 and "Linkage check" in api.text
    # the wrong recipient is refused, the flow's recipient accepted
    r = post(lead, f"/releases/{release_id}/disclose", {"to": "Someone Else Ltd"})
    assert r.status_code == 409 and "whose recipient is" in r.text
    r = post(lead, f"/releases/{release_id}/disclose", {"to": RECIPIENT})
    assert r.status_code == 303 and r.headers["location"] == f"/releases/{release_id}/disclosed"
    assert "Disclosure recorded" in lead.get(r.headers["location"]).text
    rel = get_release(web_app.state.store, release_id)
    assert rel.state() == "disclosed" and rel.disclosures[0].actor == f"web:{USERS['ig_lead']}"
    again = post(lead, f"/releases/{release_id}/disclose", {"to": RECIPIENT}, page=f"/releases/{release_id}")
    assert again.status_code == 409  # disclosed once
    r = post(lead, f"/releases/{release_id}/withdraw", {"reason": "too late"}, page=f"/releases/{release_id}")
    assert r.status_code == 400 and "cannot be withdrawn" in r.text


def test_cache_choice_and_withdraw(client: Any, web_app: Any, service: Any, tmp_path: Path) -> None:
    """Without a cache the choice is refused; a release can be withdrawn with a reason."""
    lead = client("ig_lead")
    register_flow(web_app.state.store)
    base = prepare(lead, extract(tmp_path / "extract"))
    page = lead.get(f"{base}/check")
    assert 'value="cache"' not in page.text and 'id="cache-unavailable"' in page.text
    r = post(lead, f"{base}/check", {"mode": "cache"})
    assert r.status_code == 400 and "cache cannot be used" in r.text
    r = post(lead, f"{base}/check", {"mode": "one-off"})
    service.responder.run_once()
    lead.get(f"{base}/check/wait?now=1")
    r = post(lead, f"{base}/make", {}, page=f"{base}/confirm")
    release_id = r.headers["location"].split("/")[2]
    r = post(lead, f"/releases/{release_id}/withdraw", {"reason": ""})
    assert r.status_code == 400 and "say why" in r.text
    r = post(lead, f"/releases/{release_id}/withdraw", {"reason": "recipient no longer needs it"})
    assert r.status_code == 303
    assert get_release(web_app.state.store, release_id).state() == "withdrawn"


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_who_may_disclose_or_withdraw(
    client: Any, web_app: Any, service: Any, tmp_path: Path, role: str
) -> None:
    lead = client("ig_lead")
    release_id = _made_release(lead, web_app, service, tmp_path)
    c = client(role)
    assert c.get("/releases").status_code == 200
    assert c.get(f"/releases/{release_id}").status_code == 200
    assert c.get(f"/releases/{release_id}/disclose").status_code == 403
    token_page = "/releases"
    assert post(c, f"/releases/{release_id}/disclose", {"to": RECIPIENT}, page=token_page).status_code == 403
    assert post(c, f"/releases/{release_id}/withdraw", {"reason": "x"}, page=token_page).status_code == 403
    # downloads are scoped to the release's maker (and admins)
    assert c.get(f"/releases/{release_id}/download").status_code == 403
    assert client("admin").get(f"/releases/{release_id}/download").status_code == 200


def test_api_makes_and_discloses_a_release(
    api_client: Any, web_app: Any, service: Any, tmp_path: Path
) -> None:
    register_flow(web_app.state.store)
    tables = extract(tmp_path / "extract")
    a = api_client("analyst")
    r = a.post("/api/releases/new", json={"flow_id": FLOW_ID})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    files = [("tables", (p.name, p.read_bytes(), "application/octet-stream")) for p in tables.values()]
    r = a.post(f"/api/releases/new/{jid}/tables", files=files)
    assert r.status_code == 200, r.text
    assert r.json()["nhs_columns"] == {}
    plan = {
        "nhs_columns": {"patients": "nhs_number", "episodes": "nhs_number"},
        "links": ["procedures.episode_id=episodes.episode_id"],
        "unmatched": "withhold",
    }
    r = a.put(f"/api/releases/new/{jid}/plan", json=plan)
    assert r.status_code == 200, r.text
    r = a.post(f"/api/releases/new/{jid}/check", json={"mode": "one-off"})
    assert r.status_code == 200 and r.json()["check"]["state"] == "sent"
    assert a.post(f"/api/releases/new/{jid}/check/collect").status_code == 202
    service.responder.run_once()
    assert a.post(f"/api/releases/new/{jid}/check/collect").status_code == 200
    preview = a.get(f"/api/releases/new/{jid}/preview").json()
    assert preview["dry_run"] is True
    r = a.post(f"/api/releases/new/{jid}/make")
    assert r.status_code == 201, r.text
    release_id = r.json()["release_id"]
    assert a.post(f"/api/releases/{release_id}/disclose", json={"to": RECIPIENT}).status_code == 403
    ext = a.get(f"/api/releases/{release_id}/report?for=external").json()
    assert ext["report_for"] == "external"
    lead = api_client("ig_lead")
    r = lead.post(f"/api/releases/{release_id}/disclose", json={"to": RECIPIENT})
    assert r.status_code == 200, r.text
    assert r.json()["release"]["state"] == "disclosed"
    assert any(x["id"] == release_id for x in lead.get("/api/releases").json())
    assert api_client("viewer").post("/api/releases/new", json={"flow_id": FLOW_ID}).status_code == 403

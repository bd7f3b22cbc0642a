"""Every page of the journeys, for every role and signed out: who sees it, who is refused, and
that none of them shows an NHS number from the data behind it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.web.conftest import ROLES
from tests.web.journey import FLOW, FLOW_ID

from optout import apply_opt_outs
from optout.nhs_number import synthetic
from optout.policy import register as flows
from optout.synth import write_cleaned_list

EVERYONE = set(ROLES)
MAKERS = {"analyst", "ig_lead", "admin"}
LEADS = {"ig_lead", "admin"}


@pytest.fixture
def release_id(web_app: Any, tmp_path: Path) -> str:
    """A release made by the CLI's path (the settings' actor), as ``make demo`` leaves one."""
    store = web_app.state.store
    flows.add_flow(store, FLOW, flow_id=FLOW_ID, actor="cli")
    people = synthetic(40, seed=2)
    table = tmp_path / "patients.csv"
    table.write_text("nhs_number,x\n" + "".join(f"{n},{i}\n" for i, n in enumerate(people)))
    cleaned = tmp_path / "cleaned.dat"
    write_cleaned_list(cleaned, people[:37])  # 3 opted out
    from datetime import UTC, datetime

    report = apply_opt_outs(
        [table],
        out_dir=tmp_path / "release",
        cleaned_list=cleaned,
        checked_at=datetime.now(UTC),
        flow_id=FLOW_ID,
        store=store,
    )
    return report.release_id


PAGES = [
    ("/assess", EVERYONE),
    ("/flows", EVERYONE),
    (f"/flows/{FLOW_ID}", EVERYONE),
    (f"/flows/{FLOW_ID}/saved", EVERYONE),
    ("/releases", EVERYONE),
    ("/releases/new", MAKERS),
    ("/releases/{rid}", EVERYONE),
    ("/releases/{rid}/report", EVERYONE),
    ("/releases/{rid}/report?for=external", EVERYONE),
    ("/releases/{rid}/manifest.json", EVERYONE),
    ("/releases/{rid}/linkcheck", EVERYONE),
    ("/releases/{rid}/disclose", LEADS),
    ("/releases/{rid}/withdraw", LEADS),
    ("/releases/{rid}/download", {"admin"}),  # made by the CLI: only an admin downloads it
    ("/checks", EVERYONE),
    ("/checks/cache/refresh", LEADS),
    ("/checklist", EVERYONE),
    ("/checklist/gp-protocol/survey-send", EVERYONE),
    ("/checklist/social-care/tell-people", EVERYONE),
    ("/social-care", EVERYONE),
    ("/social-care/examples/self-funded-residents", EVERYONE),
    ("/social-care/wording", EVERYONE),
    ("/social-care/wording.txt", EVERYONE),
]


@pytest.mark.parametrize("role", [None, *ROLES])
def test_every_page_for_every_role(client: Any, release_id: str, role: str | None) -> None:
    c = client(role)
    people = [str(n) for n in synthetic(40, seed=2)]
    for template, allowed in PAGES:
        path = template.format(rid=release_id)
        r = c.get(path, follow_redirects=False)
        if role is None:
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
            continue
        expected = 200 if role in allowed else 403
        assert r.status_code == expected, (path, role, r.status_code)
        if r.headers.get("content-type", "").startswith(("text/", "application/json")):
            assert not any(n in r.text for n in people), path


@pytest.mark.parametrize("role", ROLES)
def test_every_api_read_for_every_role(api_client: Any, release_id: str, role: str) -> None:
    c = api_client(role)
    for path in (
        "/api/flows",
        f"/api/flows/{FLOW_ID}",
        "/api/releases",
        f"/api/releases/{release_id}",
        f"/api/releases/{release_id}/report?for=external",
        f"/api/releases/{release_id}/manifest",
        "/api/checks",
        "/api/cache",
        "/api/checklist",
        "/api/social-care/examples",
        "/api/social-care/wording",
        "/api/assess/questions/purpose",
    ):
        assert c.get(path).status_code == 200, path
    assert c.get(f"/api/releases/{release_id}/download").status_code == (200 if role == "admin" else 403)


def test_the_api_needs_a_token(client: Any) -> None:
    c = client(None)
    for path in ("/api/flows", "/api/releases", "/api/checks", "/api/checklist", "/api/social-care/examples"):
        assert c.get(path).status_code == 401
    assert c.post("/api/assess", json={"facts": {}}).status_code == 401


def test_a_release_made_outside_the_browser(client: Any, web_app: Any, release_id: str) -> None:
    """Made by the CLI's path: shown with its maker; its report for outside shows 1-4 as <5."""
    from optout import audit

    maker = next(e.actor for e in audit.entries(web_app.state.store) if e.action == "release.preparing")
    page = client("viewer").get(f"/releases/{release_id}")
    assert f"by {maker}" in page.text and "Download the release" not in page.text

    def counts(path: str) -> str:
        text = client("viewer").get(path).text
        return text.split('id="counts"', 1)[1].split("</table>", 1)[0]

    internal = counts(f"/releases/{release_id}/report")
    external = counts(f"/releases/{release_id}/report?for=external")
    assert ">3<" in internal and "&lt;5" not in internal
    assert "&lt;5" in external and ">3<" not in external


def test_every_example_flow_has_a_page(client: Any, web_app: Any) -> None:
    """The flows ``make demo`` and the examples register render (facts, decision, clauses)."""
    store = web_app.state.store
    examples = sorted((Path(__file__).resolve().parents[2] / "examples" / "flows").glob("*.yaml"))
    for path in examples:
        flows.add_flow(store, path, actor="cli")
    c = client("viewer")
    assert c.get("/flows").status_code == 200
    for path in examples:
        page = c.get(f"/flows/{path.stem}")
        assert page.status_code == 200, path.stem
        assert 'id="decision"' in page.text

"""The whole journey in a real headless Chromium, as an IG lead at a small organisation would do it:

    sign in -> assess a flow, question by question, and register it -> upload a three-table
    extract (synthetic) -> check it against the local sandbox over MESH -> preview -> make the
    release -> download it -> disclose it -> export the evidence pack

A screenshot of each main page is saved under ``tests/web/artifacts/`` (``walk-NN-*.png``), and
axe-core checks each main page for serious or critical accessibility problems. The reference
central service answers the check when the test tells it to (``responder.run_once()``) while the
browser sits on the page that waits for the reply, reloading itself (a meta refresh, no script).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from tests.web.conftest import ARTIFACTS, PAGE_TIMEOUT_MS, browser_sign_in, screenshot
from tests.web.journey import POPULATION, RECIPIENT, SEED, extract

from optout import audit
from optout.config import MeshSettings, Settings
from optout.release.lifecycle import list_releases

pytestmark = pytest.mark.slow

PERSONA: dict[str, Any] = {
    "origin.sector": "health",
    "origin.country": "england",
    "origin.funding": "public",
    "data.confidentiality": "confidential",
    "purpose": ["research"],
    "legal_basis": ["s251"],
    "s251.opt_out_exception": "no",
    "recipient.type": "university",
    "recipient.role": "third-party",
    "data.identifiers": ["nhs-number", "date-of-birth", "postcode"],
    "data.nhs_number": "partly-missing",
    "data.tracing_effort": "proportionate",
    "onward_sharing.planned": "no",
}


@pytest.fixture
def web_settings(
    web_settings: Settings, org_settings: MeshSettings, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.delenv("OPTOUT_CACHE_KEY", raising=False)
    web_settings.mesh = org_settings
    return web_settings


@pytest.fixture
def service(central_service: Any) -> Any:
    central_service.register.seed(POPULATION, 0.1, seed=SEED)
    central_service.register.publish()
    return central_service


class Walk:
    """Screenshots and accessibility checks of the main pages, numbered in order."""

    def __init__(self, page: Any, axe_check: Any) -> None:
        self.page = page
        self.axe_check = axe_check
        self.n = 0

    def shot(self, name: str, *, axe: bool = True) -> None:
        self.n += 1
        screenshot(self.page, f"walk-{self.n:02d}-{name}")
        if axe:
            self.axe_check(self.page)

    def continue_(self) -> None:
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Continue", exact=True).click()


def _answer(page: Any, value: Any) -> None:
    if page.locator("textarea#answer").count():
        page.fill("textarea#answer", "" if value == "unknown" else "\n".join(value))
        return
    values = value if isinstance(value, list) else [value]
    for v in values:
        page.locator(f"input[name=answer][value='{v}']").check()


def test_the_whole_journey_in_a_browser(
    browser_page: Any, live_server: Any, axe_check: Any, service: Any, tmp_path: Path
) -> None:
    page = browser_page
    walk = Walk(page, axe_check)
    store = live_server.app.state.store

    # --- sign in
    browser_sign_in(page, "ig_lead")

    # --- does the opt-out apply? one question per page, then check your answers
    page.goto("/assess")
    walk.shot("assess-start")
    page.click("#start")
    page.fill("#name", "Heart failure outcomes study")
    page.fill("#description", "Coded GP records for a CAG-supported cohort study at a university.")
    walk.continue_()
    asked = []
    for _ in range(30):
        m = re.search(r"/q/([a-z0-9_.]+)$", page.url)
        if not m:
            break
        fact = m.group(1)
        asked.append(fact)
        if len(asked) == 1:
            walk.shot("assess-question")
        _answer(page, PERSONA.get(fact, "unknown" if fact != "approvals" else []))
        walk.continue_()
    assert asked[:4] == ["origin.sector", "origin.country", "origin.funding", "data.confidentiality"]
    assert page.url.endswith("/details"), page.url
    page.fill("#recipient-name", RECIPIENT)
    page.fill("#owner", "Practice Data Protection Officer")
    walk.continue_()
    assert page.url.endswith("/check")
    assert page.get_by_role("heading", name="Check your answers").is_visible()
    assert "The national data opt-out applies" in page.inner_text("#decision")
    walk.shot("assess-check-your-answers")
    page.click("#save-button")
    page.wait_for_url(re.compile(r".*/flows/heart-failure-outcomes-study/saved$"))
    assert "Flow saved to the register" in page.inner_text("#confirmation")
    walk.shot("flow-saved")

    # --- make a release: upload a three-table extract
    tables = extract(tmp_path / "extract", people=400)
    page.goto("/releases/new")
    walk.shot("release-start")
    page.click("#start")
    page.locator("input[name=flow][value='heart-failure-outcomes-study']").check()
    walk.continue_()
    page.set_input_files("#tables", [str(p) for p in tables.values()])
    page.click("#upload-button")
    page.wait_for_selector("#uploaded")
    walk.shot("release-upload")
    page.click("#continue")
    # NHS-number columns: detected by name
    assert page.locator("#nhs-patients").input_value() == "nhs_number"
    assert page.locator("#nhs-procedures").input_value() == ""
    walk.shot("release-columns")
    walk.continue_()
    # the table without NHS numbers links to one that has them (guessed from the column names)
    assert page.locator("#col-procedures").input_value() == "episode_id"
    assert page.locator("#parent-procedures").input_value() == "episodes.episode_id"
    walk.shot("release-links")
    walk.continue_()
    page.locator("input[name=unmatched][value=withhold]").check()
    walk.shot("release-missing-numbers")
    walk.continue_()
    # --- check it against the sandbox over MESH, waiting on a page that reloads itself
    page.locator("input[name=mode][value=one-off]").check()
    walk.shot("release-check")
    walk.continue_()
    page.wait_for_url(re.compile(r".*/check/wait$"))
    assert "Waiting for the check service" in page.inner_text("h1")
    walk.shot("release-waiting")
    assert service.responder.run_once() >= 1
    # the page reloads itself every few seconds until the reply is in (the meta refresh, no script)
    page.wait_for_url(re.compile(r".*/preview$"), timeout=2 * PAGE_TIMEOUT_MS)
    assert "What the release will contain" in page.inner_text("h1")
    walk.shot("release-preview")
    page.click("#continue")
    walk.shot("release-check-your-answers")
    page.click("#make")
    page.wait_for_url(re.compile(r".*/releases/rel-[^/]+/made$"))
    release_id = page.url.split("/")[-2]
    assert "Release made" in page.inner_text("#confirmation")
    walk.shot("release-made")

    # --- download it: one archive with the tables and the manifest
    with page.expect_download() as info:
        page.click("#download")
    download = info.value
    ARTIFACTS.mkdir(exist_ok=True)
    download.save_as(str(ARTIFACTS / "walk-release.zip"))  # to look at; another run may overwrite it
    names = zipfile.ZipFile(download.path()).namelist()  # this run's own copy
    assert f"{release_id}/release.json" in names and f"{release_id}/procedures.parquet" in names

    # --- disclose it to the flow's recipient
    page.click("#disclose")
    assert page.locator("#to").input_value() == RECIPIENT
    walk.shot("release-disclose")
    page.click("#record-disclosure")
    page.wait_for_url(re.compile(rf".*/releases/{release_id}/disclosed$"))
    assert "Disclosure recorded" in page.inner_text("#confirmation")
    walk.shot("release-disclosed")
    page.goto(f"/releases/{release_id}")
    walk.shot("release-page")
    page.goto(f"/releases/{release_id}/report?for=external")
    walk.shot("release-report-external")
    page.goto("/releases")
    walk.shot("releases")

    # --- export the evidence pack
    page.goto("/audit/export")
    walk.shot("evidence-export")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the evidence pack").click()
    info.value.save_as(str(ARTIFACTS / "walk-evidence.zip"))
    assert zipfile.ZipFile(info.value.path()).namelist()

    # --- the other pages of the journeys, checked too
    for path, name in (
        ("/", "dashboard"),
        ("/flows", "register"),
        ("/flows/heart-failure-outcomes-study", "flow"),
        ("/checks", "checks"),
        ("/checklist", "checklist"),
        ("/checklist/gp-protocol/mesh-setup", "checklist-task"),
        ("/social-care", "social-care"),
        ("/social-care/wording", "social-care-wording"),
    ):
        page.goto(path)
        walk.shot(name)

    # what the walk left: one disclosed release, made and disclosed by the IG lead
    rels = list_releases(store)
    assert [r.state() for r in rels] == ["disclosed"]
    actors = {e.action: e.actor for e in audit.entries(store) if e.subject == release_id}
    assert actors["release.disclosed"] == actors["release.preparing"] == "web:ian-ig"


def test_waiting_for_the_check_works_without_javascript(
    _browser: Any, live_server: Any, service: Any, tmp_path: Path
) -> None:
    """With JavaScript off, every step is a plain form, and the page that waits for the check
    service reloads itself (the meta refresh inside noscript) until the reply has come."""
    from tests.web.journey import register_flow

    register_flow(live_server.app.state.store)
    context = _browser.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        browser_sign_in(page, "analyst")
        page.goto("/releases/new")
        page.click("#start")
        page.locator("input[name=flow]").first.check()
        page.get_by_role("button", name="Continue", exact=True).click()
        tables = extract(tmp_path / "extract", people=40)
        page.set_input_files("#tables", [str(tables["patients"])])
        page.click("#upload-button")
        page.click("#continue")
        page.get_by_role("button", name="Continue", exact=True).click()  # columns (detected)
        page.locator("input[name=unmatched][value=withhold]").check()
        page.get_by_role("button", name="Continue", exact=True).click()
        page.locator("input[name=mode][value=one-off]").check()
        page.get_by_role("button", name="Continue", exact=True).click()
        page.wait_for_url(re.compile(r".*/check/wait$"))
        screenshot(page, "nojs-release-waiting")
        assert service.responder.run_once() >= 1
        page.wait_for_url(re.compile(r".*/preview$"), timeout=2 * PAGE_TIMEOUT_MS)
        assert "What the release will contain" in page.inner_text("h1")
    finally:
        context.close()

"""In a real headless Chromium: sign in, visit the foundation's main pages, screenshot each and
check each with axe-core (no serious or critical violation); then sign out."""

from __future__ import annotations

from typing import Any

import pytest
from tests.web.conftest import browser_sign_in, screenshot

PAGES = [
    ("/", "dashboard", "Dashboard"),
    ("/audit", "audit", "Audit trail"),
    ("/audit/verify", "audit-verify", "Verify the audit trail"),
    ("/audit/export", "audit-export", "Export the evidence pack"),
    ("/settings", "settings", "Settings"),
    ("/users", "users", "Users and roles"),
    ("/users/new", "users-new", "Add a user"),
    ("/api-tokens", "api-tokens", "API tokens"),
    ("/account", "account", "Your account"),
]


@pytest.mark.slow
def test_foundation_pages_in_a_browser(browser_page: Any, axe_check: Any) -> None:
    page = browser_page
    page.goto("/")
    assert "/login" in page.url
    screenshot(page, "foundation-00-login")
    axe_check(page)
    errors: list[str] = []
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "status of 4" not in m.text else None,
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.reload()
    # NHS.UK frontend's JavaScript ran (module loaded, components initialised)
    assert "nhsuk-frontend-supported" in page.evaluate("document.body.className")
    assert page.locator("button.nhsuk-password-input__toggle:visible").count() == 1
    browser_sign_in(page, "admin")
    for path, name, heading in PAGES:
        page.goto(path)
        assert page.locator("h1").first.inner_text() == heading
        screenshot(page, f"foundation-{name}")
        axe_check(page)
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login?signed_out=1")
    assert not errors, errors  # no script error, nothing the Content-Security-Policy had to block

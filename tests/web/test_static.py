"""The vendored NHS.UK frontend is complete, licensed, and matches the Jinja macros' version."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import optout.web

STATIC = Path(optout.web.__file__).with_name("static")
# nhsuk-frontend-jinja's compatibility table: the NHS.UK frontend each release targets
JINJA_TARGETS = {"0.10.2": "10.6.1", "0.10.0": "10.6.0"}


def test_vendored_frontend_is_whole_and_matches_the_macros() -> None:
    nhsuk = STATIC / "nhsuk"
    vendored = (nhsuk / "VERSION").read_text().strip()
    assert JINJA_TARGETS.get(version("nhsuk-frontend-jinja")) == vendored
    assert "MIT" in (nhsuk / "LICENCE").read_text()
    js = (nhsuk / "nhsuk-frontend.min.js").read_text()
    css = (nhsuk / "nhsuk-frontend.min.css").read_text()
    assert len(js) > 10_000 and "initAll" in js
    assert len(css) > 100_000 and "nhsuk-header" in css
    assert "assets.nhs.uk" not in css  # no third-party request (and none the CSP would block)
    assert "url(/assets/" not in css
    assert (nhsuk / "assets" / "images" / "favicon.ico").is_file()


def test_static_files_are_served_with_headers(client: Any) -> None:
    c = client()
    r = c.get("/static/nhsuk/nhsuk-frontend.min.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert r.headers["x-content-type-options"] == "nosniff" and "cache-control" not in r.headers
    r = c.get("/static/optout.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]
    assert c.get("/static/../app.py").status_code == 404

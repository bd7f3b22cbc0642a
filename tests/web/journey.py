"""Helpers the release-journey tests share: a synthetic three-table extract drawn from the people
the reference central service knows, a registered flow it is for, and the steps of the journey
driven through the pages (TestClient) the way a browser sends them."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from tests.web.conftest import csrf

from optout import synth
from optout.nhs_number import synthetic
from optout.policy import register as flows

POPULATION = 2000
SEED = 4
FLOW_ID = "heart-failure-study"
RECIPIENT = "University of Exampleshire"
FLOW = {
    "name": "Heart failure study",
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential", "nhs_number": "present"},
    "purpose": ["research"],
    "legal_basis": ["s251"],
    "recipient": {"name": RECIPIENT, "type": "university", "role": "third-party"},
}


def error_summary(page: str) -> str | None:
    """The text of a page's error summary (for assertion messages)."""
    m = re.search(r'nhsuk-error-summary__list">(.*?)</ul>', page, re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(1)))).strip() if m else None


def register_flow(store: Any) -> None:
    flows.add_flow(store, FLOW, flow_id=FLOW_ID, actor="tests")


def extract(folder: Path, people: int = 300, *, invalid_rate: float = 0.01) -> dict[str, Path]:
    """patients.csv, episodes.parquet, procedures.parquet about people the service knows."""
    chosen = synthetic(POPULATION, seed=SEED)[:people]
    ex = synth.extract(
        folder,
        chosen,
        people * 3,
        SEED,
        {"patients": "csv", "episodes": "parquet", "procedures": "parquet"},
        invalid_rate=invalid_rate,
    )
    return dict(ex.paths)


def upload(client: Any, base: str, paths: list[Path], *, token_page: str | None = None) -> Any:
    token = csrf(client, token_page or f"{base}/upload")
    files = [("tables", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
    return client.post(f"{base}/upload", data={"csrf_token": token}, files=files, follow_redirects=False)


def post(client: Any, path: str, data: dict[str, Any], page: str | None = None) -> Any:
    token = csrf(client, page or path)
    return client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)


def start(client: Any) -> str:
    r = post(client, "/releases/new", {})
    assert r.status_code == 303, r.text
    m = re.match(r"(/releases/new/[^/]+)/", r.headers["location"])
    assert m, r.headers["location"]
    return m.group(1)


def prepare(client: Any, tables: dict[str, Path], *, unmatched: str = "withhold") -> str:
    """Flow, upload, columns, links and the missing-number choice: the base URL of the journey."""
    base = start(client)
    assert post(client, f"{base}/flow", {"flow": FLOW_ID}).status_code == 303
    r = upload(client, base, list(tables.values()))
    assert r.status_code == 303, r.text
    r = post(client, f"{base}/upload/done", {}, page=f"{base}/upload")
    assert r.headers["location"].endswith("/columns")
    r = post(
        client,
        f"{base}/columns",
        {"nhs-patients": "nhs_number", "nhs-episodes": "nhs_number", "nhs-procedures": ""},
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"].endswith("/links")
    page = client.get(f"{base}/links")
    assert 'value="episode_id" selected' in page.text  # the link is guessed from the column names
    r = post(
        client, f"{base}/links", {"col-procedures": "episode_id", "parent-procedures": "episodes.episode_id"}
    )
    assert r.status_code == 303, r.text
    r = post(client, f"{base}/missing", {"unmatched": unmatched})
    assert r.status_code == 303, r.text
    assert r.headers["location"].endswith("/check")
    return base

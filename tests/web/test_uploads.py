"""Uploading an extract: streamed to an owner-only folder, limited in size, bad files named with
a clear message (file, row, column, the class of a bad value; never the value), scoped to the
user who started the release, deleted when abandoned or left."""

from __future__ import annotations

import contextlib
import csv
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from tests.web.conftest import csrf
from tests.web.journey import FLOW_ID, error_summary, extract, post, register_flow, start, upload

from optout.errors import UsageError
from optout.web.config import WebConfig

LIMIT = 256 * 1024


@pytest.fixture
def web_config(web_config: WebConfig) -> WebConfig:
    web_config.max_upload_bytes = LIMIT
    return web_config


def _journey(client: Any, web_app: Any) -> str:
    with contextlib.suppress(UsageError):  # registered once per test
        register_flow(web_app.state.store)
    base = start(client)
    assert post(client, f"{base}/flow", {"flow": FLOW_ID}).status_code == 303
    return base


def _folder(web_app: Any, base: str) -> Path:
    return Path(web_app.state.web_config.upload_dir) / base.rsplit("/", 1)[1]


def _send(client: Any, base: str, name: str, content: bytes) -> Any:
    token = csrf(client, f"{base}/upload")
    return client.post(
        f"{base}/upload",
        data={"csrf_token": token},
        files=[("tables", (name, content, "application/octet-stream"))],
        follow_redirects=False,
    )


def test_tables_are_stored_owner_only(client: Any, web_app: Any, tmp_path: Path) -> None:
    c = client("analyst")
    base = _journey(c, web_app)
    tables = extract(tmp_path / "x", people=50)
    r = upload(c, base, list(tables.values()))
    assert r.status_code == 303, error_summary(r.text)
    folder = _folder(web_app, base)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    stored = sorted((folder / "tables").iterdir())
    assert [p.name for p in stored] == ["episodes.parquet", "patients.csv", "procedures.parquet"]
    for p in stored:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert p.read_bytes() == tables[p.stem].read_bytes()
    assert not (folder / "incoming").exists()
    page = c.get(f"{base}/upload")
    assert "patients.csv" in page.text and 'id="continue"' in page.text
    # uploading a table again replaces it; removing it removes the file
    assert upload(c, base, [tables["patients"]]).status_code == 303
    r = post(c, f"{base}/tables/patients/remove", {}, page=f"{base}/upload")
    assert r.status_code == 303 and not (folder / "tables" / "patients.csv").exists()


def test_too_large_is_a_clear_message(client: Any, web_app: Any) -> None:
    c = client("analyst")
    base = _journey(c, web_app)
    r = _send(c, base, "big.csv", b"nhs_number,x\n" + b"9434765919,aaaaaaaaaa\n" * 20000)
    assert r.status_code == 413
    assert "The file is too large" in r.text and "MB or smaller" in r.text
    assert "9434765919" not in r.text
    folder = _folder(web_app, base)
    assert not (folder / "incoming").exists() and not (folder / "tables").exists()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("extract.xlsx", b"PK\x03\x04...", "extract.xlsx is not a CSV or Parquet file"),
        ("patients.csv", b"", "patients.csv is empty"),
        ("my table.csv", b"nhs_number\n9434765919\n", "may use only letters, digits"),
        ("9434765919.csv", b"nhs_number\n1\n", "looks like it holds an NHS number"),
        ("broken.parquet", b"PAR1 this is not really parquet PAR1", "broken.parquet"),
        ("twice.csv", b"nhs_number,nhs_number\n9434765919,9434765919\n", "twice.csv"),
    ],
)
def test_bad_files_are_named_never_their_values(
    client: Any, web_app: Any, name: str, content: bytes, expected: str
) -> None:
    c = client("analyst")
    base = _journey(c, web_app)
    r = _send(c, base, name, content)
    assert r.status_code == 400
    summary = error_summary(r.text) or ""
    assert expected in summary, summary
    assert "9434765919" not in r.text
    stored = _folder(web_app, base) / "tables"
    assert not stored.exists() or not list(stored.iterdir())


def test_no_file_chosen(client: Any, web_app: Any) -> None:
    c = client("analyst")
    base = _journey(c, web_app)
    r = _send(c, base, "", b"")
    assert r.status_code == 400 and "Select one or more CSV or Parquet files" in r.text
    r = post(c, f"{base}/upload/done", {}, page=f"{base}/upload")
    assert r.status_code == 400 and "Upload at least one table" in r.text


def test_a_bad_row_is_named_at_the_preview_without_its_value(
    client: Any, web_app: Any, tmp_path: Path
) -> None:
    """A fault deep in a CSV (not seen when it is opened) stops the dry run with file and row."""
    c = client("analyst")
    base = _journey(c, web_app)
    rows = "".join(f"{9000000000 + i:010d},x\n" for i in range(10)) + '9434765919,"unclosed\n'
    r = _send(c, base, "patients.csv", ("nhs_number,note\n" + rows).encode())
    assert r.status_code == 303, error_summary(r.text)
    assert post(c, f"{base}/upload/done", {}, page=f"{base}/upload").status_code == 303
    assert post(c, f"{base}/columns", {"nhs-patients": "nhs_number"}).status_code == 303
    assert post(c, f"{base}/missing", {"unmatched": "withhold"}).status_code == 303
    # the cohort cannot be read: the message names the file and row, never the value
    r = post(c, f"{base}/check", {"mode": "one-off"})
    assert r.status_code == 400
    summary = error_summary(r.text) or ""
    assert "patients.csv" in summary and "9434765919" not in r.text


def test_csrf_token_is_needed_before_any_file(client: Any, web_app: Any) -> None:
    c = client("analyst")
    base = _journey(c, web_app)
    files = [("tables", ("patients.csv", b"nhs_number\n9434765919\n", "text/csv"))]
    r = c.post(f"{base}/upload", files=files, follow_redirects=False)
    assert r.status_code == 403
    # the token after the file (a forged ordering): refused before the file is written
    token = csrf(c, f"{base}/upload")
    body, ctype = _multipart(
        [("tables", "patients.csv", b"nhs_number\n9434765919\n"), ("csrf_token", None, token.encode())]
    )
    r = c.post(f"{base}/upload", content=body, headers={"content-type": ctype}, follow_redirects=False)
    assert r.status_code == 403
    assert not (_folder(web_app, base) / "tables").exists()


def _multipart(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    boundary = "testboundary1234"
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def test_uploads_are_scoped_to_their_maker(client: Any, web_app: Any) -> None:
    a = client("analyst")
    base = _journey(a, web_app)
    b = client("ig_lead")
    assert b.get(f"{base}/upload").status_code == 404
    token = csrf(b, "/releases/new")
    r = b.post(
        f"{base}/upload",
        data={"csrf_token": token},
        files=[("tables", ("patients.csv", b"nhs_number\n9434765919\n", "text/csv"))],
        follow_redirects=False,
    )
    assert r.status_code == 404
    assert client("viewer").get("/releases/new").status_code == 403


def test_abandon_and_sweep_delete_the_files(client: Any, web_app: Any, tmp_path: Path) -> None:
    c = client("analyst")
    base = _journey(c, web_app)
    tables = extract(tmp_path / "x", people=20)
    assert upload(c, base, [tables["patients"]]).status_code == 303
    folder = _folder(web_app, base)
    r = post(c, f"{base}/abandon", {}, page=f"{base}/upload")
    assert r.status_code == 303 and not folder.exists()
    # an unfinished release left for a day is swept (with its files) by the next visit
    base = _journey(c, web_app)
    assert upload(c, base, [tables["patients"]]).status_code == 303
    folder = _folder(web_app, base)
    old = time.time() - 2 * 86400
    os.utime(folder / "draft.json", (old, old))
    assert c.get("/releases/new").status_code == 200
    assert not folder.exists()


def _to_missing_page(c: Any, web_app: Any, tables: dict[str, Path]) -> str:
    base = _journey(c, web_app)
    assert upload(c, base, [tables["patients"], tables["episodes"]]).status_code == 303
    assert post(c, f"{base}/upload/done", {}, page=f"{base}/upload").status_code == 303
    r = post(c, f"{base}/columns", {"nhs-patients": "nhs_number", "nhs-episodes": "nhs_number"})
    assert r.headers["location"].endswith("/missing")
    return base


def test_releasing_rows_without_a_number_needs_a_reason(client: Any, web_app: Any, tmp_path: Path) -> None:
    c = client("analyst")
    base = _to_missing_page(c, web_app, extract(tmp_path / "x", people=30))
    r = post(c, f"{base}/missing", {})
    assert r.status_code == 400 and "Select what to do" in r.text
    r = post(c, f"{base}/missing", {"unmatched": "release"})
    assert r.headers["location"].endswith("/reason")
    r = post(c, f"{base}/reason", {"reason": "because"})
    assert r.status_code == 400 and "001 §8.2" in r.text
    r = post(c, f"{base}/reason", {"reason": "disproportionate-effort"})
    assert r.headers["location"].endswith("/check")


def test_tracing_uses_an_uploaded_index(client: Any, web_app: Any, tmp_path: Path) -> None:
    c = client("analyst")
    tables = extract(tmp_path / "x", people=30)
    base = _to_missing_page(c, web_app, tables)
    r = post(c, f"{base}/missing", {"unmatched": "trace"})
    assert r.headers["location"].endswith("/trace")
    with tables["patients"].open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    index = "hospital_number,nhs_number\n" + "".join(
        f"{r['hospital_number']},{r['nhs_number']}\n" for r in rows
    )
    token = csrf(c, f"{base}/trace")
    r = c.post(
        f"{base}/trace",
        data={"csrf_token": token, "key-patients": "hospital_number", "key-episodes": ""},
        files=[("index", ("index.csv", index.encode(), "text/csv"))],
        follow_redirects=False,
    )
    # episodes has no hospital number to look up by: the plan says which column is needed
    assert r.status_code == 400 and "episodes" in (error_summary(r.text) or "")
    assert "9" * 3 not in (error_summary(r.text) or "")
    folder = _folder(web_app, base)
    assert stat.S_IMODE((folder / "trace" / "index.csv").stat().st_mode) == 0o600
    # a two-table release where only patients is traced: remove episodes, then it goes through
    assert post(c, f"{base}/tables/episodes/remove", {}, page=f"{base}/upload").status_code == 303
    assert post(c, f"{base}/upload/done", {}, page=f"{base}/upload").status_code == 303
    assert post(c, f"{base}/columns", {"nhs-patients": "nhs_number"}).status_code == 303
    assert post(c, f"{base}/missing", {"unmatched": "trace"}).status_code == 303
    token = csrf(c, f"{base}/trace")
    r = c.post(
        f"{base}/trace",
        data={"csrf_token": token, "key-patients": "hospital_number"},
        files=[("index", ("index.csv", index.encode(), "text/csv"))],
        follow_redirects=False,
    )
    assert r.status_code == 303, error_summary(r.text)
    assert r.headers["location"].endswith("/check")

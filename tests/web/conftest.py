"""Fixtures for the web app's tests (route tests and browser tests).

- ``web_settings`` / ``web_config``: a fresh ``OPTOUT_HOME`` in a tmp folder (SQLite metadata
  store), cookies in "auto" mode (plain http on loopback: no ``Secure``), a random secret key.
- ``web_app``: ``create_app`` on them, with one user per role already made: ``USERS[role]`` is
  the username, ``PASSWORD`` the password of each (a store made once per session and copied;
  argon2 runs with small parameters here, see ``_fast_password_hashing``).
- ``client(role=None)``: a Starlette TestClient signed in as that role (None: signed out).
  Use ``csrf(client, path)`` to read a form's CSRF token and ``post_form(client, path, data)``
  to send a form the way a browser does.
- ``api_client(role)``: a TestClient that sends a fresh API token of that role's user.
- ``live_server``: the same app served by uvicorn on a free loopback port (a thread); its
  ``.url`` is the base URL.
- ``browser_page``: a Playwright page in Debian's headless Chromium (``/usr/bin/chromium``);
  ``screenshot(page, name)`` saves ``tests/web/artifacts/<name>.png``; ``axe_check(page)`` runs
  axe-core and fails on any serious or critical violation.
"""

from __future__ import annotations

import re
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from optout.config import Settings
from optout.web import accounts
from optout.web.app import create_app
from optout.web.config import WebConfig

ARTIFACTS = Path(__file__).with_name("artifacts")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
USERS = {"admin": "ada-admin", "ig_lead": "ian-ig", "analyst": "ann-analyst", "viewer": "vic-viewer"}
ROLES = tuple(USERS)
BASE_URL = "http://127.0.0.1"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# Generous, for a busy machine: a page or a server may be slow to answer, never wrong to wait for
# (each wait ends as soon as its condition holds)
PAGE_TIMEOUT_MS = 60_000


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing() -> Iterator[None]:
    """argon2 with small parameters in these tests (the same code; production parameters are
    checked in test_accounts.py): the default costs half a second a hash on a busy machine."""
    from argon2 import PasswordHasher

    from optout.web import security

    saved = security._hasher, security._DUMMY_HASH
    security._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    security._DUMMY_HASH = security._hasher.hash("not a password")
    try:
        yield
    finally:
        security._hasher, security._DUMMY_HASH = saved


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory, _fast_password_hashing: None) -> Path:
    """A metadata store migrated and holding one user per role, made once and copied per test."""
    home = tmp_path_factory.mktemp("web-template")
    app = create_app(Settings(home=home, actor="web-tests"), web_config=WebConfig(secret_key=b"t" * 32))
    for role, username in USERS.items():
        accounts.create_user(app.state.store, username, role, PASSWORD, actor="web-tests")
    app.state.store.dispose()
    return home / "optout.db"


@pytest.fixture
def web_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _template_db: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    for suffix in ("", "-wal", "-shm"):
        src = _template_db.with_name(_template_db.name + suffix)
        if src.exists():
            shutil.copy2(src, home / src.name)
    monkeypatch.setenv("OPTOUT_HOME", str(home))
    monkeypatch.setenv("OPTOUT_MESH_NO_SANDBOX", "1")  # never a developer's running sandbox
    monkeypatch.delenv("OPTOUT_DB_URL", raising=False)
    monkeypatch.delenv("OPTOUT_WEB_SECRET_KEY", raising=False)
    return Settings(home=home, actor="web-tests")


@pytest.fixture
def web_config(tmp_path: Path) -> WebConfig:
    return WebConfig(secret_key=secrets.token_bytes(32), upload_dir=tmp_path / "uploads")


@pytest.fixture
def web_app(web_settings: Settings, web_config: WebConfig) -> FastAPI:
    return create_app(web_settings, web_config=web_config)  # the users come from _template_db


def csrf(client: TestClient, path: str) -> str:
    """The CSRF token in the form(s) of the page at ``path``."""
    r = client.get(path)
    m = _CSRF.search(r.text)
    assert m, f"no CSRF token on {path} (status {r.status_code})"
    return m.group(1)


def post_form(
    client: TestClient, path: str, data: dict[str, Any], *, page: str | None = None, **kw: Any
) -> Any:
    """POST ``data`` to ``path`` with the CSRF token of ``page`` (default: ``path``)."""
    token = csrf(client, page or path)
    return client.post(path, data={**data, "csrf_token": token}, follow_redirects=False, **kw)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    return post_form(client, "/login", {"username": username, "password": password})


@pytest.fixture
def client(web_app: FastAPI) -> Iterator[Callable[..., TestClient]]:
    made: list[TestClient] = []

    def make(role: str | None = None) -> TestClient:
        c = TestClient(web_app, base_url=BASE_URL)
        made.append(c)
        if role is not None:
            r = sign_in(c, USERS[role])
            assert r.status_code == 303, r.text
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def api_client(web_app: FastAPI) -> Iterator[Callable[[str], TestClient]]:
    made: list[TestClient] = []

    def make(role: str) -> TestClient:
        _, secret = accounts.create_token(web_app.state.store, USERS[role], "tests", actor="web-tests")
        c = TestClient(web_app, base_url=BASE_URL, headers={"Authorization": f"Bearer {secret}"})
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# --------------------------------------------------------------------------- a real server


@dataclass
class LiveServer:
    url: str
    app: FastAPI


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(web_app: FastAPI) -> Iterator[LiveServer]:
    import uvicorn

    # bound here and handed to uvicorn: the port is ours from the start (a port found free and
    # bound later may be taken in between by another test run on the machine)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(web_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="optout-web-live-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + PAGE_TIMEOUT_MS / 1000
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the web app did not start")
        time.sleep(0.02)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", web_app)
    finally:
        server.should_exit = True
        thread.join(timeout=PAGE_TIMEOUT_MS / 1000)


# --------------------------------------------------------------------------- a real browser


@pytest.fixture(scope="session")
def _browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium)"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(_browser: Any, live_server: LiveServer) -> Iterator[Any]:
    context = _browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as ``tests/web/artifacts/<name>.png`` (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def browser_sign_in(page: Any, role: str) -> None:
    page.goto("/login")
    page.fill("#username", USERS[role])
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/(?!login).*"))


@pytest.fixture
def axe_check() -> Callable[[Any], None]:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()

    def check(page: Any) -> None:
        results = axe.run(page)
        bad = [
            v for v in results.response.get("violations", []) if v.get("impact") in ("serious", "critical")
        ]
        report = "\n".join(
            f"{v['impact']}: {v['id']}: {v['help']} ({len(v.get('nodes', []))} elements, e.g. "
            f"{(v.get('nodes') or [{}])[0].get('target')})"
            for v in bad
        )
        assert not bad, f"axe found serious or critical accessibility problems on {page.url}:\n{report}"

    return check


@pytest.fixture
def store_of() -> Callable[[FastAPI], Any]:
    """The metadata store of an app (``store_of(web_app)``)."""
    return lambda app: app.state.store

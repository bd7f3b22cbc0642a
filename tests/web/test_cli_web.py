"""``optout web create-user|users|set-role|unlock|token|serve`` as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.web.conftest import _free_port

from optout.web import accounts


def _optout(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optout", *args],
        env=env,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTOUT_")}
    env.update(OPTOUT_HOME=str(tmp_path / "home"), OPTOUT_ACTOR="it-admin", OPTOUT_MESH_NO_SANDBOX="1")
    return env


@pytest.mark.slow
def test_create_a_user_then_serve_and_sign_in(cli_env: dict[str, str]) -> None:
    pw = "a long passphrase for ada"
    r = _optout(["web", "create-user", "ada", "--role", "admin", "--password-stdin"], cli_env, pw + "\n")
    assert r.returncode == 0, r.stderr
    assert "created web user ada (Administrator)" in r.stdout and pw not in r.stdout + r.stderr
    r = _optout(["web", "create-user", "ada", "--role", "viewer", "--password-stdin"], cli_env, pw + "\n")
    assert r.returncode == 2 and "already exists" in r.stderr
    r = _optout(["web", "create-user", "bob", "--role", "viewer", "--password-stdin"], cli_env, "short\n")
    assert r.returncode == 2 and "12 characters" in r.stderr
    r = _optout(["web", "token", "create", "ada", "--name", "ci"], cli_env)
    assert r.returncode == 0
    token = r.stdout.strip()
    assert re.fullmatch(accounts._TOKEN.pattern, token)

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "optout", "web", "serve", "--port", str(port)],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/login", timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("optout web serve did not start") from None
                time.sleep(0.2)
        # httpx gives up after 5 s by default: too soon for a real server on a busy machine
        with httpx.Client(base_url=base, timeout=60) as c:
            page = c.get("/login")
            assert page.status_code == 200 and "server" not in page.headers
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            r2 = c.post("/login", data={"username": "ada", "password": pw, "csrf_token": csrf})
            assert r2.status_code == 303
            assert c.get("/users").status_code == 200
        api = httpx.get(f"{base}/api/dashboard", headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert api.status_code == 200 and api.json()["audit"]["ok"] is True
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert oct(os.stat(Path(cli_env["OPTOUT_HOME"]) / "web.key").st_mode & 0o777) == "0o600"


def _main(args: list[str], capsys: pytest.CaptureFixture[str], stdin: str = "") -> tuple[int, str, str]:
    """Run the CLI in this process (as the `optout` script does), with ``stdin``."""
    import io

    from optout.cli import main

    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdin = saved
    out = capsys.readouterr()
    return code, out.out, out.err


def test_set_role_unlock_disable_from_the_cli(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for k in [k for k in os.environ if k.startswith("OPTOUT_")]:
        monkeypatch.delenv(k)
    for k, v in cli_env.items():
        if k.startswith("OPTOUT_"):
            monkeypatch.setenv(k, v)
    pw = "a long passphrase for cli"
    for name, role in (("ada", "admin"), ("bob", "viewer")):
        assert _main(["web", "create-user", name, "--role", role, "--password-stdin"], capsys, pw)[0] == 0
    code, out, _ = _main(["web", "set-role", "bob", "--role", "ig_lead"], capsys)
    assert code == 0 and "bob is now IG lead" in out
    assert _main(["web", "unlock", "bob"], capsys)[0] == 0
    assert _main(["web", "disable", "bob"], capsys)[0] == 0
    code, _, err = _main(["web", "disable", "ada"], capsys)
    assert code == 2 and "only active administrator" in err
    assert _main(["web", "set-role", "nobody", "--role", "viewer"], capsys)[0] == 9
    code, out, err = _main(["web", "token", "create", "ada"], capsys)
    assert code == 0 and "shown only this once" in err
    token_id = out.strip().split("_")[1]
    code, out, _ = _main(["web", "token", "list"], capsys)
    assert code == 0 and token_id in out and "active" in out
    assert _main(["web", "token", "revoke", token_id], capsys)[0] == 0
    assert "revoked" in _main(["web", "token", "list", "ada"], capsys)[1]
    code, out, _ = _main(
        ["web", "set-password", "bob", "--password-stdin"], capsys, "a new long passphrase\n"
    )
    assert code == 0

"""``optout doctor`` as a user runs it: a clean installation made with a permissive umask (exit 0),
and a deliberately broken one (every finding reported with its fix; exit 1; no secret, no NHS
number printed)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from tests.support.printed import nhs_numbers_in
from tests.support.tamper import open_for_tampering

from optout import atomic, audit
from optout.check import cache, state
from optout.check.request import dat_bytes
from optout.config import MeshSettings, Settings
from optout.nhs_number import synthetic
from optout.service import Register
from optout.store import Store

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "examples" / "flows" / "research-s251.yaml"
SECRET = "s3cret-Pa55word-never-shown"


def optout(
    home: Path, *args: str, env: dict[str, str] | None = None, umask: int = 0o000
) -> subprocess.CompletedProcess[str]:
    """The real command line, in a subprocess with ``umask`` (000 by default: a permissive one)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPTOUT_", "PG"))}
    tmp = home.parent / "tmp"  # its own system temp folder: other processes' leftovers are not ours
    tmp.mkdir(exist_ok=True)
    full = {
        **base,
        "OPTOUT_HOME": str(home),
        "OPTOUT_ACTOR": "ig-lead",
        "OPTOUT_MESH_NO_SANDBOX": "1",
        "TMPDIR": str(tmp),
    }
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "optout", *args],
        env=full,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=180,
        umask=umask,
    )


def open_to_others(root: Path) -> list[str]:
    return [
        f"{p} {stat.S_IMODE(p.lstat().st_mode):04o}"
        for p in [root, *root.rglob("*")]
        if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]


def no_nhs_number(*texts: str) -> None:
    for text in texts:
        assert nhs_numbers_in(text) == [], "an NHS number was printed"


def _mesh_env(settings: MeshSettings, prefix: str = "OPTOUT_MESH_") -> dict[str, str]:
    return {
        f"{prefix}URL": str(settings.url),
        f"{prefix}MAILBOX": str(settings.mailbox),
        f"{prefix}PASSWORD": str(settings.password),
        f"{prefix}SHARED_KEY": str(settings.shared_key),
    }


@pytest.mark.slow
def test_clean_installation_made_with_a_permissive_umask(
    tmp_path: Path, org_settings: MeshSettings, service_settings: MeshSettings
) -> None:
    home = tmp_path / "home"
    org = {**_mesh_env(org_settings), "OPTOUT_MESH_RECIPIENT": org_settings.recipient}
    cohort = tmp_path / "cohort.csv"
    cohort.write_text("nhs_number\n" + "".join(f"{n}\n" for n in synthetic(300, seed=8)[:200]))

    steps = [
        ("service", "seed", "--population", "300", "--opt-out-rate", "0.1", "--seed", "8"),
        ("flow", "add", str(FLOW), "--id", "hf"),
        ("cache", "keygen"),
    ]
    for args in steps:
        r = optout(home, *args)
        assert r.returncode == 0, (args, r.stderr)
    # a check that fails before sending (MESH not configured) leaves no request file behind
    r = optout(home, "check", str(cohort), "--out", str(tmp_path / "never.dat"))
    assert r.returncode == 2 and "MESH is not configured" in r.stderr
    assert list((home / "check" / "requests").iterdir()) == []
    # a real one: sent, answered by the reference service (run as the same account), collected
    r = optout(home, "check", str(cohort), "--out", str(tmp_path / "cleaned.dat"), "--no-wait", env=org)
    assert r.returncode == 0, r.stderr
    local_id = re.search(r"optout-oneoff-[A-Za-z0-9-]+", r.stdout)
    assert local_id is not None
    r = optout(home, "service", "run", "--once", env=_mesh_env(service_settings, "OPTOUT_SERVICE_MESH_"))
    assert r.returncode == 0, r.stderr
    r = optout(home, "check", "--collect", local_id.group(0), "--wait", "60s", env=org)
    assert r.returncode == 0, r.stderr
    listing = optout(home, "check", "--list", "--json")
    assert sorted(x["state"] for x in json.loads(listing.stdout)) == ["collected", "discarded"]

    assert open_to_others(home) == []  # nothing under OPTOUT_HOME readable by another account
    assert list((home / "check" / "requests").iterdir()) == []  # no cohort kept
    assert stat.S_IMODE((tmp_path / "cleaned.dat").stat().st_mode) == 0o600

    head = json.loads(optout(home, "audit", "verify", "--json").stdout)["head"]["hash"]
    r = optout(home, "doctor", "--expect-head", head, env=org)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no findings: the installation is clean" in r.stdout
    r = optout(home, "doctor", "--json", env=org)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["ok"] and report["findings"] == []
    assert {c["name"] for c in report["checks"]} >= {
        "home",
        "files",
        "key",
        "cache",
        "requests",
        "temp",
        "database",
        "audit",
        "mesh",
        "config",
    }
    assert str(org_settings.password) not in r.stdout and str(org_settings.shared_key) not in r.stdout
    no_nhs_number(r.stdout, r.stderr)


def test_an_empty_installation_is_clean(tmp_path: Path) -> None:
    r = optout(tmp_path / "nothing-yet", "doctor")
    assert r.returncode == 0, r.stdout
    assert not (tmp_path / "nothing-yet").exists()  # doctor creates nothing


def _broken_home(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An installation with one of each thing doctor must find."""
    home = tmp_path / "home"
    now = datetime.now(UTC)
    settings = Settings(home=home, actor="ig-lead")
    store = Store(settings.db_url)
    for i in range(3):
        audit.record(store, f"test.step{i}", actor="ig-lead", details={"n": i})
    # a request left prepared two days ago, its cohort still on disk; a file no request names
    body = dat_bytes(np.sort(synthetic(5, seed=1)))
    req_dir = atomic.private_dir(home / "check" / "requests")
    stale = req_dir / "optout-oneoff-stale.dat"
    stale.write_bytes(body)
    os.chmod(stale, 0o600)
    state.create(
        store,
        local_id="optout-oneoff-stale",
        mode="one-off",
        created_at=now - timedelta(days=2),
        cohort_sha256=hashlib.sha256(body).hexdigest(),
        cohort_size=5,
        out_path=None,
        details={"request_path": str(stale)},
    )
    orphan = req_dir / "optout-oneoff-orphan.dat"
    orphan.write_bytes(body)
    os.chmod(orphan, 0o600)
    old = (now - timedelta(days=2)).timestamp()
    os.utime(orphan, (old, old))
    store.dispose()
    # the service register readable by everyone, as an older version left it
    Register(home / "service").close()
    os.chmod(home / "service" / "register.sqlite", 0o644)
    # the cache key readable by others, and a cache that expired
    key = cache.keygen(home / "cache.key")
    raw = base64.b64decode(key.read_bytes())
    cache.write_cache(
        np.sort(synthetic(5, seed=2)),
        refreshed_at=now - timedelta(days=8),
        cohort_sha256="0" * 64,
        cohort_size=5,
        local_id="optout-cache-old",
        request_message_id=None,
        reply_message_ids=[],
        settings=settings,
        key=raw,
        now=now - timedelta(days=8),
    )
    os.chmod(key, 0o644)
    # the metadata database and OPTOUT_HOME open to others
    os.chmod(home / "optout.db", 0o644)
    os.chmod(home, 0o755)
    # the audit trail changed behind optout's back
    con = open_for_tampering(home / "optout.db")
    con.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 2")
    con.commit()
    con.close()
    # optout.toml with a secret, plain http to a MESH server elsewhere (and half the settings)
    config = tmp_path / "optout.toml"
    config.write_text(
        f'[mesh]\nurl = "http://mesh.example.org"\nmailbox = "X26ORG001"\npassword = "{SECRET}"\n'
    )
    # a spill folder a killed process left (in the temporary folder the helper gives the commands)
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    (tmp / f"optout-spill-{int(dead.stdout)}-left").mkdir(mode=0o700)
    return home, {"OPTOUT_CONFIG": str(config)}


EXPECTED = {
    "home-open",
    "file-open",
    "key-open",
    "cache-expired",
    "request-stale-prepared",
    "request-orphan",
    "temp-leftover",
    "audit-broken",
    "mesh-incomplete",
    "mesh-http",
    "config-secret",
}


def test_a_broken_installation_reports_each_finding(tmp_path: Path) -> None:
    home, env = _broken_home(tmp_path)
    r = optout(home, "doctor", "--json", env=env, umask=0o022)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert not report["ok"] and report["exit_code"] == 1
    codes = {f["code"] for f in report["findings"]}
    assert codes >= EXPECTED, EXPECTED - codes
    opened = {f["message"].split(" may be ")[0] for f in report["findings"] if f["code"] == "file-open"}
    assert opened == {str(home / "service" / "register.sqlite"), str(home / "optout.db")}
    assert all(f["fix"] for f in report["findings"])
    # the text form: each finding with how to fix it
    text = optout(home, "doctor", env=env, umask=0o022)
    assert text.returncode == 1
    assert text.stdout.count("how to fix:") == len(report["findings"])
    assert f"chmod 600 {home / 'service' / 'register.sqlite'}" in text.stdout
    assert f"chmod 700 {home}" in text.stdout
    for out in (r, text):
        assert SECRET not in out.stdout + out.stderr
        no_nhs_number(out.stdout, out.stderr)
    # nothing was changed by looking
    assert stat.S_IMODE((home / "optout.db").stat().st_mode) == 0o644
    assert (home / "check" / "requests" / "optout-oneoff-stale.dat").exists()


def test_the_next_check_list_cleans_up_what_doctor_reported(tmp_path: Path) -> None:
    home, env = _broken_home(tmp_path)
    for p in [home, *home.rglob("*")]:
        os.chmod(p, 0o700 if p.is_dir() else 0o600)
    r = optout(home, "check", "--list")
    assert r.returncode == 0, r.stderr
    assert "discarded" in r.stdout
    assert list((home / "check" / "requests").iterdir()) == []
    codes = {f["code"] for f in json.loads(optout(home, "doctor", "--json", env=env).stdout)["findings"]}
    assert not codes & {"request-stale-prepared", "request-orphan", "file-open", "home-open", "key-open"}


def test_postgresql_without_tls_to_another_host(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://optout:{SECRET}@db.example.org:5432/optout"
    r = optout(tmp_path / "home", "doctor", "--json", env={"OPTOUT_DB_URL": url})
    assert r.returncode == 1
    codes = {f["code"] for f in json.loads(r.stdout)["findings"]}
    assert "db-no-tls" in codes
    assert SECRET not in r.stdout + r.stderr
    # TLS required: that finding goes (the database itself is then not reachable from here)
    tls = {"OPTOUT_DB_URL": url + "?sslmode=verify-full&connect_timeout=2"}
    local = optout(tmp_path / "home", "doctor", "--json", env=tls)
    assert "db-no-tls" not in {f["code"] for f in json.loads(local.stdout)["findings"]}
    assert SECRET not in local.stdout + local.stderr


def test_doctor_leaves_no_trace_of_itself(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert optout(home, "flow", "add", str(FLOW), "--id", "hf").returncode == 0
    before = sorted(str(p) for p in home.rglob("*"))
    # the command closed the store as it ended: SQLite folded its -wal file back in
    assert not [p for p in before if p.endswith(("-wal", "-shm"))], before
    assert optout(home, "doctor").returncode == 0
    assert sorted(str(p) for p in home.rglob("*")) == before
    shutil.rmtree(home)

"""``optout check`` and ``optout cache`` as a user runs them, against a real mesh-sandbox."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from optout.config import MeshSettings
from optout.nhs_number import synthetic

POPULATION = 1000
SEED = 8


@pytest.fixture
def env(tmp_path: Path, org_settings: MeshSettings, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTOUT_CACHE_KEY", raising=False)
    monkeypatch.delenv("OPTOUT_DB_URL", raising=False)
    monkeypatch.delenv("OPTOUT_CONFIG", raising=False)
    monkeypatch.setenv("OPTOUT_MESH_NO_SANDBOX", "1")
    monkeypatch.setenv("OPTOUT_HOME", str(home))
    monkeypatch.setenv("OPTOUT_ACTOR", "tester")
    monkeypatch.setenv("OPTOUT_MESH_URL", str(org_settings.url))
    monkeypatch.setenv("OPTOUT_MESH_MAILBOX", str(org_settings.mailbox))
    monkeypatch.setenv("OPTOUT_MESH_PASSWORD", str(org_settings.password))
    monkeypatch.setenv("OPTOUT_MESH_SHARED_KEY", str(org_settings.shared_key))
    monkeypatch.setenv("OPTOUT_MESH_RECIPIENT", org_settings.recipient)
    return home


@pytest.fixture
def service(central_service):  # type: ignore[no-untyped-def]
    central_service.register.seed(POPULATION, 0.1, seed=SEED)
    central_service.register.publish()
    return central_service


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from optout.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _people(n: int) -> np.ndarray:
    return synthetic(POPULATION, seed=SEED)[:n]


def _cohort(tmp_path: Path, n: int = 200, name: str = "cohort.csv", extra: str = "") -> Path:
    p = tmp_path / name
    p.write_text("nhs_number\n" + "".join(f"{v}\n" for v in _people(n)) + extra)
    return p


def _local_id(text: str) -> str:
    m = re.search(r"optout check --collect (\S+)", text)
    assert m, text
    return m.group(1)


def test_check_no_wait_collect_apply(tmp_path: Path, env: Path, service, capsys) -> None:  # type: ignore[no-untyped-def]
    cohort = _cohort(tmp_path, extra="12345\n")
    code, out, err = run(capsys, "check", str(cohort), "--out", "cleaned.dat", "--no-wait")
    assert code == 0, err
    assert "wrong length: 1 row (row 201)" in err  # withheld, by class and row
    lid = _local_id(out)
    code, out, err = run(capsys, "check", "--collect", lid)
    assert code == 7 and f"optout check --collect {lid}" in err
    service.responder.run_once()
    code, out, err = run(capsys, "check", "--collect", lid)
    assert code == 0, err
    assert "cleaned list written" in out and "disclose by" in out
    for n in _people(200)[:20]:
        assert str(int(n)) not in out + err
    code, out, _ = run(capsys, "check", "--list", "--json")
    assert code == 0 and json.loads(out)[0]["state"] == "collected"
    code, out, _ = run(capsys, "check", "--list")
    assert code == 0 and lid in out
    table = tmp_path / "patients.csv"
    table.write_text("nhs_number,x\n" + "".join(f"{p},1\n" for p in _people(30)))
    code, out, err = run(capsys, "apply", str(table), "--cleaned-list", "cleaned.dat", "--out", "rel")
    assert code == 0, err
    assert json.loads((tmp_path / "rel" / "release.json").read_text())["check"]["source"] == "one-off"


def test_check_waits_with_the_responder_running(
    tmp_path: Path,
    env: Path,
    service,
    service_settings: MeshSettings,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    """The real rhythm: the command polls while the service answers on its own (another thread)."""
    import threading

    from optout.mesh import MeshMailbox
    from optout.service import Register, Responder

    stop = threading.Event()

    def serve() -> None:  # SQLite objects belong to their thread: open the register here
        with Register(service.path, clock=service.clock) as register, MeshMailbox(service_settings) as box:
            Responder(register, box, clock=service.clock).run_forever(stop, 0.2)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        # a generous wait (the command returns as soon as the reply is in): on a busy machine
        # the responder thread may be slow to get a turn
        code, _, err = run(capsys, "check", str(_cohort(tmp_path)), "--out", "cleaned.dat", "--wait", "4m")
    finally:
        stop.set()
        t.join(10)
    assert code == 0, err
    assert (tmp_path / "cleaned.dat").exists() and (tmp_path / "cleaned.dat.json").exists()


@pytest.mark.parametrize(
    ("content", "needle"),
    [("", "no NHS numbers"), ("nhs_number\n1\nabc\n\n", "none of the")],
)
def test_nothing_valid_exit_3_nothing_sent(
    tmp_path: Path,
    env: Path,
    capsys,
    service_settings: MeshSettings,
    content: str,
    needle: str,  # type: ignore[no-untyped-def]
) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    code, _, err = run(capsys, "check", str(p), "--out", "cleaned.dat")
    assert code == 3 and (needle in err or "no data rows" in err or "empty" in err)
    from optout.mesh import MeshMailbox

    with MeshMailbox(service_settings) as box:
        assert list(box.inbox()) == []


def test_usage_errors(tmp_path: Path, env: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cohort = _cohort(tmp_path)
    assert run(capsys, "check")[0] == 2
    assert run(capsys, "check", str(cohort), "--out", "c.dat", "--wait", "1h", "--no-wait")[0] == 2
    assert run(capsys, "check", str(cohort), "--out", "c.dat", "--wait", "soon")[0] == 2
    assert run(capsys, "check", str(cohort), "--out", "c.dat", "--subject", "a:b")[0] == 2
    (tmp_path / "exists.dat").write_text("x")
    assert run(capsys, "check", str(cohort), "--out", "exists.dat")[0] == 5
    code, _, err = run(capsys, "check", "--collect", "optout-oneoff-nope")
    assert code == 9 and "no check request" in err


def test_cache_cli(tmp_path: Path, env: Path, service, capsys) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsys, "cache", "status")
    assert code == 4
    code, _, err = run(capsys, "cache", "refresh", str(_cohort(tmp_path, n=POPULATION)))
    assert code == 2 and "optout cache keygen" in err  # no key: refused before sending
    code, out, _ = run(capsys, "cache", "keygen")
    assert code == 0 and (env / "cache.key").exists()
    assert (os.stat(env / "cache.key").st_mode & 0o777) == 0o600
    assert run(capsys, "cache", "keygen")[0] == 5  # never overwrites a key
    code, out, err = run(capsys, "cache", "refresh", str(_cohort(tmp_path, n=POPULATION)), "--no-wait")
    assert code == 0, err
    service.responder.run_once()
    code, out, err = run(capsys, "check", "--collect", _local_id(out))
    assert code == 0 and "temporary cache refreshed" in out, err
    code, out, _ = run(capsys, "cache", "status")
    assert code == 0 and "fresh" in out and "expires" in out and "refresh due" in out
    code, out, _ = run(capsys, "cache", "status", "--json")
    doc = json.loads(out)
    assert doc["state"] == "fresh" and doc["cohort_size"] == POPULATION
    for n in _people(POPULATION)[:50]:
        assert str(int(n)) not in out
    table = tmp_path / "patients.csv"
    table.write_text("nhs_number,x\n" + "".join(f"{p},1\n" for p in _people(30)))
    code, out, err = run(capsys, "apply", str(table), "--cache", "--out", "rel")
    assert code == 0, err
    check = json.loads((tmp_path / "rel" / "release.json").read_text())["check"]
    assert check["source"] == "cache" and "13 days" in check["deadline_rule"]
    assert run(capsys, "apply", str(table), "--cache", "--cleaned-list", "x.dat", "--out", "rel2")[0] == 2
    # a key file others can read is refused, with the fix
    os.chmod(env / "cache.key", 0o644)
    code, _, err = run(capsys, "apply", str(table), "--cache", "--out", "rel3")
    assert code == 2 and "chmod 600" in err
    os.chmod(env / "cache.key", 0o600)
    # tampered: exit 8
    blob = bytearray((env / "cache" / "allow-list.optout-cache").read_bytes())
    blob[-5] ^= 1
    (env / "cache" / "allow-list.optout-cache").write_bytes(bytes(blob))
    assert run(capsys, "cache", "status")[0] == 8
    assert run(capsys, "apply", str(table), "--cache", "--out", "rel4")[0] == 8
    code, out, _ = run(capsys, "cache", "destroy", "--yes")
    assert code == 0 and "deleted" in out
    assert run(capsys, "cache", "status")[0] == 4
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0

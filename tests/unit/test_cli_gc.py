"""The command line runs with the cyclic garbage collector off (a command loads its libraries and
ends), except the commands that run until stopped, which turn it back on."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from optout.cli import main


@pytest.fixture
def collector_off() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def test_the_script_runs_a_command_with_the_collector_off() -> None:
    code = (
        "import atexit, gc, sys\n"
        "from optout.cli import run\n"
        "atexit.register(lambda: print('collector on:', gc.isenabled()))\n"
        "sys.argv = ['optout', '--version']\n"
        "run()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "collector on: False" in out


def test_web_serve_turns_the_collector_back_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector_off: None
) -> None:
    import uvicorn

    monkeypatch.setenv("OPTOUT_HOME", str(tmp_path / "home"))
    seen: list[bool] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.append(gc.isenabled()))
    main(["web", "serve", "--port", "9"])
    assert seen == [True]


def test_service_run_turns_the_collector_back_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collector_off: None
) -> None:
    import optout.mesh
    import optout.service
    from optout.cli import service as service_cli

    monkeypatch.setenv("OPTOUT_HOME", str(tmp_path / "home"))
    seen: list[bool] = []

    class Mailbox:
        def __init__(self, settings: Any) -> None: ...
        def __enter__(self) -> Mailbox:
            return self

        def __exit__(self, *exc: object) -> None: ...
        def handshake(self) -> None: ...

    class Responder:
        def __init__(self, register: Any, mailbox: Any) -> None: ...
        def run_forever(self, stop: Any, poll_interval: float) -> None:
            seen.append(gc.isenabled())

    monkeypatch.setattr(service_cli, "_service_mesh_settings", lambda: SimpleNamespace(mailbox="X", url="u"))
    monkeypatch.setattr(optout.mesh, "MeshMailbox", Mailbox)
    monkeypatch.setattr(optout.service, "Responder", Responder)
    monkeypatch.setattr(service_cli.signal, "signal", lambda *a: None)  # pytest's handlers stay
    main(["service", "run"])
    assert seen == [True]


@pytest.mark.parametrize(("given", "seen"), [(None, "1"), ("3", "3")])
def test_the_script_asks_for_one_blas_thread_unless_told(given: str | None, seen: str) -> None:
    """NumPy's OpenBLAS would start a spinning thread per core; no command does linear algebra.
    Set before NumPy loads (the script's ``run``), and a setting in the environment is kept."""
    from tests.support.cli import python_stdout

    code = (
        "import atexit, os, sys\n"
        "from optout.cli import run\n"
        "atexit.register(lambda: print('blas:', os.environ.get('OPENBLAS_NUM_THREADS')))\n"
        "assert 'numpy' not in sys.modules  # the setting would come too late\n"
        "sys.argv = ['optout', '--version']\n"
        "run()\n"
    )
    assert f"blas: {seen}" in python_stdout(code, env_var="OPENBLAS_NUM_THREADS", given=given)

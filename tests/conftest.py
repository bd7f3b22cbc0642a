"""Shared fixtures: a real mesh-sandbox for the whole session, reset before each test that uses it.

- ``mesh_sandbox`` (session): NHS England's mesh-sandbox started as a process (uvicorn, file mode,
  loopback, a free port, a random shared key) in a unique temp folder; stopped at the end.
- ``mesh`` (function): the same sandbox, every mailbox emptied before the test.
- ``org_settings`` / ``service_settings`` (function): MeshSettings for the two mailboxes.
- ``central_service`` (function): a reference central service (``Register`` + ``Responder`` on the
  service mailbox); call ``central_service.responder.run_once()`` to answer pending requests.
- ``spark`` (session): one local SparkSession (Java 17) for every Spark test; ``--engine spark``
  uses the active session, so ``apply_opt_outs(..., engine="spark")`` runs on it.

Hypothesis runs under the ``optout`` profile (below): no test is timed, so no per-example
deadline and no "too slow" health check, which fail a correct test on a busy machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from optout.config import MeshSettings
from optout.service.sandbox import SandboxInfo, reset_sandbox, start_sandbox, stop_sandbox
from optout.service.sandbox import org_settings as _org_settings
from optout.service.sandbox import service_settings as _service_settings

if TYPE_CHECKING:
    from optout.mesh import MeshMailbox
    from optout.service import Register, Responder

# Built on the profile Hypothesis picked (its "ci" profile, derandomized, when CI is set; random
# examples, replayed from its database once they failed, on a developer's machine). A test's own
# @settings(suppress_health_check=[...]) replaces this list: add too_slow to it there.
settings.register_profile("optout", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("optout")

# How long a real process (uvicorn, PostgreSQL) may take to answer on a busy machine before a
# fixture gives up; a wait on a condition, over as soon as it holds.
START_TIMEOUT = 120.0


@pytest.fixture(scope="session")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxInfo]:
    state_dir = tmp_path_factory.mktemp("mesh-sandbox")
    info = start_sandbox(state_dir, with_responder=False, ready_timeout=START_TIMEOUT)
    try:
        yield info
    finally:
        stop_sandbox(state_dir)


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One SparkSession for the test session: local[2], few shuffle partitions, no UI, ANSI mode on
    (a failing cast would quote its value: the engine must never make one), log level WARN."""
    from pyspark.sql import SparkSession

    root = tmp_path_factory.mktemp("spark")
    session = (
        SparkSession.builder.master("local[2]")
        .appName("optout-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(root / "warehouse"))
        .config("spark.local.dir", str(root / "local"))
        .config("spark.driver.memory", "1g")
        .config("spark.driver.extraJavaOptions", "-XX:+UseSerialGC -XX:TieredStopAtLevel=1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("WARN")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture
def mesh(mesh_sandbox: SandboxInfo) -> SandboxInfo:
    reset_sandbox(mesh_sandbox)
    return mesh_sandbox


@pytest.fixture
def org_settings(mesh: SandboxInfo) -> MeshSettings:
    return _org_settings(mesh)


@pytest.fixture
def service_settings(mesh: SandboxInfo) -> MeshSettings:
    return _service_settings(mesh)


@pytest.fixture
def no_sandbox_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the MESH settings from falling back to a developer's running sandbox."""
    monkeypatch.setenv("OPTOUT_MESH_NO_SANDBOX", "1")


class FixedClock:
    """An injectable clock for the register and responder: ``clock.now += timedelta(...)``."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class CentralService:
    register: Register
    responder: Responder
    mailbox: MeshMailbox
    clock: FixedClock
    path: Path


@pytest.fixture
def central_service(tmp_path: Path, service_settings: MeshSettings) -> Iterator[CentralService]:
    from optout.mesh import MeshMailbox
    from optout.service import Register, Responder

    clock = FixedClock()
    path = tmp_path / "central-register"
    register = Register(path, clock=clock)
    mailbox = MeshMailbox(service_settings, clock=lambda: datetime.now(UTC))
    responder = Responder(register, mailbox, clock=clock)
    try:
        yield CentralService(register, responder, mailbox, clock, path)
    finally:
        mailbox.close()
        register.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the sandbox fixtures get the ``sandbox`` marker (``-m "not sandbox"`` to skip)."""
    wanted = {"mesh_sandbox", "mesh", "org_settings", "service_settings", "central_service"}
    for item in items:
        if wanted & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sandbox)

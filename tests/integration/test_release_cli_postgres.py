"""The flow register and the release lifecycle on a real PostgreSQL server (the same code as on
SQLite: JSON columns, versions, the disclosure row's generated id, the audit chain)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.support.postgres import postgres_server
from tests.support.releases import make_release

from optout import audit
from optout.errors import PolicyRefusal
from optout.policy.register import add_flow, edit_flow, history
from optout.release.lifecycle import disclose, get_release, list_releases, withdraw
from optout.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FLOW = {
    "name": "Heart failure study",
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential", "nhs_number": "present"},
    "purpose": "research",
    "legal_basis": "s251",
    "recipient": {"name": "University of Exampleshire", "type": "university", "role": "third-party"},
}


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_flows_and_releases_on_postgres(pg_url: str, tmp_path: Path) -> None:
    store = Store(pg_url)
    add_flow(store, FLOW, flow_id="pg-hf", actor="dpo", now=T0)
    make_release(store, tmp_path, "pg-r1", checked_at=T0, flow_id="pg-hf", flow_version=1)
    make_release(store, tmp_path, "pg-r2", checked_at=T0, flow_id="pg-hf", flow_version=1)
    make_release(store, tmp_path, "pg-r3", checked_at=T0, source="cache", flow_id="pg-hf", flow_version=1)

    result = disclose(
        store, "pg-r1", to="University of Exampleshire", actor="dpo", now=T0 + timedelta(days=3)
    )
    assert result.disclosure.id >= 1 and get_release(store, "pg-r1").state() == "disclosed"
    withdraw(store, "pg-r3", reason="not needed", now=T0 + timedelta(days=3))

    edit_flow(
        store, "pg-hf", set_values=["purpose=[research, planning]"], actor="dpo", now=T0 + timedelta(days=4)
    )
    assert [v.version for v in history(store, "pg-hf")] == [1, 2]
    with pytest.raises(PolicyRefusal, match="changed purpose"):
        disclose(store, "pg-r2", to="University of Exampleshire", now=T0 + timedelta(days=5))

    states = {r.id: r.state(T0 + timedelta(days=5)) for r in list_releases(store, flow_id="pg-hf")}
    assert states == {"pg-r1": "disclosed", "pg-r2": "prepared", "pg-r3": "withdrawn"}
    actions = [e.action for e in audit.entries(store) if e.subject in ("pg-hf", "pg-r1", "pg-r3")]
    assert actions == ["flow.added", "release.disclosed", "release.withdrawn", "flow.edited"]
    store.dispose()

    env = {**os.environ, "OPTOUT_DB_URL": pg_url, "OPTOUT_HOME": str(tmp_path / "home")}
    r = subprocess.run(
        [sys.executable, "-m", "optout", "release", "list", "--flow", "pg-hf", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert {d["id"] for d in json.loads(r.stdout)} == {"pg-r1", "pg-r2", "pg-r3"}

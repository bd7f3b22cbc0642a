"""Recording a release before it is visible, and settling an interrupted apply, on a real
PostgreSQL server: each state change and its audit entry in one transaction, a compare-and-set on
the state, so several processes reconciling at once record each outcome once. (``releases.state``
is a plain VARCHAR(16) with no CHECK constraint or enum, so the new states need no migration.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from tests.support.postgres import postgres_server
from tests.support.releases import make_preparing_release

from optout import audit
from optout.dat import write_dat
from optout.nhs_number import synthetic
from optout.release import apply_opt_outs
from optout.release.recover import reconcile
from optout.store import Store, releases


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_apply_and_reconcile_on_postgres(pg_url: str, tmp_path: Path) -> None:
    store = Store(pg_url)
    people = synthetic(20, seed=9)
    extract = tmp_path / "episodes.csv"
    extract.write_text("nhs_number,los\n" + "".join(f"{n},1\n" for n in people), encoding="utf-8")
    write_dat(tmp_path / "cleaned.dat", np.sort(people[:15]))
    report = apply_opt_outs(
        [extract],
        out_dir=tmp_path / "out",
        cleaned_list=tmp_path / "cleaned.dat",
        checked_at=datetime.now(UTC) - timedelta(days=1),
        store=store,
    )
    assert [e.action for e in audit.entries(store) if e.subject == report.release_id] == [
        "release.preparing",
        "release.prepared",
    ]
    for i in range(6):
        make_preparing_release(store, tmp_path, f"pg-{i}", in_place=i % 2 == 0)
    stores = [Store(pg_url) for _ in range(3)]
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def run(s: Store) -> None:
        try:
            start.wait()
            reconcile(s)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    reconcile(store)
    with store.begin() as conn:
        states = dict(conn.execute(sa.select(releases.c.id, releases.c.state)).all())
    assert states == {
        report.release_id: "prepared",
        **{f"pg-{i}": "prepared" if i % 2 == 0 else "failed" for i in range(6)},
    }
    settled = [
        e.subject
        for e in audit.entries(store)
        if e.action in ("release.prepared", "release.failed") and (e.subject or "").startswith("pg-")
    ]
    assert sorted(settled) == [f"pg-{i}" for i in range(6)]
    assert audit.verify(store).ok
    for s in [store, *stores]:
        s.dispose()

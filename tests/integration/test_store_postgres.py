"""The metadata store on PostgreSQL: same migrations, same audit chain as on SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from tests.support.postgres import postgres_server

from optout import audit
from optout.store import Store, metadata


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def test_migrations_on_postgres_match_table_definitions(pg_url: str) -> None:
    store = Store(pg_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    store.dispose()
    assert diff == []


def test_audit_chain_on_postgres(pg_url: str) -> None:
    store = Store(pg_url)
    first = audit.record(store, "test.pg", actor="tester", details={"rows": 1})
    second = audit.record(store, "test.pg", actor="tester", details={"rows": 2})
    assert second.prev_hash == first.hash
    got = audit.entries(store)
    assert [e.hash for e in got][-2:] == [first.hash, second.hash]
    store.dispose()


def test_audit_log_is_append_only_on_postgres(pg_url: str) -> None:
    import sqlalchemy as sa

    store = Store(pg_url)
    audit.record(store, "test.pg", actor="tester")
    before = len(audit.entries(store))
    for statement in ("update audit_log set actor='mallory'", "delete from audit_log", "truncate audit_log"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.begin() as conn:
            conn.execute(sa.text(statement))
    assert len(audit.entries(store)) == before
    store.dispose()

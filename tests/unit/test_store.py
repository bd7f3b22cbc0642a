"""The metadata store: migrations and table definitions describe the same schema."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from optout import audit
from optout.store import Store, metadata


def test_migrations_match_table_definitions(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == [], f"write a migration for: {diff}"


def test_audit_chain_links_entries(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    a = audit.record(store, "test.one", actor="tester", details={"rows": 3})
    b = audit.record(store, "test.two", actor="tester", subject="x")
    assert a.prev_hash == audit.GENESIS
    assert b.prev_hash == a.hash and b.seq == a.seq + 1
    assert [e.hash for e in audit.entries(store)] == [a.hash, b.hash]


def test_audit_refuses_an_nhs_number(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    import pytest

    from optout.errors import OptoutError

    with pytest.raises(OptoutError):
        audit.record(store, "test", actor="t", details={"oops": "943 476 5919"})
    with sa.create_engine(store.url).connect() as conn:
        assert conn.execute(sa.text("select count(*) from audit_log")).scalar() == 0


def test_audit_log_is_append_only_in_the_database(tmp_path: Path) -> None:
    import pytest

    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    audit.record(store, "test.one", actor="tester")
    for statement in ("update audit_log set actor='mallory'", "delete from audit_log"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), store.begin() as conn:
            conn.execute(sa.text(statement))
    assert len(audit.entries(store)) == 1


def test_head_revision_is_alembics_head_and_an_old_database_is_upgraded(tmp_path: Path) -> None:
    """A database at HEAD_REVISION skips Alembic; one behind it is still upgraded."""
    from alembic.script import ScriptDirectory

    from optout import store as store_module

    script = ScriptDirectory.from_config(store_module._alembic_config("sqlite://"))
    assert script.get_current_head() == store_module.HEAD_REVISION

    url = f"sqlite:///{tmp_path / 'old.db'}"
    s = Store(url)
    assert store_module.at_head(s.engine)
    with s.begin() as conn:  # as a database made by the previous release: one revision behind
        conn.execute(sa.text("DROP TABLE checklist_tasks"))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0004'"))
    assert not store_module.at_head(s.engine)
    store_module.upgrade(s.engine)
    assert store_module.at_head(s.engine)
    assert "checklist_tasks" in sa.inspect(s.engine).get_table_names()

"""Alembic environment: run migrations on the connection the caller handed us."""

from alembic import context

from optout.store import metadata

target_metadata = metadata
connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - `alembic` CLI use
    from sqlalchemy import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()
context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

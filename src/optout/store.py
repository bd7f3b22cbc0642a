"""The metadata store: SQLite by default (``.optout/optout.db``), PostgreSQL by URL.

Holds what the organisation must be able to show an auditor: check requests and their state,
the register of data flows, releases and disclosures, and the hash-chained audit log.

It never holds an NHS number or any patient row. (The cleaned list itself lives in files the
user chose, or in the encrypted temporary cache; the set of opted-out people is never stored.)

Schema changes go through Alembic migrations in ``optout/migrations/versions``; ``open_store``
upgrades the database to the newest revision. ``tests/unit/test_store.py`` checks that the
migrations and the table definitions below describe the same schema.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from optout import atomic
from optout.errors import OutputError, UsageError

metadata = sa.MetaData()

# --- check requests (mode 1 one-off and mode 2 cache refresh), one row per LocalID -------------
check_requests = sa.Table(
    "check_requests",
    metadata,
    sa.Column("local_id", sa.String(64), primary_key=True),
    sa.Column("mode", sa.String(16), nullable=False),  # one-off | cache
    sa.Column("state", sa.String(16), nullable=False),  # optout.check.state.STATES
    sa.Column("created_at", sa.String(40), nullable=False),  # ISO 8601 UTC
    sa.Column("sent_at", sa.String(40)),
    sa.Column("answered_at", sa.String(40)),
    sa.Column("cohort_sha256", sa.String(64)),
    sa.Column("cohort_size", sa.Integer),
    sa.Column("sent_count", sa.Integer),
    sa.Column("returned_count", sa.Integer),
    sa.Column("request_message_id", sa.String(64)),
    sa.Column("notification_message_id", sa.String(64)),
    sa.Column("reply_message_id", sa.String(64)),
    sa.Column("out_path", sa.Text),
    sa.Column("details", sa.JSON, nullable=False, default=dict),
)

# --- the register of data flows ------------------------------------------------------------------
flows = sa.Table(
    "flows",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("owner", sa.Text),
    sa.Column("recipient", sa.Text),
    sa.Column("purpose", sa.String(64)),
    sa.Column("legal_basis", sa.String(64)),
    sa.Column("facts", sa.JSON, nullable=False, default=dict),
    sa.Column("decision", sa.String(32)),  # applies | does-not-apply | cannot-decide
    sa.Column("compliance", sa.String(32)),  # consent | anonymised | opt-out-applied | exempt
    sa.Column("exemption", sa.String(64)),
    sa.Column("review_date", sa.String(10)),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("facts_sha256", sa.String(64)),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("rules_version", sa.String(64)),  # the rules the decision was made under (migration 0003)
)

flow_versions = sa.Table(
    "flow_versions",
    metadata,
    sa.Column("flow_id", sa.String(64), sa.ForeignKey("flows.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("facts", sa.JSON, nullable=False, default=dict),
    sa.Column("decision", sa.String(32)),
    sa.Column("facts_sha256", sa.String(64)),
    sa.Column("changed_at", sa.String(40), nullable=False),
    sa.Column("changed_by", sa.Text),
    sa.Column("rules_version", sa.String(64)),
)

# --- releases and disclosures --------------------------------------------------------------------
releases = sa.Table(
    "releases",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("flow_id", sa.String(64), sa.ForeignKey("flows.id")),
    sa.Column("flow_version", sa.Integer),
    # preparing | prepared | disclosed | expired | withdrawn | failed (optout.release.lifecycle.STATES)
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("checked_at", sa.String(40)),
    sa.Column("check_source", sa.String(16)),  # one-off | cache | none
    sa.Column("deadline", sa.String(40)),
    sa.Column("out_dir", sa.Text),
    sa.Column("manifest_sha256", sa.String(64)),
    sa.Column("details", sa.JSON, nullable=False, default=dict),
)

disclosures = sa.Table(
    "disclosures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("release_id", sa.String(64), sa.ForeignKey("releases.id"), nullable=False),
    sa.Column("recipient", sa.Text, nullable=False),
    sa.Column("disclosed_at", sa.String(40), nullable=False),
    sa.Column("actor", sa.Text),
)

# --- the audit log (append-only, hash-chained; see optout.audit) ---------------------------------
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("details", sa.Text, nullable=False),  # canonical JSON, part of the hash
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


# --- the web app's local accounts (optout.web; migration 0004) -------------------------------------
# Passwords are argon2 hashes; session and API-token secrets are stored as SHA-256 digests only
# (they are long random values, so a plain digest is enough; the secret itself is never stored).
web_users = sa.Table(
    "web_users",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),  # admin | ig_lead | analyst | viewer
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("failed_logins", sa.Integer, nullable=False, default=0),
    sa.Column("locked_until", sa.String(40)),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("last_login_at", sa.String(40)),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id_sha256", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), sa.ForeignKey("web_users.username"), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("last_seen_at", sa.String(40), nullable=False),
    sa.Column("expires_at", sa.String(40), nullable=False),
    sa.Column("data", sa.JSON, nullable=False, default=dict),  # flash messages, wizard state
)

web_api_tokens = sa.Table(
    "web_api_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),  # the token's public prefix
    sa.Column("username", sa.String(64), sa.ForeignKey("web_users.username"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("last_used_at", sa.String(40)),
    sa.Column("revoked_at", sa.String(40)),
)

# --- compliance checklists (optout.policy.checklist; migration 0005) ---------------------------------
# What the organisation recorded against each task of checklist.yaml (002 PREPARING FOR COMPLIANCE,
# the 003 audit checklist); a task with no row is "not-started".
checklist_tasks = sa.Table(
    "checklist_tasks",
    metadata,
    sa.Column("checklist", sa.String(64), primary_key=True),
    sa.Column("task_id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # not-started | in-progress | done | not-applicable
    sa.Column("owner_role", sa.String(16)),
    sa.Column("due_date", sa.String(10)),
    sa.Column("notes", sa.Text),
    sa.Column("evidence", sa.JSON, nullable=False, default=list),  # "flow:ID", "release:ID", https://...
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("updated_by", sa.Text, nullable=False),
)

_MIGRATIONS = Path(__file__).with_name("migrations")
_lock = threading.Lock()
# every open store's connection pool, closed at exit: the command line ends with os._exit after
# the exit handlers, and SQLite folds its -wal file back into the database (and removes it) only
# when the last connection closes
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for engine in list(_engines):
        with contextlib.suppress(Exception):  # closing what is left; nothing to report at exit
            engine.dispose()


_upgraded: set[str] = set()


def _alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# The newest revision in migrations/versions (a test checks it is Alembic's head): a database
# already there is not handed to Alembic, whose import and check cost ~0.15 s per command.
HEAD_REVISION = "0005"


def at_head(engine: Engine) -> bool:
    """Is the database at :data:`HEAD_REVISION` (one row in alembic_version, that revision)?"""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError:  # no such table yet, or a database that cannot be read: upgrade says
        return False
    return [tuple(r) for r in rows] == [(HEAD_REVISION,)]


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema revision (idempotent)."""
    if at_head(engine):
        return
    from alembic import command

    cfg = _alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store:
    """A connection pool onto the metadata database, upgraded to the newest schema."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if str(path) not in ("", ":memory:"):
                try:
                    # owner-only by default: the folder (OPTOUT_HOME) if we make it, and the file
                    # itself, made 0600 before SQLite opens it (its -wal/-shm files take its mode)
                    atomic.private_dir(path.parent, tighten_existing=False)
                    if "?" not in str(path):  # not a URI with options (mode=ro, ...)
                        atomic.create_private_file(path)
                except OSError as exc:
                    raise OutputError(
                        f"cannot create the metadata store's folder {path.parent}: {exc.strerror}",
                        hint="set OPTOUT_HOME or [store] url in optout.toml to a writable place",
                    ) from None
        try:
            self.engine = sa.create_engine(url, future=True)
        except (sa.exc.ArgumentError, ModuleNotFoundError) as exc:
            raise UsageError(
                f"cannot use the metadata store URL ({exc.__class__.__name__})",
                hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB "
                "(pip install 'optout[postgres]' for PostgreSQL)",
            ) from None
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        _engines.add(self.engine)
        with _lock:
            if url not in _upgraded:
                upgrade(self.engine)
                _upgraded.add(url)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def open_store(url: str | None = None) -> Store:
    """Open the store named by ``url``, or by the settings (OPTOUT_DB_URL / optout.toml / default)."""
    if url is None:
        from optout.config import load_settings

        url = load_settings().db_url
    return Store(url)

"""Local accounts: users with a role, server-side sessions and API tokens, in the metadata store.

Every change is written together with its audit entry (``audit.record_change``), naming who
made it: ``web:<username>`` from the web app, the operating-system user from the CLI.

Roles (:data:`ROLES`), lowest to highest:

- ``viewer``: sees everything the app shows; changes nothing.
- ``analyst``: makes releases (uploads, checks against the check service, the cache), collects
  replies.
- ``ig_lead``: assesses and registers flows, discloses and withdraws releases, the compliance
  checklist, exports evidence.
- ``admin``: everything, and manages users.

Lock-out: ``max_failed_logins`` wrong passwords in a row lock the account for
``lockout_minutes`` (audited as ``web.login.locked``); an admin can unlock it sooner. A disabled
account cannot sign in and its sessions and tokens stop working at once.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from optout import audit
from optout.errors import NotFoundError, UsageError
from optout.store import Store, web_api_tokens, web_sessions, web_users
from optout.text import guard_free_text
from optout.web import security

ROLES = ("viewer", "analyst", "ig_lead", "admin")
ROLE_LABELS = {
    "viewer": "Viewer",
    "analyst": "Analyst",
    "ig_lead": "IG lead",
    "admin": "Administrator",
}
ROLE_HINTS = {
    "viewer": "Can see the dashboard, flows, releases, checks and the audit trail. Cannot change anything.",
    "analyst": "Can make releases: upload extracts, check them against the check service, refresh the cache.",
    "ig_lead": "Can assess and register flows, disclose and withdraw releases, keep the compliance "
    "checklist and export evidence.",
    "admin": "Can do everything, and manage users.",
}
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]")
TOKEN_PREFIX = "optout"


@dataclass(frozen=True)
class User:
    username: str
    role: str
    disabled: bool = False
    failed_logins: int = 0
    locked_until: str | None = None
    created_at: str | None = None
    last_login_at: str | None = None

    def has_role(self, *roles: str) -> bool:
        """True when the user holds one of ``roles`` (an admin holds them all)."""
        return self.role == "admin" or self.role in roles

    def locked(self, now: datetime | None = None) -> bool:
        if not self.locked_until:
            return False
        return datetime.fromisoformat(self.locked_until) > (now or datetime.now(UTC))

    @property
    def role_label(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


@dataclass(frozen=True)
class ApiToken:
    id: str
    username: str
    name: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="microseconds")


def _user(row: Any) -> User:
    return User(
        username=row.username,
        role=row.role,
        disabled=bool(row.disabled),
        failed_logins=row.failed_logins or 0,
        locked_until=row.locked_until,
        created_at=row.created_at,
        last_login_at=row.last_login_at,
    )


# --------------------------------------------------------------------------- validation


def username_problem(username: str) -> str | None:
    """Why ``username`` cannot be used (plain English), or None."""
    if not _USERNAME.fullmatch(username):
        return (
            "Username must be 3 to 64 characters: lower-case letters, numbers, dots, hyphens and "
            "underscores, starting and ending with a letter or number"
        )
    try:
        guard_free_text("the username", username, error=UsageError)
    except UsageError:
        return "Username must not contain an NHS number"
    return None


def check_username(username: str) -> str:
    problem = username_problem(username)
    if problem:
        raise UsageError(problem, hint="e.g. j.smith or care-home-manager")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
    return role


def _check_password(password: str, username: str) -> None:
    problem = security.password_problem(password, username)
    if problem:
        raise UsageError(problem, hint="use a long passphrase, e.g. three or more random words")


# --------------------------------------------------------------------------- users


def get_user(store: Store, username: str) -> User | None:
    with store.begin() as conn:
        row = conn.execute(sa.select(web_users).where(web_users.c.username == username)).first()
    return _user(row) if row else None


def require_user(store: Store, username: str) -> User:
    user = get_user(store, username)
    if user is None:
        raise NotFoundError(
            f"no web user called {username!r}", hint="see the users page, or `optout web users`"
        )
    return user


def list_users(store: Store) -> list[User]:
    with store.begin() as conn:
        rows = conn.execute(sa.select(web_users).order_by(web_users.c.username)).all()
    return [_user(r) for r in rows]


def create_user(store: Store, username: str, role: str, password: str, *, actor: str) -> User:
    """Add a user (audited ``web.user.created``); UsageError when the name is taken or invalid."""
    check_username(username)
    check_role(role)
    _check_password(password, username)
    pw_hash = security.hash_password(password)
    now = _iso(_now())

    def change(conn: Connection) -> bool:
        exists = conn.execute(sa.select(web_users.c.username).where(web_users.c.username == username)).first()
        if exists:
            return False
        conn.execute(
            web_users.insert().values(
                username=username,
                role=role,
                password_hash=pw_hash,
                disabled=False,
                failed_logins=0,
                created_at=now,
                updated_at=now,
            )
        )
        return True

    entry = audit.record_change(
        store, "web.user.created", change, actor=actor, subject=username, details={"role": role}
    )
    if entry is None:
        raise UsageError(f"a web user called {username!r} already exists", hint="choose another username")
    return require_user(store, username)


def _update_user(
    store: Store, username: str, action: str, values: dict[str, Any], *, actor: str, details: dict[str, Any]
) -> User:
    require_user(store, username)

    def change(conn: Connection) -> bool:
        res = conn.execute(
            web_users.update()
            .where(web_users.c.username == username)
            .values(**values, updated_at=_iso(_now()))
        )
        return res.rowcount == 1

    audit.record_change(store, action, change, actor=actor, subject=username, details=details)
    return require_user(store, username)


def _refuse_last_admin(store: Store, username: str) -> None:
    admins = [u for u in list_users(store) if u.role == "admin" and not u.disabled]
    if [u.username for u in admins] == [username]:
        raise UsageError(
            "this is the only active administrator",
            hint="make another user an administrator first",
        )


def set_role(store: Store, username: str, role: str, *, actor: str) -> User:
    check_role(role)
    user = require_user(store, username)
    if user.role == role:
        return user
    if user.role == "admin":
        _refuse_last_admin(store, username)
    return _update_user(
        store,
        username,
        "web.user.role_changed",
        {"role": role},
        actor=actor,
        details={"from": user.role, "to": role},
    )


def set_disabled(store: Store, username: str, disabled: bool, *, actor: str) -> User:
    user = require_user(store, username)
    if user.disabled == disabled:
        return user
    if disabled:
        _refuse_last_admin(store, username)
    action = "web.user.disabled" if disabled else "web.user.enabled"
    out = _update_user(store, username, action, {"disabled": disabled}, actor=actor, details={})
    if disabled:
        end_sessions(store, username)
    return out


def unlock(store: Store, username: str, *, actor: str) -> User:
    return _update_user(
        store,
        username,
        "web.user.unlocked",
        {"failed_logins": 0, "locked_until": None},
        actor=actor,
        details={},
    )


def set_password(store: Store, username: str, password: str, *, actor: str) -> User:
    _check_password(password, username)
    out = _update_user(
        store,
        username,
        "web.user.password_changed",
        {"password_hash": security.hash_password(password), "failed_logins": 0, "locked_until": None},
        actor=actor,
        details={},
    )
    end_sessions(store, username)
    return out


# --------------------------------------------------------------------------- signing in


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    problem: str | None  # "wrong" | "locked" | "disabled" | None when signed in
    locked_until: str | None = None


def authenticate(
    store: Store,
    username: str,
    password: str,
    *,
    max_failed: int,
    lockout_minutes: int,
    client: str | None = None,
    now: datetime | None = None,
) -> LoginResult:
    """Check a username and password, counting failures and locking the account (all audited).

    A wrong password, an unknown user and a disabled account take the same time (a hash is
    always verified). Unknown usernames are not audited (they may be anything someone typed).
    """
    t = now or _now()
    known = _USERNAME.fullmatch(username) is not None
    with store.begin() as conn:
        row = (
            conn.execute(sa.select(web_users).where(web_users.c.username == username)).first()
            if known
            else None
        )
    ok = security.verify_password(row.password_hash if row else None, password)
    if row is None:
        return LoginResult(None, "wrong")
    user = _user(row)
    actor = f"web:{username}"
    details: dict[str, Any] = {"client": client} if client else {}
    if user.locked(t):
        audit.record(
            store, "web.login.refused", actor=actor, subject=username, details={**details, "reason": "locked"}
        )
        return LoginResult(None, "locked", user.locked_until)
    if not ok:
        failures = user.failed_logins + 1
        lock = failures >= max_failed
        until = _iso(t + timedelta(minutes=lockout_minutes)) if lock else None

        def fail(conn: Connection) -> bool:
            conn.execute(
                web_users.update()
                .where(web_users.c.username == username)
                .values(failed_logins=0 if lock else failures, locked_until=until)
            )
            return True

        if lock:
            audit.record_change(
                store,
                "web.login.locked",
                fail,
                actor=actor,
                subject=username,
                details={**details, "failures": failures, "locked_until": until},
            )
            return LoginResult(None, "locked", until)
        audit.record_change(
            store,
            "web.login.failed",
            fail,
            actor=actor,
            subject=username,
            details={**details, "failures": failures},
        )
        return LoginResult(None, "wrong")
    if user.disabled:
        audit.record(
            store,
            "web.login.refused",
            actor=actor,
            subject=username,
            details={**details, "reason": "disabled"},
        )
        return LoginResult(None, "disabled")
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": _iso(t)}
    if security.needs_rehash(row.password_hash):
        values["password_hash"] = security.hash_password(password)

    def succeed(conn: Connection) -> bool:
        conn.execute(web_users.update().where(web_users.c.username == username).values(**values))
        return True

    audit.record_change(store, "web.login", succeed, actor=actor, subject=username, details=details)
    return LoginResult(require_user(store, username), None)


# --------------------------------------------------------------------------- sessions


@dataclass(frozen=True)
class Session:
    id_sha256: str
    username: str
    created_at: str
    expires_at: str
    data: dict[str, Any]


def create_session(
    store: Store, username: str, *, max_hours: int, now: datetime | None = None
) -> tuple[str, Session]:
    """A new session for ``username``: (the cookie value, the stored row). The value is not stored."""
    t = now or _now()
    value = security.new_secret()
    sid = security.digest(value)
    row: dict[str, Any] = {
        "id_sha256": sid,
        "username": username,
        "created_at": _iso(t),
        "last_seen_at": _iso(t),
        "expires_at": _iso(t + timedelta(hours=max_hours)),
        "data": {},
    }
    with store.begin() as conn:
        conn.execute(web_sessions.delete().where(web_sessions.c.expires_at < _iso(t)))  # tidy
        conn.execute(web_sessions.insert().values(**row))
    return value, Session(sid, username, row["created_at"], row["expires_at"], {})


def load_session(
    store: Store, value: str, *, idle_minutes: int, now: datetime | None = None
) -> tuple[Session, User] | None:
    """The live session and its user for a cookie value, or None (expired, idle, user disabled)."""
    if not value or len(value) > 128:
        return None
    t = now or _now()
    sid = security.digest(value)
    with store.begin() as conn:
        row = conn.execute(sa.select(web_sessions).where(web_sessions.c.id_sha256 == sid)).first()
        if row is None:
            return None
        idle_limit = _iso(t - timedelta(minutes=idle_minutes))
        if row.expires_at <= _iso(t) or row.last_seen_at < idle_limit:
            conn.execute(web_sessions.delete().where(web_sessions.c.id_sha256 == sid))
            return None
        urow = conn.execute(sa.select(web_users).where(web_users.c.username == row.username)).first()
        if urow is None or urow.disabled:
            conn.execute(web_sessions.delete().where(web_sessions.c.id_sha256 == sid))
            return None
        # touching at most once a minute keeps writes down
        if row.last_seen_at < _iso(t - timedelta(minutes=1)):
            conn.execute(
                web_sessions.update().where(web_sessions.c.id_sha256 == sid).values(last_seen_at=_iso(t))
            )
    return Session(sid, row.username, row.created_at, row.expires_at, dict(row.data or {})), _user(urow)


def save_session_data(store: Store, session_id_sha256: str, data: dict[str, Any]) -> None:
    with store.begin() as conn:
        conn.execute(
            web_sessions.update().where(web_sessions.c.id_sha256 == session_id_sha256).values(data=data)
        )


def end_session(store: Store, session_id_sha256: str) -> None:
    with store.begin() as conn:
        conn.execute(web_sessions.delete().where(web_sessions.c.id_sha256 == session_id_sha256))


def end_sessions(store: Store, username: str) -> None:
    with store.begin() as conn:
        conn.execute(web_sessions.delete().where(web_sessions.c.username == username))


# --------------------------------------------------------------------------- API tokens


def _token(row: Any) -> ApiToken:
    return ApiToken(row.id, row.username, row.name, row.created_at, row.last_used_at, row.revoked_at)


def create_token(store: Store, username: str, name: str, *, actor: str) -> tuple[ApiToken, str]:
    """A new API token for ``username``: (its record, the secret, shown once and never stored)."""
    require_user(store, username)
    name = name.strip()
    if not name or len(name) > 100:
        raise UsageError("give the token a name of 1 to 100 characters", hint="e.g. nightly release script")
    guard_free_text("the token name", name, error=UsageError)
    token_id = secrets.token_hex(6)
    secret = f"{TOKEN_PREFIX}_{token_id}_{security.new_secret()}"
    now = _iso(_now())

    def change(conn: Connection) -> bool:
        conn.execute(
            web_api_tokens.insert().values(
                id=token_id,
                username=username,
                name=name,
                token_sha256=security.digest(secret),
                created_at=now,
            )
        )
        return True

    audit.record_change(
        store,
        "web.token.created",
        change,
        actor=actor,
        subject=username,
        details={"token_id": token_id, "name": name},
    )
    return ApiToken(token_id, username, name, now, None, None), secret


def list_tokens(store: Store, username: str | None = None) -> list[ApiToken]:
    q = sa.select(web_api_tokens).order_by(web_api_tokens.c.created_at.desc())
    if username is not None:
        q = q.where(web_api_tokens.c.username == username)
    with store.begin() as conn:
        return [_token(r) for r in conn.execute(q).all()]


def get_token(store: Store, token_id: str) -> ApiToken | None:
    with store.begin() as conn:
        row = conn.execute(sa.select(web_api_tokens).where(web_api_tokens.c.id == token_id)).first()
    return _token(row) if row else None


def revoke_token(store: Store, token_id: str, *, actor: str) -> ApiToken:
    token = get_token(store, token_id)
    if token is None:
        raise NotFoundError(f"no API token {token_id!r}", hint="see the API tokens page")
    if token.revoked_at:
        return token
    when = _iso(_now())

    def change(conn: Connection) -> bool:
        res = conn.execute(
            web_api_tokens.update()
            .where(web_api_tokens.c.id == token_id, web_api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=when)
        )
        return res.rowcount == 1

    audit.record_change(
        store,
        "web.token.revoked",
        change,
        actor=actor,
        subject=token.username,
        details={"token_id": token_id},
    )
    return get_token(store, token_id) or token


_TOKEN = re.compile(rf"{TOKEN_PREFIX}_([0-9a-f]{{12}})_[A-Za-z0-9_-]{{43}}")


def user_for_token(store: Store, secret: str, now: datetime | None = None) -> User | None:
    """The (enabled) user a bearer token belongs to, or None (unknown, revoked, malformed)."""
    m = _TOKEN.fullmatch(secret.strip())
    if not m:
        return None
    with store.begin() as conn:
        row = conn.execute(sa.select(web_api_tokens).where(web_api_tokens.c.id == m.group(1))).first()
        if row is None or row.revoked_at:
            return None
        if not secrets.compare_digest(row.token_sha256, security.digest(secret.strip())):
            return None
        urow = conn.execute(sa.select(web_users).where(web_users.c.username == row.username)).first()
        if urow is None or urow.disabled:
            return None
        t = _iso(now or _now())
        if not row.last_used_at or row.last_used_at[:16] != t[:16]:  # at most one write a minute
            conn.execute(web_api_tokens.update().where(web_api_tokens.c.id == row.id).values(last_used_at=t))
    return _user(urow)

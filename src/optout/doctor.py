"""``optout doctor``: check this installation, and say how to fix each finding.

In the spirit of ``django check --deploy``: each check looks at one thing the installation must get
right, and reports what it found in words, with how to fix it. Nothing is changed. A finding names
files, modes, settings and counts; it never holds a secret (passwords, keys, the shared key) or an
NHS number. ``Report.exit_code`` is 0 when there is no finding, else 1 (:data:`EXIT_FINDINGS`).

The checks (``name``: what is a finding):

- ``home``: ``OPTOUT_HOME`` open to other accounts, or owned by another account;
- ``files``: a file or folder under ``OPTOUT_HOME`` (the reference service's register and
  snapshots, check request files, the cache, the sandbox's mailboxes and state, the metadata
  database), in the cache folder, or the SQLite metadata database elsewhere, that another
  account may read or write (everything there is owner-only: 0600 files, 0700 folders);
- ``key``: the cache key readable by others, not owned by you, not 32 bytes of base64, or missing
  while a cache needs it;
- ``cache``: the temporary cache expired (001 §8.4: refresh at least every 7 days), due for its
  refresh, or failing its integrity check;
- ``requests``: check request files (the cohort's NHS numbers) kept longer than their purpose
  (:mod:`optout.check.leftovers`);
- ``temp``: temporary folders a killed process left in the system's temporary folder;
- ``database``: PostgreSQL to another host without TLS required (``sslmode`` require, verify-ca or
  verify-full), or a URL that cannot be used;
- ``audit``: the audit trail's hash chain broken, or an expected head (``--expect-head``) missing;
- ``mesh``: MESH settings half given, plain ``http://`` to a MESH server on another machine, half
  a client certificate, a client key readable by others, a missing certificate file;
- ``config``: a secret in ``optout.toml`` (meant to be shareable: secrets go in the environment),
  or ``optout.toml`` writable by other accounts.

More checks plug in with :func:`register_check`; a front end adds its own from a module listed in
:data:`PLUGINS` (``optout.web.doctor``, when the web app exists: its secret key and cookie
settings; that module calls :func:`register_check` when imported). Checks live here, above the
rooms (the layer of ``synth`` and ``demo``), because they span them all.
"""

from __future__ import annotations

import importlib
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout import atomic
from optout.config import Settings, load_settings
from optout.errors import OptoutError, UsageError

if TYPE_CHECKING:
    from optout.store import Store

__all__ = [
    "ERROR",
    "EXIT_FINDINGS",
    "PLUGINS",
    "WARNING",
    "Context",
    "Finding",
    "Note",
    "Report",
    "check_names",
    "register_check",
    "run",
]

EXIT_FINDINGS = 1  # optout.errors.EXIT_CODES[1]
PLUGINS = ("optout.web.doctor",)  # imported when present; each calls register_check
MAX_LISTED = 25  # findings of one kind listed one by one; the rest are counted
_WALK_LIMIT = 200_000

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """Something wrong with the installation, and how to fix it (no secret, no NHS number)."""

    check: str
    code: str  # stable: used in JSON and tests
    severity: str  # error | warning
    message: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass
class Outcome:
    """One check's result: its findings, and notes on what it found in order."""

    name: str
    title: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "ok": self.ok,
            "notes": list(self.notes),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class Report:
    home: Path
    outcomes: list[Outcome]

    @property
    def findings(self) -> list[Finding]:
        return [f for o in self.outcomes for f in o.findings]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else EXIT_FINDINGS

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "home": str(self.home),
            "checks": [o.to_dict() for o in self.outcomes],
            "findings": [f.to_dict() for f in self.findings],
        }


class Note(str):
    """What a check yields when it found something in order (shown as ``ok``)."""


@dataclass
class Context:
    """What the checks look at; the metadata store is opened once, on first use, if it exists."""

    settings: Settings
    env: Mapping[str, str]
    now: datetime
    expect_head: str | None = None
    config_path: Path | None = None
    _store: Store | None = None
    store_error: str | None = None
    _store_tried: bool = False

    @property
    def home(self) -> Path:
        return Path(os.path.abspath(self.settings.home))

    def sqlite_path(self) -> Path | None:
        url = self.settings.db_url
        if not url.startswith("sqlite:///"):
            return None
        raw = url.removeprefix("sqlite:///").split("?", 1)[0]
        return None if raw in ("", ":memory:") else Path(os.path.abspath(raw))

    def store(self) -> Store | None:
        """The metadata store, or None (not created yet, or it cannot be opened: see store_error)."""
        if self._store_tried:
            return self._store
        self._store_tried = True
        db = self.sqlite_path()
        if self.settings.db_url.startswith("sqlite") and (db is None or not db.exists()):
            return None  # nothing has been recorded here yet; never create it
        if _db_without_tls(self.settings.db_url, self.env) is not None:
            self.store_error = "not opened: it would be reached without TLS (see the database check)"
            return None
        from optout.store import open_store

        try:
            self._store = open_store(self.settings.db_url)
        except OptoutError as exc:
            self.store_error = exc.message
        except Exception as exc:  # a database driver's own error: its class only (it may quote the URL)
            self.store_error = f"cannot open it ({exc.__class__.__name__})"
        return self._store


CheckFn = Callable[[Context], Iterable[Finding | Note]]


@dataclass(frozen=True)
class _Check:
    name: str
    title: str
    fn: CheckFn


_CHECKS: list[_Check] = []


def register_check(name: str, title: str) -> Callable[[CheckFn], CheckFn]:
    """Add a check: a function of the :class:`Context` yielding :class:`Finding` and :class:`Note`."""

    def add(fn: CheckFn) -> CheckFn:
        if any(c.name == name for c in _CHECKS):
            raise ValueError(f"a doctor check named {name!r} exists already")
        _CHECKS.append(_Check(name, title, fn))
        return fn

    return add


def _load_plugins() -> None:
    for module in PLUGINS:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise  # the plugin exists but something it needs does not: a real error


# --------------------------------------------------------------------------- helpers


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _is_local(host: str | None) -> bool:
    if not host or host.startswith("/"):
        return True  # a Unix socket
    if host == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def _walk(root: Path) -> Iterator[Path]:
    """``root`` and everything under it, symlinks not followed, at most _WALK_LIMIT entries."""
    yield root
    n = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            n += 1
            if n > _WALK_LIMIT:
                return
            yield Path(dirpath) / name


def _fix_mode(path: Path) -> str:
    if path.is_dir() and not path.is_symlink():
        return f"chmod -R go-rwx {path}"
    return f"chmod 600 {path}"


# --------------------------------------------------------------------------- the checks


@register_check("home", "OPTOUT_HOME owner-only")
def _check_home(ctx: Context) -> Iterator[Finding | Note]:
    home = ctx.home
    if not home.exists():
        yield Note(f"{home} does not exist yet (nothing has been run here); it will be made owner-only")
        return
    st = os.stat(home)
    if st.st_uid != os.getuid():
        yield Finding(
            "home",
            "home-owner",
            WARNING,
            f"OPTOUT_HOME {home} belongs to another account (uid {st.st_uid})",
            f"use a folder of your own (set OPTOUT_HOME), or `chown -R $USER {home}`",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        yield Finding(
            "home",
            "home-open",
            ERROR,
            f"OPTOUT_HOME {home} is open to other accounts (mode {mode:04o}): it holds check request "
            "files, the reference service's register, the cache and the metadata database",
            f"chmod 700 {home}",
        )
    else:
        yield Note(f"{home} is owner-only ({mode:04o})")


def _what(path: Path, ctx: Context) -> tuple[str, str]:
    """What a path under the installation holds, and how bad it is that others may read it."""
    home = ctx.home
    rel = path.relative_to(home).parts if _within(path, home) else ()
    db = ctx.sqlite_path()
    if db is not None and path.name.startswith(db.name) and path.parent == db.parent:
        return "the metadata database (flows, releases, the audit trail)", ERROR
    if _within(path, Path(os.path.abspath(ctx.settings.cache_dir))):
        return "the temporary cache (the allow-list, encrypted)", ERROR
    top = rel[0] if rel else ""
    if top == "service":
        return "the reference service's register (NHS numbers and each person's opt-out choice)", ERROR
    if top == "check":
        return "check request files (the cohort's NHS numbers)", ERROR
    if top == "sandbox":
        return "the MESH sandbox's mailboxes (messages with NHS numbers) and its shared key", ERROR
    if path.name == "cache.key":
        return "the cache key", ERROR
    return "a file optout keeps", WARNING


@register_check("files", "patient-level files and folders owner-only")
def _check_files(ctx: Context) -> Iterator[Finding | Note]:
    roots: list[Path] = []
    home = ctx.home
    if home.is_dir():
        roots.append(home)
    cache_dir = Path(os.path.abspath(ctx.settings.cache_dir))
    if cache_dir.is_dir() and not _within(cache_dir, home):
        roots.append(cache_dir)
    from optout.check import cache

    key_file = Path(os.path.abspath(cache._key_file(ctx.settings)))  # the key check's
    db = ctx.sqlite_path()
    singles: list[Path] = []
    if db is not None and not _within(db, home):
        singles = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}-journal")) if p.exists()]
    checked = 0
    open_paths: list[tuple[Path, int]] = []
    for path in [p for r in roots for p in _walk(r)] + singles:
        try:
            mode = _mode(path)
        except OSError:
            continue
        if path.is_symlink():
            continue
        checked += 1
        if path not in (home, key_file) and mode & 0o077:  # those two: the home and key checks
            open_paths.append((path, mode))
    # an open folder is one finding (its fix covers what it holds), not one per file inside it
    open_dirs = {p for p, _m in open_paths if p.is_dir()}
    listed = [(p, m) for p, m in open_paths if not any(d in open_dirs for d in p.parents)]
    for path, mode in listed[:MAX_LISTED]:
        what, severity = _what(path, ctx)
        how = "read or changed" if mode & 0o022 else "read"
        yield Finding(
            "files",
            "file-open",
            severity,
            f"{path} may be {how} by other accounts (mode {mode:04o}): {what}",
            _fix_mode(path),
        )
    if len(listed) > MAX_LISTED:
        yield Finding(
            "files",
            "file-open",
            ERROR,
            f"... and {len(listed) - MAX_LISTED} more files or folders open to other accounts",
            f"chmod -R go-rwx {home}",
        )
    if not open_paths:
        yield Note(f"{checked} files and folders are owner-only" if checked else "nothing to check yet")


@register_check("key", "the cache key")
def _check_key(ctx: Context) -> Iterator[Finding | Note]:
    from optout.check import cache

    if ctx.env.get("OPTOUT_CACHE_KEY"):
        try:
            cache._decode_key(ctx.env["OPTOUT_CACHE_KEY"], source="OPTOUT_CACHE_KEY")
        except OptoutError:
            yield Finding(
                "key",
                "key-invalid",
                ERROR,
                "OPTOUT_CACHE_KEY is not base64 of 32 bytes (AES-256): the cache cannot be used",
                "set it to a key made by `optout cache keygen FILE` (and refresh the cache afterwards)",
            )
        else:
            yield Note("the cache key comes from OPTOUT_CACHE_KEY (not shown)")
        return
    path = Path(os.path.abspath(cache._key_file(ctx.settings)))
    if not path.exists():
        if cache.cache_file(ctx.settings).exists():
            yield Finding(
                "key",
                "key-missing",
                ERROR,
                f"there is a temporary cache but no key to read it ({path} does not exist)",
                "set OPTOUT_CACHE_KEY_FILE (or [cache] key_file) to the key it was made with, or "
                "`optout cache destroy` and refresh it with a new key (`optout cache keygen`)",
            )
        elif ctx.settings.cache_key_file is not None:
            yield Finding(
                "key",
                "key-missing",
                WARNING,
                f"the configured cache key file {path} does not exist",
                f"make it with `optout cache keygen {path}`, or remove the setting",
            )
        else:
            yield Note("no cache key (only the temporary cache needs one: `optout cache keygen`)")
        return
    st = os.stat(path)
    mode = stat.S_IMODE(st.st_mode)
    problems = False
    if mode & 0o077:
        problems = True
        yield Finding(
            "key",
            "key-open",
            ERROR,
            f"the cache key file {path} may be read or changed by other accounts (mode {mode:04o}); "
            "optout refuses to use it",
            f"chmod 600 {path}",
        )
    if st.st_uid != os.getuid():
        problems = True
        yield Finding(
            "key",
            "key-owner",
            WARNING,
            f"the cache key file {path} belongs to another account (uid {st.st_uid})",
            f"`chown $USER {path}`, or use a key file of your own",
        )
    try:
        cache._decode_key(path.read_bytes(), source=path.name)
    except OSError as exc:
        problems = True
        yield Finding("key", "key-invalid", ERROR, f"cannot read {path}: {exc.strerror}", "check its owner")
    except OptoutError:
        problems = True
        yield Finding(
            "key",
            "key-invalid",
            ERROR,
            f"the cache key file {path} does not hold base64 of 32 bytes (AES-256)",
            "make a new key with `optout cache keygen FILE` (a new key cannot read an old cache: "
            "destroy and refresh it)",
        )
    if not problems:
        yield Note(f"{path} is owner-only ({mode:04o}) and holds a 256-bit key (not shown)")


@register_check("cache", "the temporary cache's age (001 §8.4)")
def _check_cache(ctx: Context) -> Iterator[Finding | Note]:
    from optout.check import cache

    try:
        st = cache.status(ctx.settings, now=ctx.now)
    except OptoutError as exc:
        yield Finding("cache", "cache-unusable", ERROR, exc.message, exc.hint or "see `optout cache status`")
        return
    if not st.exists:
        yield Note("no temporary cache")
        return
    if st.problem and not st.problem.startswith("not verified"):
        yield Finding(
            "cache",
            "cache-unusable",
            ERROR,
            st.problem,
            "`optout cache destroy`, then `optout cache refresh COHORT`; if nobody should have changed "
            "it, report a security incident",
        )
        return
    meta = st.meta
    when = meta.refreshed_at.isoformat(timespec="minutes") if meta else "at an unknown time"
    if st.expired:  # from the header even when it could not be verified (no key)
        yield Finding(
            "cache",
            "cache-expired",
            ERROR,
            f"the temporary cache expired (refreshed {when}; 001 §8.4: at least every 7 days): it may "
            "not be used, and an expired list should not be kept",
            "`optout cache refresh COHORT`, or `optout cache destroy` if it is no longer used",
        )
    elif meta is not None and ctx.now >= meta.refresh_due:
        yield Finding(
            "cache",
            "cache-refresh-due",
            WARNING,
            f"the temporary cache is due for its refresh (refreshed {when}; it expires 7 days after)",
            "`optout cache refresh COHORT` (a reply can take up to a day)",
        )
    else:
        verified = "" if st.verified else " (not verified: no key)"
        yield Note(f"the temporary cache is fresh (refreshed {when}){verified}")


@register_check("requests", "check request files not kept beyond their purpose")
def _check_requests(ctx: Context) -> Iterator[Finding | Note]:
    from optout.check import leftovers

    store = ctx.store()
    if store is None and ctx.store_error:
        yield Note(f"request records not read: the metadata database {ctx.store_error}")
    found = leftovers.find(ctx.settings, store, now=ctx.now)
    for left in found[:MAX_LISTED]:
        if left.kind == "stale-prepared":
            fix = (
                f"`optout check --resume {left.local_id}` to send it now, or `optout check --list`, "
                "which discards it and removes its file (recorded in the audit trail)"
            )
        elif left.kind == "unanswered":
            fix = (
                f"`optout check --collect {left.local_id}`; if nothing comes, `optout check --list` "
                "discards it and removes its file (recorded in the audit trail)"
            )
        else:
            fix = "`optout check --list` removes it (recorded in the audit trail)"
        yield Finding(
            "requests",
            f"request-{left.kind}",
            WARNING,
            f"{left.describe()}: its file holds the cohort's NHS numbers"
            if left.path is not None
            else left.describe(),
            fix,
        )
    if len(found) > MAX_LISTED:
        yield Finding(
            "requests",
            "request-leftovers",
            WARNING,
            f"... and {len(found) - MAX_LISTED} more request files kept beyond their purpose",
            "`optout check --list` cleans them up",
        )
    if not found:
        folder = leftovers.requests_dir(ctx.settings)
        n = sum(1 for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
        yield Note(f"{n} request file(s), each for a request still awaiting its reply")


@register_check("temp", "no temporary folders left by a killed process")
def _check_temp(ctx: Context) -> Iterator[Finding | Note]:
    stale = atomic.stale_temp_dirs()
    if stale:
        shown = " ".join(str(p) for p in stale[:5]) + (" ..." if len(stale) > 5 else "")
        yield Finding(
            "temp",
            "temp-leftover",
            WARNING,
            f"{len(stale)} temporary folder(s) of optout processes that were killed (owner-only; they "
            f"may hold spilled patient rows): {shown}",
            f"rm -rf {shown} (the next optout command that spills to disk removes them too)",
        )
    else:
        yield Note("no temporary folders left behind")


def _db_without_tls(url: str, env: Mapping[str, str]) -> str | None:
    """For PostgreSQL on another host without TLS required: the host (else None)."""
    if not url.startswith("postgres"):
        return None
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:
        return None
    qhost = u.query.get("host")
    if isinstance(qhost, tuple):
        qhost = qhost[0] if qhost else None
    host = u.host or qhost or env.get("PGHOST")  # none: the local Unix socket
    if _is_local(host):
        return None
    mode = str(u.query.get("sslmode") or env.get("PGSSLMODE") or "prefer")
    return None if mode in ("require", "verify-ca", "verify-full") else str(host)


@register_check("database", "the metadata database")
def _check_database(ctx: Context) -> Iterator[Finding | Note]:
    url = ctx.settings.db_url
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:
        yield Finding(
            "database",
            "db-url-invalid",
            ERROR,
            "the metadata database URL (OPTOUT_DB_URL or [store] url) cannot be read (not shown: it "
            "may hold a password)",
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB?sslmode=verify-full",
        )
        return
    shown = u.render_as_string(hide_password=True)
    if u.get_backend_name() == "sqlite":
        yield Note(f"SQLite at {ctx.sqlite_path() or shown} (file modes: the files check)")
        return
    host = _db_without_tls(url, ctx.env)
    if host is not None:
        mode = str(u.query.get("sslmode") or ctx.env.get("PGSSLMODE") or "prefer (the default)")
        yield Finding(
            "database",
            "db-no-tls",
            ERROR,
            f"the metadata database is PostgreSQL on {host} and TLS is not required (sslmode {mode}): "
            "the password and the audit trail may cross the network in clear",
            "add ?sslmode=verify-full (with sslrootcert=CA-FILE) to the URL, or set PGSSLMODE=verify-full",
        )
        return
    yield Note(f"{shown} (local, or TLS required)")


@register_check("audit", "the audit trail's hash chain")
def _check_audit(ctx: Context) -> Iterator[Finding | Note]:
    from optout import audit

    store = ctx.store()
    if store is None:
        if ctx.store_error:
            yield Finding(
                "audit",
                "db-unreachable",
                ERROR,
                f"the audit trail was not verified: the metadata database {ctx.store_error}",
                "check OPTOUT_DB_URL / [store] url, then run `optout doctor` again",
            )
        elif ctx.expect_head:
            yield Finding(
                "audit",
                "audit-broken",
                ERROR,
                "an expected audit head was given but there is no metadata database here",
                "point OPTOUT_HOME / OPTOUT_DB_URL at the installation the head came from",
            )
        else:
            yield Note("no metadata database yet (nothing recorded)")
        return
    try:
        v = audit.verify(store, expect_head=ctx.expect_head)
    except OptoutError:
        raise  # a malformed --expect-head: a usage error (exit 2)
    except Exception as exc:  # the driver's own error: its class only (it may quote the URL)
        yield Finding(
            "audit",
            "db-unreachable",
            ERROR,
            f"the audit trail could not be read ({exc.__class__.__name__})",
            "check OPTOUT_DB_URL / [store] url and that the database is up, then run `optout doctor` again",
        )
        return
    if v.ok:
        yield Note(v.describe())
        return
    yield Finding(
        "audit",
        "audit-broken",
        ERROR,
        v.describe(),
        "`optout audit verify` lists every problem; the log was changed outside optout: restore the "
        "metadata database from a backup taken before that entry, compare, and report it to your IG lead",
    )


_MESH_ENV = {
    "url": "OPTOUT_MESH_URL",
    "mailbox": "OPTOUT_MESH_MAILBOX",
    "password": "OPTOUT_MESH_PASSWORD",
    "shared_key": "OPTOUT_MESH_SHARED_KEY",
}


@register_check("mesh", "MESH settings")
def _check_mesh(ctx: Context) -> Iterator[Finding | Note]:
    from urllib.parse import urlparse

    m = ctx.settings.mesh
    given = {k: getattr(m, k) for k in _MESH_ENV}
    if not any(given.values()):
        yield Note("MESH is not configured (a running local sandbox is used: `optout sandbox start`)")
        return
    bad = False
    missing = [env for k, env in _MESH_ENV.items() if not given[k]]
    if missing:
        bad = True
        yield Finding(
            "mesh",
            "mesh-incomplete",
            ERROR,
            "MESH is half configured: " + ", ".join(missing) + " not set",
            "set them in the environment (the URL and mailbox may go in optout.toml [mesh]; the "
            "password and shared key only in the environment)",
        )
    if m.url:
        parsed = urlparse(str(m.url))
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            bad = True
            yield Finding(
                "mesh",
                "mesh-url-invalid",
                ERROR,
                "the MESH URL is not an http(s) URL",
                "use the MESH endpoint, e.g. https://msg.intspineservices.nhs.uk",
            )
        elif parsed.scheme == "http" and not _is_local(parsed.hostname):
            bad = True
            yield Finding(
                "mesh",
                "mesh-http",
                ERROR,
                f"the MESH URL is plain http:// to {parsed.hostname}, another machine: NHS numbers would "
                "cross the network in clear (optout refuses to send)",
                "use the https:// endpoint (plain http is only for a sandbox on this machine)",
            )
    if bool(m.client_cert) != bool(m.client_key):
        bad = True
        yield Finding(
            "mesh",
            "mesh-cert-incomplete",
            ERROR,
            "a MESH client certificate is half configured (the certificate and its key go together)",
            "set both OPTOUT_MESH_CLIENT_CERT and OPTOUT_MESH_CLIENT_KEY, or neither",
        )
    for label, value in (
        ("client certificate", m.client_cert),
        ("client key", m.client_key),
        ("CA bundle", m.ca_bundle),
    ):
        if not value:
            continue
        path = Path(value)
        if not path.exists():
            bad = True
            yield Finding(
                "mesh",
                "mesh-file-missing",
                ERROR,
                f"the MESH {label} file {path} does not exist",
                f"check the {label} setting (OPTOUT_MESH_* or [mesh] in optout.toml)",
            )
        elif label == "client key" and _mode(path) & 0o077:
            bad = True
            yield Finding(
                "mesh",
                "mesh-key-open",
                ERROR,
                f"the MESH client key {path} may be read by other accounts (mode {_mode(path):04o})",
                f"chmod 600 {path}",
            )
    if not bad:
        yield Note(f"MESH mailbox {m.mailbox} at {m.url}, every setting given")


_SECRET_NAMES = (
    "password",
    "passwd",
    "secret",
    "secret_key",
    "token",
    "shared_key",
    "private_key",
    "api_key",
)
_SECRET_ENV = {
    "mesh.password": "OPTOUT_MESH_PASSWORD",
    "mesh.shared_key": "OPTOUT_MESH_SHARED_KEY",
    "cache.key": "OPTOUT_CACHE_KEY (or a key file: OPTOUT_CACHE_KEY_FILE)",
    "store.url": "OPTOUT_DB_URL (or a ~/.pgpass file)",
}


def _secrets_in(doc: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in doc.items():
        name = f"{prefix}{key}"
        low = str(key).lower()
        if isinstance(value, Mapping):
            yield from _secrets_in(value, f"{name}.")
        elif name == "cache.key" or any(low == s or low.endswith(f"_{s}") for s in _SECRET_NAMES):
            if value not in (None, ""):
                yield name
        elif low == "url" and isinstance(value, str) and "://" in value:
            from sqlalchemy.engine import make_url

            try:
                if make_url(value).password:
                    yield name
            except Exception:
                continue


@register_check("config", "optout.toml holds no secret")
def _check_config(ctx: Context) -> Iterator[Finding | Note]:
    path = ctx.config_path
    if path is None or not path.is_file():
        yield Note("no optout.toml (embedded defaults and the environment)")
        return
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        yield Finding(
            "config",
            "config-invalid",
            ERROR,
            f"{path} cannot be read: {exc.__class__.__name__}",
            f"fix {path}",
        )
        return
    bad = False
    for name in _secrets_in(doc):
        bad = True
        table, _, key = name.rpartition(".")
        where = f"[{table}] {key}" if table else key
        env = _SECRET_ENV.get(name, "an environment variable")
        yield Finding(
            "config",
            "config-secret",
            ERROR,
            f"{path} holds a secret ({where}; not shown): the file is meant to be shareable, and "
            "optout reads secrets only from the environment",
            f"remove it from {path.name}, change it if the file was shared, and set {env} instead",
        )
    mode = _mode(path)
    if mode & 0o022:
        bad = True
        yield Finding(
            "config",
            "config-writable",
            WARNING,
            f"{path} may be changed by other accounts (mode {mode:04o}): they could point MESH or the "
            "metadata database elsewhere",
            f"chmod go-w {path}",
        )
    if not bad:
        yield Note(f"{path}: no secret in it")


# --------------------------------------------------------------------------- running


def run(
    settings: Settings | None = None,
    *,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
    expect_head: str | None = None,
    config_file: Path | None = None,
    only: Iterable[str] | None = None,
) -> Report:
    """Run every check (or those named in ``only``) and return the report; changes nothing."""
    if expect_head is not None and not re.fullmatch(r"[0-9a-f]{64}", expect_head.strip().lower()):
        raise UsageError(
            "--expect-head must be a 64-character SHA-256 hex digest",
            hint="copy the head hash printed by `optout audit verify` or stored in evidence.json (head.hash)",
        )
    env = dict(os.environ if env is None else env)
    config_path = config_file or Path(env.get("OPTOUT_CONFIG") or "optout.toml")
    settings = settings or load_settings(config_path if config_path.is_file() else None, env=env)
    ctx = Context(
        settings=settings,
        env=env,
        now=(now or datetime.now(UTC)).astimezone(UTC),
        expect_head=expect_head,
        config_path=Path(os.path.abspath(config_path)),
    )
    _load_plugins()
    wanted = set(only) if only is not None else None
    outcomes: list[Outcome] = []
    try:
        for check in _CHECKS:
            if wanted is not None and check.name not in wanted:
                continue
            outcome = Outcome(check.name, check.title)
            for item in check.fn(ctx):
                if isinstance(item, Finding):
                    outcome.findings.append(item)
                else:
                    outcome.notes.append(str(item))
            outcomes.append(outcome)
    finally:
        store = ctx._store
        if store is not None:
            store.dispose()
    return Report(home=ctx.home, outcomes=outcomes)


def check_names() -> list[str]:
    _load_plugins()
    return [c.name for c in _CHECKS]

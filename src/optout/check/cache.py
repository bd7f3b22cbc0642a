"""The temporary cache (001 §8, second way of using the check service; §8.4-8.5).

An organisation with large and frequent disclosures submits the NHS numbers of *all* patients it
has a legitimate relationship with and stores, temporarily, the list the service returns: the
people **without** a national data opt-out at that time. This module keeps that list:

- **only the returned allow-list is stored** — never the submitted cohort, and never the
  difference (the opted-out people), which 001 §8.5 forbids using "to explicitly identify
  patients with a national data opt-out";
- **encrypted at rest** (001 §8.5: "stored securely") with AES-256-GCM (``cryptography``'s
  ``AESGCM``). The key comes from ``OPTOUT_CACHE_KEY`` (base64 of 32 bytes) or a key file
  (``OPTOUT_CACHE_KEY_FILE`` / ``[cache] key_file``, else ``<home>/cache.key``) that must not be
  readable by group or others. The metadata (refreshed-at, cohort hash and size, counts, message
  ids) is authenticated as the cipher's associated data, so a changed byte anywhere is detected;
- **refreshed at least every 7 days** (001 §8.4): :func:`load_allow_list` refuses an older cache
  (exit 4) saying when it expired and how to refresh it;
- **releases from a cache must be disclosed within 13 days of the refresh** (001 §8.4): the
  :class:`~optout.check.cleaned_list.AllowList` it returns has ``source="cache"`` and
  ``checked_at=refreshed_at``, so its ``deadline`` is the refresh + 13 days;
- **no command lists members or answers "has this person opted out?"**: the only consumer is
  :func:`load_allow_list`, which hands the whole list to ``optout apply``. ``status`` shows age,
  next refresh due, expiry and counts.

Every refresh and read is recorded in the audit trail (``cache.refresh``, ``cache.read``,
``cache.destroyed``) with counts and message ids, never numbers.

File layout (``<cache dir>/allow-list.optout-cache``)::

    b"OPTOUT-CACHE/1\\n" | header length (4 bytes, big-endian) | header (canonical JSON)
    | nonce (12 bytes) | AES-256-GCM(payload = sorted int64 little-endian, aad = magic + header)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optout import atomic
from optout.check.cleaned_list import CACHE_WINDOW, AllowList
from optout.dat import sorted_unique
from optout.errors import IntegrityError, Location, OutputError, PolicyRefusal, UsageError

if TYPE_CHECKING:
    from optout.config import Settings
    from optout.store import Store

__all__ = [
    "CACHE_FILE",
    "FORMAT",
    "REFRESH_DUE",
    "REFRESH_LIMIT",
    "CacheMeta",
    "CacheStatus",
    "destroy",
    "keygen",
    "load_allow_list",
    "load_key",
    "read_cache",
    "status",
    "write_cache",
]

FORMAT = "optout-cache/1"
MAGIC = b"OPTOUT-CACHE/1\n"
CACHE_FILE = "allow-list.optout-cache"
KEY_FILE = "cache.key"
REFRESH_LIMIT = timedelta(days=7)  # 001 §8.4: "this must be updated at least every 7 days"
REFRESH_DUE = timedelta(days=6)  # refresh a day early: a reply can take up to a day to come
CLOCK_SKEW = timedelta(minutes=5)
_NONCE = 12


# --------------------------------------------------------------------------- keys


def _key_id(key: bytes) -> str:
    """A short fingerprint of the key (tells "wrong key" from "tampered"); reveals nothing of it."""
    return hmac.new(key, b"optout-cache-key-id", hashlib.sha256).hexdigest()[:16]


def _decode_key(text: str | bytes, *, source: str) -> bytes:
    raw = text.strip() if isinstance(text, bytes) else text.strip().encode("ascii", "replace")
    try:
        key = base64.b64decode(raw, validate=True)
    except (ValueError, TypeError):
        key = b""
    if len(key) != 32:
        raise UsageError(
            f"the cache key in {source} is not base64 of 32 bytes (AES-256)",
            hint='make a new key with `optout cache keygen FILE` (or: python -c "import base64,os;'
            'print(base64.b64encode(os.urandom(32)).decode())"); a new key cannot read an old '
            "cache, so refresh it afterwards",
        )
    return key


def _key_file(settings: Settings) -> Path:
    return settings.cache_key_file or (settings.home / KEY_FILE)


def load_key(settings: Settings | None = None, *, env: dict[str, str] | None = None) -> bytes:
    """The cache key: ``OPTOUT_CACHE_KEY`` (base64, 32 bytes), else the key file (mode 0600)."""
    settings = settings or _settings()
    env = dict(os.environ if env is None else env)
    if env.get("OPTOUT_CACHE_KEY"):
        return _decode_key(env["OPTOUT_CACHE_KEY"], source="OPTOUT_CACHE_KEY")
    path = _key_file(settings)
    if not path.exists():
        raise UsageError(
            "no key for the temporary cache: it is encrypted at rest (001 §8.5 'stored securely')",
            hint=f"make one with `optout cache keygen {path}` (or set OPTOUT_CACHE_KEY to base64 of 32 "
            "random bytes, or OPTOUT_CACHE_KEY_FILE / [cache] key_file to a key file)",
        )
    check_key_file_mode(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(
            f"cannot read the cache key file {path}: {exc.strerror}", hint="check its owner"
        ) from None
    return _decode_key(data, source=f"the key file {path.name}")


def check_key_file_mode(path: Path) -> None:
    """Refuse a key file that group or others may read or write (like ssh does)."""
    if os.name == "nt":  # pragma: no cover - POSIX permissions only
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UsageError(
            f"the cache key file {path} may be read or changed by other users (mode {mode:04o}); "
            "refusing to use it",
            where=Location(file=path),
            hint=f"run: chmod 600 {path}",
        )


def keygen(path: str | Path) -> Path:
    """Write a new random key (base64 of 32 bytes) to ``path`` with mode 0600; never overwrites."""
    path = Path(path)
    try:
        atomic.private_dir(path.parent, tighten_existing=False)  # a folder we make: owner-only
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}", where=Location(file=path)) from None
    key = _new_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OutputError(
            f"{path} exists; refusing to overwrite a cache key (the cache made with it could no "
            "longer be read)",
            where=Location(file=path),
            hint="choose another file name, or remove the old key and the cache together "
            "(`optout cache destroy`)",
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror}", where=Location(file=path)) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64encode(key) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o600)
    return path


def _new_key() -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM.generate_key(bit_length=256)


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class CacheMeta:
    """What the cache file says about itself (authenticated; counts and ids only)."""

    refreshed_at: datetime  # when the refresh request was sent (the check time, 001 §8.4)
    cohort_sha256: str
    cohort_size: int
    sent_count: int
    returned_count: int
    local_id: str | None
    request_message_id: str | None
    reply_message_ids: list[str]
    written_at: datetime
    key_id: str

    @property
    def expires_at(self) -> datetime:
        return self.refreshed_at + REFRESH_LIMIT

    @property
    def refresh_due(self) -> datetime:
        return self.refreshed_at + REFRESH_DUE

    @property
    def disclose_by(self) -> datetime:
        """Deadline for data processed with this cache now (001 §8.4: 13 days from the refresh)."""
        return self.refreshed_at + CACHE_WINDOW

    def to_header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "refreshed_at": _iso(self.refreshed_at),
            "cohort_sha256": self.cohort_sha256,
            "cohort_size": self.cohort_size,
            "sent_count": self.sent_count,
            "returned_count": self.returned_count,
            "local_id": self.local_id,
            "request_message_id": self.request_message_id,
            "reply_message_ids": list(self.reply_message_ids),
            "written_at": _iso(self.written_at),
            "key_id": self.key_id,
        }

    @classmethod
    def from_header(cls, doc: dict[str, Any]) -> CacheMeta:
        return cls(
            refreshed_at=_parse(doc["refreshed_at"]),
            cohort_sha256=str(doc["cohort_sha256"]),
            cohort_size=int(doc["cohort_size"]),
            sent_count=int(doc["sent_count"]),
            returned_count=int(doc["returned_count"]),
            local_id=doc.get("local_id"),
            request_message_id=doc.get("request_message_id"),
            reply_message_ids=[str(x) for x in doc.get("reply_message_ids") or []],
            written_at=_parse(doc["written_at"]),
            key_id=str(doc["key_id"]),
        )


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def _settings() -> Settings:
    from optout.config import load_settings

    return load_settings()


def cache_file(settings: Settings | None = None) -> Path:
    settings = settings or _settings()
    return settings.cache_dir / CACHE_FILE


def _encode(numbers: np.ndarray, meta: CacheMeta, key: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header = json.dumps(meta.to_header(), sort_keys=True, separators=(",", ":")).encode("utf-8")
    payload = np.ascontiguousarray(numbers, dtype="<i8").tobytes()
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(key).encrypt(nonce, payload, MAGIC + header)
    return MAGIC + struct.pack(">I", len(header)) + header + nonce + sealed


def _decode(data: bytes, key: bytes, *, name: str) -> tuple[np.ndarray, CacheMeta, str]:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    tampered = IntegrityError(
        f"the temporary cache {name} failed its integrity check: it was changed or damaged after "
        "it was written (AES-256-GCM authentication failed); it cannot be used",
        where=Location(file=name),
        hint="destroy it (`optout cache destroy`) and refresh it (`optout cache refresh COHORT`); "
        "if nobody should have changed it, report a security incident",
    )
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise tampered
    (hlen,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    header = data[start : start + hlen]
    rest = data[start + hlen :]
    try:
        doc = json.loads(header.decode("utf-8"))
        meta = CacheMeta.from_header(doc)
        if doc.get("format") != FORMAT:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise tampered from None
    if len(rest) < _NONCE + 16:
        raise tampered
    if not hmac.compare_digest(meta.key_id, _key_id(key)):
        raise IntegrityError(
            f"the temporary cache {name} was encrypted with a different key from the one configured",
            where=Location(file=name),
            hint="set OPTOUT_CACHE_KEY / the key file to the key used for the refresh, or destroy the "
            "cache and refresh it with the current key",
        )
    try:
        payload = AESGCM(key).decrypt(rest[:_NONCE], rest[_NONCE:], MAGIC + header)
    except InvalidTag:
        raise tampered from None
    if len(payload) % 8 or len(payload) // 8 != meta.returned_count:
        raise tampered
    numbers = np.frombuffer(payload, dtype="<i8").astype(np.int64)
    return numbers, meta, hashlib.sha256(payload).hexdigest()


def write_cache(
    numbers: np.ndarray,
    *,
    refreshed_at: datetime,
    cohort_sha256: str,
    cohort_size: int,
    local_id: str | None,
    request_message_id: str | None,
    reply_message_ids: list[str],
    settings: Settings | None = None,
    key: bytes | None = None,
    now: datetime | None = None,
) -> CacheMeta:
    """Encrypt and write the allow-list atomically (temp file in the same folder, fsync, rename)."""
    settings = settings or _settings()
    key = key if key is not None else load_key(settings)
    numbers = sorted_unique(np.asarray(numbers, dtype=np.int64))
    meta = CacheMeta(
        refreshed_at=refreshed_at.astimezone(UTC),
        cohort_sha256=cohort_sha256,
        cohort_size=int(cohort_size),
        sent_count=int(cohort_size),
        returned_count=int(numbers.shape[0]),
        local_id=local_id,
        request_message_id=request_message_id,
        reply_message_ids=list(reply_message_ids),
        written_at=(now or datetime.now(UTC)).astimezone(UTC),
        key_id=_key_id(key),
    )
    blob = _encode(numbers, meta, key)
    path = cache_file(settings)
    try:
        atomic.private_dir(path.parent)  # 0700 whatever the umask; tightened if it was not
        atomic.write_bytes(path, blob, private=True)
    except OSError as exc:
        raise OutputError(
            f"cannot write the temporary cache in {path.parent}: {exc.strerror}",
            where=Location(file=path),
            hint="set OPTOUT_CACHE_DIR or [cache] path in optout.toml to a writable folder with free space",
        ) from None
    return meta


def read_cache(
    settings: Settings | None = None, *, key: bytes | None = None
) -> tuple[np.ndarray, CacheMeta, str]:
    """Decrypt and verify the cache: (sorted numbers, metadata, SHA-256 of the payload)."""
    settings = settings or _settings()
    path = cache_file(settings)
    if not path.exists():
        raise PolicyRefusal(
            "there is no temporary cache here, so nobody is known not to have opted out",
            where=Location(file=path),
            hint="make it with `optout cache refresh COHORT` (the NHS numbers of everyone you have a "
            "legitimate relationship with), or check the cohort once with `optout check`",
        )
    key = key if key is not None else load_key(settings)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise OutputError(
            f"cannot read the temporary cache: {exc.strerror}", where=Location(file=path)
        ) from None
    return _decode(data, key, name=path.name)


def _read_meta_unverified(path: Path) -> CacheMeta | None:
    try:
        data = path.read_bytes()[: 1 << 16]
        (hlen,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
        return CacheMeta.from_header(json.loads(data[len(MAGIC) + 4 : len(MAGIC) + 4 + hlen]))
    except Exception:
        return None


# --------------------------------------------------------------------------- policy


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def _store(settings: Settings, store: Store | None) -> Store:
    if store is not None:
        return store
    from optout.store import open_store

    return open_store(settings.db_url)


def _check_fresh(meta: CacheMeta, now: datetime) -> None:
    if meta.refreshed_at > now + CLOCK_SKEW:
        raise PolicyRefusal(
            f"the temporary cache says it was refreshed at {_iso(meta.refreshed_at)}, which is in the "
            f"future (now {_iso(now)})",
            hint="check this computer's clock, then refresh the cache (`optout cache refresh COHORT`)",
        )
    if now >= meta.expires_at:
        raise PolicyRefusal(
            f"the temporary cache expired at {_iso(meta.expires_at)}: it was refreshed at "
            f"{_iso(meta.refreshed_at)} and 001 §8.4 requires a cache to be refreshed at least every "
            "7 days, so it may not be used",
            hint="refresh it with `optout cache refresh COHORT` (the NHS numbers of everyone you have a "
            "legitimate relationship with), or check this cohort once with `optout check`",
        )


def load_allow_list(
    settings: Settings | None = None,
    *,
    now: datetime | None = None,
    store: Store | None = None,
    purpose: str | None = None,
) -> AllowList:
    """The cache as an allow-list for ``optout apply`` (source ``cache``: 13-day deadline).

    Refuses (exit 4) a cache refreshed 7 days ago or more (001 §8.4), and (exit 8) a cache that
    was changed or was written with another key. The read is recorded (``cache.read``).
    """
    settings = settings or _settings()
    when = _now(now)
    numbers, meta, sha = read_cache(settings)
    _check_fresh(meta, when)
    from optout import audit

    audit.record(
        _store(settings, store),
        "cache.read",
        actor=settings.actor,
        subject=meta.local_id,
        details={
            "refreshed_at": _iso(meta.refreshed_at),
            "expires_at": _iso(meta.expires_at),
            "deadline": _iso(meta.disclose_by),
            "returned_count": meta.returned_count,
            "payload_sha256": sha,
            "purpose": purpose or "apply",
        },
        at=_iso(when),
    )
    return AllowList(
        numbers=numbers,
        checked_at=meta.refreshed_at,
        source="cache",
        sha256=sha,
        origin=f"temporary cache refreshed {_iso(meta.refreshed_at)}",
        local_id=meta.local_id,
    )


@dataclass(frozen=True)
class CacheStatus:
    """What ``optout cache status`` shows: never members."""

    exists: bool
    path: Path
    verified: bool = False
    meta: CacheMeta | None = None
    now: datetime | None = None
    problem: str | None = None

    @property
    def age(self) -> timedelta | None:
        return None if self.meta is None or self.now is None else self.now - self.meta.refreshed_at

    @property
    def expired(self) -> bool:
        return bool(self.meta and self.now and self.now >= self.meta.expires_at)

    @property
    def state(self) -> str:
        if not self.exists:
            return "absent"
        if self.problem:
            return "unusable"
        if self.expired:
            return "expired"
        if self.meta and self.now and self.now >= self.meta.refresh_due:
            return "refresh-due"
        return "fresh"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state, "path": str(self.path), "verified": self.verified}
        if self.problem:
            out["problem"] = self.problem
        if self.meta is not None:
            m = self.meta
            out.update(
                refreshed_at=_iso(m.refreshed_at),
                age_hours=round(self.age.total_seconds() / 3600, 1) if self.age is not None else None,
                refresh_due=_iso(m.refresh_due),
                expires_at=_iso(m.expires_at),
                disclose_by_if_used_now=_iso(m.disclose_by),
                cohort_size=m.cohort_size,
                cohort_sha256=m.cohort_sha256,
                returned_count=m.returned_count,
                local_id=m.local_id,
                request_message_id=m.request_message_id,
                reply_message_ids=m.reply_message_ids,
            )
        return out


def status(settings: Settings | None = None, *, now: datetime | None = None) -> CacheStatus:
    """Age, next refresh due and expiry of the cache (verified with the key when there is one)."""
    settings = settings or _settings()
    when = _now(now)
    path = cache_file(settings)
    if not path.exists():
        return CacheStatus(False, path, now=when)
    try:
        _numbers, meta, _sha = read_cache(settings)
    except IntegrityError as exc:
        return CacheStatus(True, path, False, _read_meta_unverified(path), when, exc.message)
    except UsageError as exc:  # no key: show what the header says, marked unverified
        return CacheStatus(
            True, path, False, _read_meta_unverified(path), when, f"not verified: {exc.message}"
        )
    return CacheStatus(True, path, True, meta, when)


def destroy(
    settings: Settings | None = None, *, store: Store | None = None, now: datetime | None = None
) -> bool:
    """Delete the cache file (the list is encrypted, so deleting it is enough). True if one existed."""
    settings = settings or _settings()
    path = cache_file(settings)
    if not path.exists():
        return False
    meta = _read_meta_unverified(path)
    path.unlink()
    from optout import audit

    audit.record(
        _store(settings, store),
        "cache.destroyed",
        actor=settings.actor,
        subject=meta.local_id if meta else None,
        details={"refreshed_at": _iso(meta.refreshed_at) if meta else None},
        at=_iso(_now(now)),
    )
    return True

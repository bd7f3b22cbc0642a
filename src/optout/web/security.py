"""The web app's security mechanisms, each small and built on a maintained library.

- Passwords: argon2id (``argon2-cffi``'s defaults, RFC 9106 low-memory profile); a rehash on
  login when the parameters change.
- Sessions: server-side. The cookie holds a random 256-bit id; the store keeps only its SHA-256
  (``web_sessions``), so a copy of the database cannot be replayed as a cookie. Idle and absolute
  expiry; a new id at every sign-in (no fixation); signing out deletes the row.
- CSRF: a signed double-submit token (``itsdangerous``). A random value sits in an HttpOnly
  cookie; every form carries ``csrf_token`` = that value and the session it belongs to, signed with
  the app's secret key and timestamped. A POST, PUT, PATCH or DELETE outside ``/api`` is refused
  unless the token's signature, age, cookie value and session all match. ``/api`` takes no cookies
  at all (a bearer token only), so it is exempt.
- Cookies: ``HttpOnly``, ``SameSite=Lax`` (session) / ``Strict`` (CSRF), ``Secure`` with the
  ``__Host-`` prefix, except over plain http to a loopback address (a developer's own machine,
  the tests), see :func:`cookies_secure`.
- Headers on every response: a strict Content-Security-Policy (scripts and styles from this
  origin only, no inline script, ``frame-ancestors 'none'``), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy``, ``X-Frame-Options``, ``Permissions-Policy``, ``Cache-Control: no-store`` on
  everything but static files, and HSTS over https.
- Body size limits: a plain form or JSON body at most ``max_form_bytes``; a multipart (upload)
  body at most ``max_upload_bytes``, counted as it streams (a lying Content-Length does not help).
- Login throttling: per client address in memory (:class:`LoginThrottle`); per account lock-out
  in the store (``optout.web.accounts``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from itsdangerous import BadData, URLSafeTimedSerializer

from optout import atomic
from optout.errors import UsageError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "optout-session"
CSRF_COOKIE = "optout-csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_MAX_AGE = 12 * 3600  # a form left open longer than this must be reloaded
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SECRET_ENV = "OPTOUT_WEB_SECRET_KEY"
KEY_FILE = "web.key"

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)

# --------------------------------------------------------------------------- the secret key


def load_secret_key(home: Path, env: MutableMapping[str, str] | None = None) -> bytes:
    """``OPTOUT_WEB_SECRET_KEY``, else ``<home>/web.key`` (made 0600 with a random key if absent)."""
    env = os.environ if env is None else env
    text = env.get(SECRET_ENV)
    if text:
        if len(text) < 32:
            raise UsageError(
                f"{SECRET_ENV} is too short (at least 32 characters)",
                hint="generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'",
            )
        return text.encode("utf-8")
    path = Path(home) / KEY_FILE
    try:
        atomic.private_dir(path.parent, tighten_existing=False)
        if not path.exists():
            atomic.write_bytes(path, secrets.token_urlsafe(48).encode("ascii") + b"\n")
        key = path.read_bytes().strip()
    except OSError as exc:
        raise UsageError(
            f"cannot read or create the web app's secret key file {path}: {exc.strerror}",
            hint=f"set OPTOUT_HOME to a writable folder, or set {SECRET_ENV}",
        ) from None
    if len(key) < 32:
        raise UsageError(
            f"the web app's secret key file {path} is too short",
            hint="delete it and start the app again to generate a new one (everyone signs in again)",
        )
    if atomic.open_to_others(path):
        raise UsageError(
            f"the web app's secret key file {path} is readable by other users",
            hint=f"chmod 600 {path}",
        )
    return key


# --------------------------------------------------------------------------- passwords

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


def password_problem(password: str, username: str | None = None) -> str | None:
    """Why ``password`` may not be used (plain English), or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be {MIN_PASSWORD_LENGTH} characters or more"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Password must be {MAX_PASSWORD_LENGTH} characters or fewer"
    if username and password.strip().lower() == username.lower():
        return "Password must not be the same as the username"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; constant work when there is no user (``stored_hash`` None)."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


# --------------------------------------------------------------------------- random ids


def new_secret() -> str:
    """A random 256-bit value, URL-safe (session ids, CSRF cookie values, API token secrets)."""
    return secrets.token_urlsafe(32)


def digest(value: str) -> str:
    """SHA-256 hex of a high-entropy secret: what the store keeps instead of the secret."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- cookies


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cookies_secure(scope: Scope, mode: str) -> bool:
    """Whether cookies get ``Secure`` (and the ``__Host-`` prefix) on this request.

    ``auto``: yes, except over plain http to a server bound to a loopback address, asked for by
    a loopback name, with no proxy in between (a developer's own browser, the tests). In
    production the app sits behind a TLS proxy: the proxy's ``X-Forwarded-*`` headers (trusted
    or not) or the public host name make cookies ``Secure``, and so does any plain-http request
    to another address, whose cookies the browser then will not send back over http: fail closed.
    """
    if mode == "always":
        return True
    if mode == "never":
        return False
    if scope.get("scheme") in ("https", "wss"):
        return True
    server = scope.get("server")
    if not _is_loopback(server[0] if server else None):
        return True
    host = ""
    for key, value in scope.get("headers", ()):
        if key in (b"x-forwarded-for", b"x-forwarded-proto", b"forwarded", b"x-forwarded-host"):
            return True
        if key == b"host":
            host = value.decode("latin-1")
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    return not _is_loopback(name)


def cookie_name(base: str, secure: bool) -> str:
    return f"__Host-{base}" if secure else base


def read_cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name and v:
                    return v
    return None


def set_cookie_header(
    name: str, value: str, *, secure: bool, samesite: str = "Lax", max_age: int | None = None
) -> str:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", f"SameSite={samesite}"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- CSRF


class CsrfSigner:
    """Signs and checks CSRF tokens bound to the CSRF cookie's value and the session."""

    def __init__(self, secret_key: bytes) -> None:
        self._s = URLSafeTimedSerializer(secret_key, salt="optout-web-csrf")

    def token(self, cookie_value: str, session_binding: str) -> str:
        return self._s.dumps({"c": cookie_value, "s": session_binding})

    def valid(self, token: str | None, cookie_value: str | None, session_binding: str) -> bool:
        if not token or not cookie_value:
            return False
        try:
            data = self._s.loads(token, max_age=CSRF_MAX_AGE)
        except BadData:
            return False
        if not isinstance(data, dict):
            return False
        return secrets.compare_digest(str(data.get("c", "")), cookie_value) and secrets.compare_digest(
            str(data.get("s", "")), session_binding
        )


def session_binding(session_id_sha256: str | None) -> str:
    """What a CSRF token is bound to: the session (a prefix of its id's digest), or '' signed out."""
    return (session_id_sha256 or "")[:32]


# --------------------------------------------------------------------------- login throttling


class LoginThrottle:
    """At most ``limit`` sign-in attempts per client address in ``window`` seconds (in memory)."""

    def __init__(self, limit: int, window: int) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        """Count one attempt from ``client``; False when it is over the limit."""
        t = time.monotonic() if now is None else now
        with self._lock:
            if len(self._hits) > 10_000:  # bound the memory a flood of addresses can take
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > t - self.window}
            hits = self._hits.setdefault(client, deque())
            while hits and hits[0] <= t - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(t)
            return True

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


# --------------------------------------------------------------------------- the middleware


class BodyTooLarge(Exception):
    pass


class SecurityMiddleware:
    """Security headers, body size limits and the CSRF cookie, for every HTTP request.

    Pure ASGI (no buffering): the body is counted as it streams past.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        cookie_secure: str,
        max_form_bytes: int,
        max_upload_bytes: int,
        too_large: Callable[[Scope, int], Awaitable[tuple[int, list[tuple[bytes, bytes]], bytes]]],
        server_error: Callable[[Scope], Awaitable[tuple[int, list[tuple[bytes, bytes]], bytes]]]
        | None = None,
    ) -> None:
        self.app = app
        self.cookie_secure = cookie_secure
        self.max_form_bytes = max_form_bytes
        self.max_upload_bytes = max_upload_bytes
        self.too_large = too_large
        self.server_error = server_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = cookies_secure(scope, self.cookie_secure)
        state = scope.setdefault("state", {})
        state["cookies_secure"] = secure
        csrf_name = cookie_name(CSRF_COOKIE, secure)
        csrf_value = read_cookie(scope, csrf_name)
        new_csrf = None
        if csrf_value is None or len(csrf_value) > 128:
            csrf_value = new_csrf = new_secret()
        state["csrf_cookie"] = csrf_value

        headers = {k.lower(): v for k, v in scope.get("headers", ())}
        ctype = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.max_upload_bytes if ctype.startswith("multipart/") else self.max_form_bytes
        path = scope.get("path", "")
        static = path.startswith("/static/")
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                out = list(message.get("headers", []))
                present = {k.lower() for k, _ in out}
                out.extend(h for h in _security_headers(secure, static) if h[0] not in present)
                if new_csrf is not None:
                    out.append(
                        (
                            b"set-cookie",
                            set_cookie_header(csrf_name, new_csrf, secure=secure, samesite="Strict").encode(
                                "latin-1"
                            ),
                        )
                    )
                message["headers"] = out
            await send(message)

        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    await self._refuse(scope, limit, send_wrapper)
                    return
            except ValueError:
                pass

        seen = 0

        async def receive_wrapper() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, limit, send_wrapper)
        except Exception:
            # a bug: answer with the service's error page *and* these headers (Starlette's own
            # error middleware sits outside this one), then let the server log it
            if not started and self.server_error is not None:
                status, out, body = await self.server_error(scope)
                await send_wrapper({"type": "http.response.start", "status": status, "headers": out})
                await send_wrapper({"type": "http.response.body", "body": body})
            raise

    async def _refuse(self, scope: Scope, limit: int, send: Send) -> None:
        status, headers, body = await self.too_large(scope, limit)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _security_headers(secure: bool, static: bool) -> list[tuple[bytes, bytes]]:
    h = [
        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]
    if not static:
        h.append((b"cache-control", b"no-store"))
    if secure:
        h.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
    return h

"""A thin adapter over ``mesh_client.MeshClient``: the only place that talks MESH.

What it adds to the library (and nothing more):

- every failure becomes a :class:`~optout.errors.TransportError` whose hint names the setting to
  fix (``OPTOUT_MESH_URL``, ``OPTOUT_MESH_MAILBOX``, ``OPTOUT_MESH_PASSWORD``,
  ``OPTOUT_MESH_SHARED_KEY``, the client certificate, or the machine's clock);
- a handshake before first use and again at least every 24 hours (MESH API guidance);
- inbox listing in pages of at most 500 ids, followed to the end, each id yielded once;
- a retrieved message is read whole (chunks joined by ``mesh_client``) into :class:`Received`;
  acknowledging is a separate, explicit call so callers acknowledge only after what the message
  carried is durably stored;
- :class:`Backoff`, the polling rhythm used by the responder and the check client;
- refusals: plain ``http://`` to anything but this machine, half a client certificate.

Nothing here logs or raises with message bodies; subjects and LocalIDs are ours, never patient data.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import urlparse

import psutil
import requests
from mesh_client import MeshClient, MeshError

from optout.config import DEFAULT_RECIPIENT, WORKFLOW_ID, MeshSettings, Settings
from optout.errors import TransportError, UsageError

__all__ = [
    "HANDSHAKE_EVERY",
    "MAX_CLOCK_SKEW",
    "PAGE_SIZE",
    "Backoff",
    "MeshMailbox",
    "Received",
    "SandboxInfo",
    "org_settings",
    "sandbox_status",
    "service_settings",
    "with_local_sandbox",
]

PAGE_SIZE = 500  # MESH returns at most 500 ids per inbox list
HANDSHAKE_EVERY = timedelta(hours=24)  # "handshake at least once a day"
MAX_CLOCK_SKEW = timedelta(minutes=5)  # MESH auth tokens carry the minute they were made
DEFAULT_CHUNK_SIZE = 75 * 1024 * 1024  # under MESH's 100 MB per chunk

_HINT_URL = (
    "check OPTOUT_MESH_URL (or [mesh] url in optout.toml); for local testing run "
    "`optout sandbox start` and leave OPTOUT_MESH_URL unset"
)
_HINT_AUTH = (
    "check OPTOUT_MESH_PASSWORD and OPTOUT_MESH_SHARED_KEY (the shared key must be the one the "
    "MESH server uses; for the sandbox it is in `optout sandbox status`), and that this machine's "
    "clock is right"
)
_HINT_MAILBOX = (
    "check OPTOUT_MESH_MAILBOX (or [mesh] mailbox in optout.toml): the server knows no such mailbox"
)
_HINT_CERT = (
    "check OPTOUT_MESH_CLIENT_CERT, OPTOUT_MESH_CLIENT_KEY and OPTOUT_MESH_CA_BUNDLE "
    "(or [mesh] client_cert, client_key, ca_bundle in optout.toml)"
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Received:
    """One message taken from the inbox, body already joined from its chunks."""

    message_id: str
    subject: str | None
    local_id: str | None
    workflow_id: str | None
    sender: str | None
    filename: str | None
    message_type: str | None  # "DATA" | "REPORT" (a non-delivery or error report)
    status: str | None  # for a REPORT: "SUCCESS" | "ERROR"
    body: bytes
    status_description: str | None = None  # for a REPORT: why it was not delivered
    linked_message_id: str | None = None  # for a REPORT: the message it is about

    @property
    def is_report(self) -> bool:
        return (self.message_type or "").upper() == "REPORT"


class Backoff:
    """Poll intervals: start short, grow by ``factor`` up to ``maximum``; ``reset`` on activity."""

    def __init__(self, initial: float = 1.0, maximum: float = 300.0, factor: float = 2.0) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("Backoff: need 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self._next = initial

    def next(self) -> float:
        current = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return current

    def reset(self) -> None:
        self._next = self.initial


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_settings(settings: MeshSettings) -> None:
    """Refuse a configuration that cannot work or would be unsafe, before any connection."""
    missing = [
        env
        for env, value in (
            ("OPTOUT_MESH_URL", settings.url),
            ("OPTOUT_MESH_MAILBOX", settings.mailbox),
            ("OPTOUT_MESH_PASSWORD", settings.password),
            ("OPTOUT_MESH_SHARED_KEY", settings.shared_key),
        )
        if not value
    ]
    if missing:
        raise UsageError(
            "MESH is not configured: " + ", ".join(missing) + " not set",
            hint="set them in the environment (the URL and mailbox may go in optout.toml [mesh]); "
            "for local testing run `optout sandbox start`, which needs no set-up",
        )
    parsed = urlparse(str(settings.url))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UsageError(
            "OPTOUT_MESH_URL is not an http(s) URL",
            hint="use the MESH endpoint, e.g. https://msg.intspineservices.nhs.uk",
        )
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        # patient identifiers never cross a network in clear text
        raise UsageError(
            "refusing plain http:// to a MESH server that is not on this machine",
            hint="use the https:// endpoint (plain http is only accepted for a local sandbox)",
        )
    if bool(settings.client_cert) != bool(settings.client_key):
        raise UsageError(
            "a MESH client certificate needs both the certificate and its private key",
            hint="set both OPTOUT_MESH_CLIENT_CERT and OPTOUT_MESH_CLIENT_KEY, or neither",
        )


def _error_text(response: requests.Response | None) -> str:
    """The server's short error description, if it gave one (never a body we sent)."""
    if response is None:
        return ""
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        if data.get("errorDescription"):
            return str(data["errorDescription"])
        detail = data.get("detail")
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            return str(detail[0].get("msg") or "")
        if isinstance(detail, str):
            return detail
    return ""


class MeshMailbox:
    """One MESH mailbox: handshake, send, list, retrieve, acknowledge. A context manager."""

    def __init__(
        self,
        settings: MeshSettings,
        *,
        max_chunk_size: int | None = None,
        clock: Callable[[], datetime] = _utcnow,
        timeout: float = 120.0,
        max_retries: int = 2,
    ) -> None:
        _check_settings(settings)
        self.settings = settings
        self.mailbox = str(settings.mailbox)
        self.url = str(settings.url).rstrip("/")
        self._clock = clock
        self._timeout = timeout
        self._last_handshake: datetime | None = None
        self._cert: tuple[str, str] | None = (
            (settings.client_cert, settings.client_key)
            if settings.client_cert and settings.client_key
            else None
        )
        self._verify: str | bool | None = settings.ca_bundle or None
        try:
            self._client = MeshClient(
                self.url,
                self.mailbox,
                str(settings.password),
                shared_key=str(settings.shared_key).encode("utf-8"),
                cert=self._cert,
                verify=self._verify,
                max_chunk_size=max_chunk_size or DEFAULT_CHUNK_SIZE,
                max_retries=max_retries,
                retry_backoff_factor=0.2,
                timeout=timeout,
                application_name="optout",
            )
            if _is_loopback(urlparse(self.url).hostname):
                # A local sandbox gzips every download on the fly (level 9): on loopback that costs
                # far more than it saves, so ask for the bytes as stored. Remote MESH: gzip as usual.
                session = getattr(self._client, "_session", None)
                if session is not None:
                    session.headers["Accept-Encoding"] = "identity"
        except (OSError, ValueError) as exc:  # unreadable certificate or key file
            raise TransportError(
                f"cannot set up the MESH client: {exc.__class__.__name__}", hint=_HINT_CERT
            ) from None

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> MeshMailbox:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ errors

    def _server_time(self) -> datetime | None:
        """The server's clock from the Date header of its ping endpoint (None if unknown)."""
        try:
            response = requests.get(
                f"{self.url}/messageexchange/_ping",
                timeout=min(self._timeout, 10.0),
                cert=self._cert,
                verify=self._verify if self._verify is not None else True,
            )
            date = response.headers.get("Date")
            return parsedate_to_datetime(date).astimezone(UTC) if date else None
        except (requests.RequestException, TypeError, ValueError):
            return None

    def _check_clock(self) -> None:
        server = self._server_time()
        if server is None:
            return
        skew = self._clock() - server
        if abs(skew) > MAX_CLOCK_SKEW:
            minutes = int(abs(skew).total_seconds() // 60)
            direction = "ahead of" if skew > timedelta(0) else "behind"
            raise TransportError(
                f"this machine's clock is {minutes} minutes {direction} the MESH server's; "
                "MESH refuses authentication tokens made with a wrong clock",
                hint="fix the clock (enable NTP: `timedatectl set-ntp true`), then try again",
            )

    def _fail(self, action: str, exc: Exception) -> NoReturn:
        """Turn a library/HTTP failure into a TransportError naming what to fix."""
        where = f"MESH mailbox {self.mailbox} at {self.url}"
        if isinstance(exc, requests.exceptions.SSLError):
            raise TransportError(f"{action}: TLS handshake with {self.url} failed", hint=_HINT_CERT) from None
        if isinstance(exc, requests.exceptions.ConnectionError):
            raise TransportError(
                f"{action}: cannot reach MESH at {self.url} (connection refused or host unknown)",
                hint=_HINT_URL,
            ) from None
        if isinstance(exc, requests.exceptions.Timeout):
            raise TransportError(
                f"{action}: MESH at {self.url} did not answer in time",
                hint="try again later; if it persists check OPTOUT_MESH_URL and the network",
            ) from None
        if isinstance(exc, requests.exceptions.HTTPError):
            response = exc.response
            code = response.status_code if response is not None else 0
            text = _error_text(response)
            if code in (401, 403):
                if "mailbox" in text.lower() and "match" in text.lower():
                    raise TransportError(
                        f"{action}: {where} refused us: {text}", hint=_HINT_MAILBOX
                    ) from None
                self._check_clock()
                raise TransportError(
                    f"{action}: {where} refused our credentials" + (f" ({text})" if text else ""),
                    hint=_HINT_AUTH,
                ) from None
            if code == 404:
                raise TransportError(
                    f"{action}: not found on {where}" + (f" ({text})" if text else ""),
                    hint="the message may have been acknowledged already or have expired (MESH keeps "
                    "unacknowledged messages for 5 days); check OPTOUT_MESH_URL points at the right server",
                ) from None
            raise TransportError(
                f"{action}: {where} answered HTTP {code}" + (f" ({text})" if text else ""),
                hint="try again later; if it persists check OPTOUT_MESH_URL and contact the MESH "
                "service desk",
            ) from None
        if isinstance(exc, MeshError):
            text = str(exc.args[0]) if exc.args else exc.__class__.__name__
            hint = "check the message settings and try again"
            if "recipient" in text.lower() or "to address" in text.lower():
                hint = (
                    "check OPTOUT_MESH_RECIPIENT (or [mesh] recipient in optout.toml): MESH does not "
                    "know that mailbox"
                )
            elif "workflow" in text.lower():
                hint = "check OPTOUT_MESH_WORKFLOW: the mailbox is not registered for that workflow"
            raise TransportError(f"{action}: MESH refused the message: {text}", hint=hint) from None
        if isinstance(exc, requests.RequestException):
            raise TransportError(
                f"{action}: {exc.__class__.__name__} talking to {self.url}", hint=_HINT_URL
            ) from None
        raise exc

    def _call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (requests.RequestException, MeshError) as exc:
            self._fail(action, exc)
        except Exception as exc:  # urllib3 retry exhaustion surfaces as its own types
            if exc.__class__.__module__.startswith("urllib3"):
                self._fail(action, requests.exceptions.ConnectionError(str(exc)))
            raise

    # ------------------------------------------------------------------ the API

    def handshake(self) -> None:
        """Authenticate and register this client with MESH (at start and at least daily)."""
        self._call("handshake", self._client.handshake)
        self._check_clock()
        self._last_handshake = self._clock()

    def ensure_handshake(self) -> None:
        """Handshake if we never have, or the last one is 24 hours old."""
        last = self._last_handshake
        if last is None or self._clock() - last >= HANDSHAKE_EVERY:
            self.handshake()

    def send(
        self,
        *,
        recipient: str,
        data: bytes,
        workflow_id: str,
        subject: str,
        local_id: str,
        filename: str | None = None,
    ) -> str:
        """Send ``data`` (chunked by the library when large); returns the MESH message id."""
        if not data:
            raise UsageError(
                "refusing to send an empty MESH message", hint="MESH does not accept empty files"
            )
        self.ensure_handshake()
        kwargs: dict[str, str] = {"workflow_id": workflow_id, "subject": subject, "local_id": local_id}
        if filename:
            kwargs["filename"] = filename
        return str(self._call("send", self._client.send_message, recipient, data, **kwargs))

    def inbox(self, *, workflow_id: str | None = None) -> Iterator[str]:
        """Every message id waiting in the inbox, pages of 500 followed until the end, each once."""
        self.ensure_handshake()
        seen: set[str] = set()
        pages = self._client.iterate_message_ids(workflow_filter=workflow_id, batch_size=PAGE_SIZE)
        while True:
            try:
                message_id = next(pages)
            except StopIteration:
                return
            except (requests.RequestException, MeshError) as exc:
                self._fail("list inbox", exc)
            if message_id in seen:
                continue
            seen.add(message_id)
            yield message_id

    def retrieve(self, message_id: str) -> Received:
        """Download one message whole (all chunks). Does NOT acknowledge it."""
        self.ensure_handshake()

        def _read() -> Received:
            msg = self._client.retrieve_message(message_id)
            try:
                body = msg.read()
            finally:
                msg.close()
            return Received(
                message_id=str(msg.message_id or message_id),
                subject=msg.subject,
                local_id=msg.local_id,
                workflow_id=msg.workflow_id,
                sender=msg.sender,
                filename=msg.filename,
                message_type=msg.message_type,
                status=msg.mex_header("statussuccess"),
                body=body or b"",
                status_description=msg.mex_header("statusdescription"),
                linked_message_id=msg.mex_header("linkedmsgid"),
            )

        result: Received = self._call("retrieve message", _read)
        return result

    def acknowledge(self, message_id: str) -> None:
        """Remove a message from the inbox. Call only once what it carried is stored."""
        self._call("acknowledge message", self._client.acknowledge_message, message_id)

    def wait(self, seconds: float) -> None:  # a seam for tests
        time.sleep(seconds)


# --- A local MESH for development -------------------------------------------------------------
# ``optout sandbox start`` (optout.service.sandbox) runs NHS England's mesh-sandbox on loopback and
# advertises it in ``<home>/sandbox/sandbox.json`` (owner-only: it holds the shared key). When no
# MESH URL is configured, the code that needs MESH settings calls :func:`with_local_sandbox`, which
# uses that advertisement if the process it names is still running. Configuration itself knows
# nothing of the sandbox; a configured mailbox is never replaced.

ORG_MAILBOX = "X26ORG001"
SERVICE_MAILBOX = DEFAULT_RECIPIENT  # "X26HC065", the live check service's mailbox id
SANDBOX_PASSWORD = "password"  # mesh-sandbox file mode: every mailbox folder has this password
STATE_FILE = "sandbox.json"


@dataclass
class SandboxInfo:
    url: str
    port: int
    pid: int
    shared_key: str
    data_dir: str
    org_mailbox: str = ORG_MAILBOX
    service_mailbox: str = SERVICE_MAILBOX
    responder_pid: int | None = None
    state_dir: str | None = None
    register_path: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _alive(pid: int | None, marker: str) -> bool:
    """The process exists, is not a zombie, and its command line is the one we started."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return marker in " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _sandbox_marker() -> str:
    return "mesh_sandbox.api:app"


def _responder_marker() -> str:
    return "optout service run"


def _read_state(state_dir: Path) -> SandboxInfo | None:
    path = Path(state_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return SandboxInfo(**data)
    except (ValueError, TypeError):
        return None


def sandbox_status(state_dir: Path) -> SandboxInfo | None:
    """The running sandbox recorded in ``state_dir``, or None (stale state is not trusted)."""
    info = _read_state(Path(state_dir))
    if info is None or not _alive(info.pid, _sandbox_marker()):
        return None
    if info.responder_pid and not _alive(info.responder_pid, _responder_marker()):
        info.responder_pid = None
    return info


def _settings(info: SandboxInfo, mailbox: str) -> MeshSettings:
    return MeshSettings(
        url=info.url,
        mailbox=mailbox,
        password=SANDBOX_PASSWORD,
        shared_key=info.shared_key,
        recipient=info.service_mailbox,
        workflow_id=WORKFLOW_ID,
    )


def org_settings(info: SandboxInfo) -> MeshSettings:
    """The organisation's mailbox on the sandbox (sends to the service mailbox)."""
    return _settings(info, info.org_mailbox)


def service_settings(info: SandboxInfo) -> MeshSettings:
    """The central service's mailbox on the sandbox."""
    return _settings(info, info.service_mailbox)


def default_state_dir(home: Path) -> Path:
    return Path(home) / "sandbox"


def with_local_sandbox(settings: Settings, *, env: Mapping[str, str] | None = None) -> Settings:
    """``settings`` with its MESH mailbox filled from a running local sandbox when no URL is set.

    Returns ``settings`` itself (changed in place) so callers can write ``s = with_local_sandbox(s)``.
    ``OPTOUT_MESH_NO_SANDBOX=1`` turns the fallback off.
    """
    env = os.environ if env is None else env
    if settings.mesh.url or env.get("OPTOUT_MESH_NO_SANDBOX") == "1":
        return settings
    info = sandbox_status(default_state_dir(settings.home))
    if info is None:
        return settings
    local = org_settings(info)
    settings.mesh.url = local.url
    settings.mesh.mailbox = settings.mesh.mailbox or local.mailbox
    settings.mesh.password = settings.mesh.password or local.password
    settings.mesh.shared_key = settings.mesh.shared_key or local.shared_key
    settings.mesh.recipient = info.service_mailbox
    return settings

"""Run NHS England's ``mesh-sandbox`` on this machine, with the reference service's responder.

``start_sandbox`` starts ``uvicorn mesh_sandbox.api:app`` as a background process on 127.0.0.1 at a
free port, in file mode (``STORE_MODE=file``: messages survive a restart of the sandbox) with a
random shared key, and two mailboxes: the organisation's (``X26ORG001``) and the central check
service's (``X26HC065``). In file mode every UPPERCASE folder of ``MAILBOXES_DATA_DIR`` is a
mailbox whose password is ``password``. It then starts the responder (``optout service run``) on
the service mailbox, also in the background, and records both in ``<state_dir>/sandbox.json``
(readable by the owner only: it holds the shared key).

``optout sandbox start|stop|status`` and the test fixtures use these functions. Reading the state
file back (``sandbox_status``) and the fallback to a running sandbox when no MESH URL is configured
(``with_local_sandbox``) live in :mod:`optout.mesh`, so organisation code never imports this
launcher.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

import psutil
import requests

from optout import atomic
from optout.errors import TransportError, UsageError
from optout.mesh import (
    ORG_MAILBOX,
    SANDBOX_PASSWORD,
    SERVICE_MAILBOX,
    STATE_FILE,
    SandboxInfo,
    _alive,
    _read_state,
    _responder_marker,
    _sandbox_marker,
    default_state_dir,
    org_settings,
    sandbox_status,
    service_settings,
)

__all__ = [
    "ORG_MAILBOX",
    "SANDBOX_PASSWORD",
    "SERVICE_MAILBOX",
    "SandboxInfo",
    "default_state_dir",
    "org_settings",
    "reset_sandbox",
    "sandbox_status",
    "service_settings",
    "start_sandbox",
    "stop_sandbox",
]

READY_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(url: str, timeout: float = 2.0) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _write_state(state_dir: Path, info: SandboxInfo) -> None:
    path = state_dir / STATE_FILE
    tmp = state_dir / f".{STATE_FILE}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(info.to_json())
    os.replace(tmp, path)


def _private_log(path: Path) -> BinaryIO:
    """A log file opened for appending, owner-only (0600) from its creation."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    atomic.tighten(path)
    return os.fdopen(fd, "ab")


def _terminate(pid: int | None, marker: str, *, grace: float = 5.0) -> None:
    """Stop a process we started (checked by its command line), its children with it."""
    if not _alive(pid, marker):
        return
    assert pid is not None
    try:
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        proc.terminate()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        _gone, alive = psutil.wait_procs([proc, *children], timeout=grace)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    except psutil.NoSuchProcess:
        return


def _spawn_sandbox(data_dir: Path, port: int, shared_key: str, log_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "STORE_MODE": "file",
            "MAILBOXES_DATA_DIR": str(data_dir),
            "SHARED_KEY": shared_key,
            "AUTH_MODE": "full",  # anything but "none"/"canned": the HMAC token is checked
            "ENV": "optout-sandbox",
        }
    )
    with _private_log(log_path) as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                _sandbox_marker(),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the command that started it
            umask=0o077,  # its mailbox files hold the messages (NHS numbers): owner-only
        )


def _spawn_responder(info: SandboxInfo, state_dir: Path, register_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    # the service mailbox's credentials go through the environment, never the command line
    env.update(
        {
            "OPTOUT_SERVICE_MESH_URL": info.url,
            "OPTOUT_SERVICE_MESH_MAILBOX": info.service_mailbox,
            "OPTOUT_SERVICE_MESH_PASSWORD": SANDBOX_PASSWORD,
            "OPTOUT_SERVICE_MESH_SHARED_KEY": info.shared_key,
        }
    )
    with _private_log(state_dir / "responder.log") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optout",
                "service",
                "run",
                "--register",
                str(register_path),
                "--poll",
                "0.5",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077,  # the register it keeps holds NHS numbers: owner-only
        )


def start_sandbox(
    state_dir: Path,
    *,
    port: int | None = None,
    with_responder: bool = True,
    register_path: Path | None = None,
    ready_timeout: float = READY_TIMEOUT,
) -> SandboxInfo:
    """Start the sandbox (and responder) unless already running; wait until it answers.

    Idempotent: when a sandbox recorded in ``state_dir`` is running it is returned as is (and a
    missing responder is started when ``with_responder``).
    """
    state_dir = Path(state_dir)
    atomic.private_dir(state_dir)  # the state file holds the shared key; the mailboxes, messages
    existing = sandbox_status(state_dir)
    if existing is not None:
        if with_responder and not _alive(existing.responder_pid, _responder_marker()):
            reg = Path(existing.register_path or (register_path or state_dir.parent / "service"))
            existing.responder_pid = _spawn_responder(existing, state_dir, reg).pid
            existing.register_path = str(reg)
            _write_state(state_dir, existing)
        return existing
    data_dir = state_dir / "data"
    if data_dir.exists():  # left by a sandbox that was killed: start clean
        shutil.rmtree(data_dir)
    for mailbox in (ORG_MAILBOX, SERVICE_MAILBOX):
        atomic.private_dir(data_dir / mailbox / "in")
    shared_key = secrets.token_hex(16)
    log_path = state_dir / "sandbox.log"
    attempts = 1 if port else 3
    last_error = ""
    for _ in range(attempts):
        use_port = port or _free_port()
        url = f"http://127.0.0.1:{use_port}"
        proc = _spawn_sandbox(data_dir, use_port, shared_key, log_path)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = f"the sandbox process exited with code {proc.returncode}"
                break
            if ping(url, timeout=1.0):
                info = SandboxInfo(
                    url=url,
                    port=use_port,
                    pid=proc.pid,
                    shared_key=shared_key,
                    data_dir=str(data_dir),
                    state_dir=str(state_dir),
                )
                if with_responder:
                    reg = Path(register_path or state_dir.parent / "service")
                    info.register_path = str(reg)
                    info.responder_pid = _spawn_responder(info, state_dir, reg).pid
                _write_state(state_dir, info)
                return info
            time.sleep(0.1)
        else:
            last_error = f"it did not answer within {ready_timeout:.0f} s"
            _terminate(proc.pid, _sandbox_marker())
    raise TransportError(
        f"could not start mesh-sandbox: {last_error}",
        hint=f"see {log_path} for the sandbox's own messages; check mesh-sandbox and uvicorn are "
        "installed (`pip install -e .`)" + ("" if not port else f" and that port {port} is free"),
    )


def stop_sandbox(state_dir: Path) -> bool:
    """Stop the responder and the sandbox, remove their state. Returns whether anything ran."""
    state_dir = Path(state_dir)
    info = _read_state(state_dir)
    if info is None:
        return False
    was_running = _alive(info.pid, _sandbox_marker())
    _terminate(info.responder_pid, _responder_marker())
    _terminate(info.pid, _sandbox_marker())
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    shutil.rmtree(state_dir / "data", ignore_errors=True)
    return was_running


def reset_sandbox(info: SandboxInfo) -> None:
    """Empty every mailbox. In file mode a reset reloads from disk, so clear the disk first."""
    data_dir = Path(info.data_dir)
    for mailbox_dir in data_dir.iterdir() if data_dir.is_dir() else ():
        inbox = mailbox_dir / "in"
        if inbox.is_dir():
            shutil.rmtree(inbox)
            inbox.mkdir(mode=0o700)
    try:
        response = requests.delete(f"{info.url}/admin/reset", timeout=10)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise TransportError(
            f"could not reset the sandbox at {info.url}: {exc.__class__.__name__}",
            hint="is it running? `optout sandbox status`; start it with `optout sandbox start`",
        ) from None


def require_running(state_dir: Path) -> SandboxInfo:
    info = sandbox_status(state_dir)
    if info is None:
        raise UsageError(
            "the MESH sandbox is not running",
            hint="start it with `optout sandbox start`, or configure a real mailbox (OPTOUT_MESH_URL ...)",
        )
    return info

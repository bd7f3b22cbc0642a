"""A throw-away PostgreSQL server for tests: initdb in a temp dir, loopback only, trust auth.

Uses the server binaries of the machine (Debian's postgresql package). When the tests run as
root the server runs as the ``postgres`` system user, since PostgreSQL refuses to run as root.
Set ``OPTOUT_TEST_PG_URL`` to use an existing server instead.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _bindir() -> Path:
    for cand in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(cand, "initdb").exists():
            return Path(cand)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: install Debian's 'postgresql' package "
        "or set OPTOUT_TEST_PG_URL to a server the tests may create databases on"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(prefix: list[str], bindir: Path, data: Path, sock: Path, log: Path) -> int:
    """Start the server on a free port; return the port.

    A free port is only free until someone else takes it (other test runs share the machine, and
    initdb takes a while): it is picked just before the start, and another one is tried if the
    server could not have it. ``pg_ctl -w`` waits, generously, until the server answers.
    """
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    for _attempt in range(3):
        port = _free_port()
        opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = subprocess.run(
            [*pg_ctl, "-o", opts, "-w", "-t", "120", "-l", str(log), "start"], capture_output=True
        )
        if started.returncode == 0:
            return port
        # a server still starting when -t ran out would hold the data folder: stop it first
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"PostgreSQL did not start: {started.stderr.decode(errors='replace')}\n{tail}")


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh database on a fresh server; stop it afterwards."""
    if os.environ.get("OPTOUT_TEST_PG_URL"):
        yield os.environ["OPTOUT_TEST_PG_URL"]
        return
    bindir = _bindir()
    # not under pytest's tmp dir: its parents are private to us, and the server may run as
    # another user (postgres) that must be able to reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="optout-pg-"))
    os.chmod(base, 0o755)
    data = base / "pgdata"
    sock = base / "sock"
    data.mkdir(parents=True)
    sock.mkdir()
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        shutil.chown(base, "postgres")
        shutil.chown(data, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(base, 0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "optout", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    try:
        port = _start(prefix, bindir, data, sock, base / "log.txt")
        dbname = "optout_" + uuid.uuid4().hex[:8]
        deadline = time.monotonic() + 60  # generous: the server already answered pg_ctl -w
        while True:
            r = subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "optout", dbname],
                capture_output=True,
            )
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"createdb failed: {r.stderr.decode(errors='replace')}")
            time.sleep(0.2)
        yield f"postgresql+psycopg://optout@127.0.0.1:{port}/{dbname}"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)

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
    port = _free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "optout", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-w",
            "-t",
            "60",
            "-l",
            str(base / "log.txt"),
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        dbname = "optout_" + uuid.uuid4().hex[:8]
        for _ in range(50):
            r = subprocess.run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "optout", dbname],
                capture_output=True,
            )
            if r.returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"createdb failed: {r.stderr.decode(errors='replace')}")
        yield f"postgresql+psycopg://optout@127.0.0.1:{port}/{dbname}"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)

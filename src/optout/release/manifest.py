"""The release folder, written atomically, and its manifest ``release.json``.

Everything is written into a hidden sibling ``.OUT.tmp-<pid>-<random>`` in the same folder, then
renamed into place in one step, so a reader sees either no release or the whole release. On any
error, Ctrl-C or SIGTERM the temporary folder is removed; after a SIGKILL or power cut it stays
hidden and the next ``apply`` into the same folder removes it. ``release.json`` is written last,
only after the release is recorded "preparing", so a left folder holding one is known to the store
and is removed by the next ``apply`` or ``release list`` (:mod:`optout.release.recover`). With
``force`` an existing release is renamed away, the new one renamed in, then the old one deleted.

The manifest lists every output file with its SHA-256 and row count (``files``: the format that
``optout.release.lifecycle`` verifies before a disclosure), every input with its SHA-256, the cleaned
list's SHA-256 and check time, the disclosure deadline (001 §8.4), the choices made, the tool
version, and the counts. Never an NHS number.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optout import atomic
from optout.digest import sha256_file
from optout.errors import OutputError

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "StagedRelease",
    "atomic_write_bytes",
    "sha256_file",
    "staged_release",
]

MANIFEST_NAME = "release.json"
MANIFEST_FORMAT = "optout-release/1"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a small file atomically (temporary sibling, fsync, rename)."""
    from optout.release.engines.base import output_error

    try:
        atomic.write_bytes(path, data)
    except OSError as exc:
        raise output_error(exc, path) from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(out: Path) -> None:
    """Remove temporary folders left by an earlier run into ``out`` that was killed."""
    prefix = f".{out.name}.tmp-"
    with contextlib.suppress(OSError):
        for p in out.parent.iterdir():
            if not p.name.startswith(prefix) or not p.is_dir():
                continue
            try:
                pid = int(p.name[len(prefix) :].split("-", 1)[0])
            except ValueError:
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(p, ignore_errors=True)


class StagedRelease:
    def __init__(self, out: Path, tmp: Path, force: bool) -> None:
        self.out = out
        self.tmp = tmp
        self.force = force
        self.committed = False
        self.old: Path | None = None
        self.finished = False

    def path(self, name: str) -> Path:
        return self.tmp / name

    def commit(self) -> None:
        """Rename the finished temporary folder into place (replacing the old one with force).

        The folder is owner-only (0700, from ``mkdtemp``) and so is every file in it (0600, set
        here: engines create files with the umask's mode, unreachable inside the 0700 folder). A
        release is meant to be disclosed, but it is patient-level data: owner-only until someone
        deliberately shares it is the fail-closed choice.
        """
        for p in self.tmp.iterdir():
            if p.is_file() and not p.is_symlink():
                with p.open("rb") as fh:
                    os.fchmod(fh.fileno(), atomic.PRIVATE_FILE)
                    os.fsync(fh.fileno())
        _fsync_dir(self.tmp)
        old: Path | None = None
        try:
            if self.out.exists() or self.out.is_symlink():
                if not self.force:
                    raise OutputError(
                        f"{self.out} appeared while the release was being made",
                        hint="choose another --out folder, or add --force to replace it",
                    )
                old = self.out.with_name(f".{self.out.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
                os.rename(self.out, old)
            os.rename(self.tmp, self.out)
        except OSError as exc:
            if old is not None and not self.out.exists():
                with contextlib.suppress(OSError):
                    os.rename(old, self.out)
            from optout.release.engines.base import output_error

            raise output_error(exc, self.out) from None
        self.committed = True
        self.old = old
        _fsync_dir(self.out.parent)

    def finish(self) -> None:
        """After the release is recorded: delete the release it replaced (with force)."""
        if self.old is not None:
            shutil.rmtree(self.old, ignore_errors=True)
            self.old = None
        self.finished = True

    def rollback(self) -> None:
        """Undo a commit (used when recording the release fails): the folder goes away."""
        if self.committed:
            with contextlib.suppress(OSError):
                os.rename(self.out, self.tmp)
            if self.old is not None:
                with contextlib.suppress(OSError):
                    os.rename(self.old, self.out)
                self.old = None
            self.committed = False
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_out_dir(out: Path, *, force: bool) -> None:
    if out.exists() and not force:
        raise OutputError(
            f"{out} already exists",
            hint="choose another --out folder, or add --force to replace it (atomically)",
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} exists and is not a folder", hint="choose another --out path")
    parent = out.parent
    if not parent.exists():
        raise OutputError(
            f"the folder {parent} does not exist",
            hint="create it first, or choose another --out path",
        )
    if not parent.is_dir():
        raise OutputError(f"{parent} is not a folder", hint="choose another --out path")


class _Terminated(BaseException):
    pass


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """Turn SIGTERM into an exception while staging, so the temporary folder is removed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # pragma: no cover - not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def staged_release(out: Path, *, force: bool) -> Iterator[StagedRelease]:
    """A temporary folder beside ``out``; removed unless committed."""
    out = Path(os.path.abspath(out))
    check_out_dir(out, force=force)
    _remove_stale(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        from optout.release.engines.base import output_error

        raise output_error(exc, out) from None
    staged = StagedRelease(out, tmp, force)
    try:
        with _sigterm_as_exception():
            yield staged
    except _Terminated:
        if not staged.finished:
            staged.rollback()
        raise KeyboardInterrupt from None
    except BaseException:
        if not staged.finished:
            staged.rollback()
        raise
    finally:
        if not staged.committed and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")

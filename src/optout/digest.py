"""SHA-256 of files, and of a command's input files hashed while its libraries load.

The release manifest records every input's SHA-256. ``optout apply`` spends its first ~0.4 s
loading libraries on one core (imports hold the GIL); hashing runs without the GIL, so the
command line starts hashing its input files at once (``hash_early``), on the idle core, and
``apply`` takes each result (``early_sha256``) only when the file is unchanged since: same device,
inode, size and modification time before and after it was read, and now. Anything else (another
file, a file that changed, an error) is hashed again by the caller, as if nothing had been done
early. Nothing is stored but the digests, in memory.

``Early`` is that mechanism for any work on a file (``optout.dat`` reads the cleaned list with
it): a result is handed over only for the file as it was while the work read it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["Early", "early_sha256", "hash_early", "sha256_file"]

T = TypeVar("T")

_BLOCK = 1 << 20


def sha256_file(path: Path) -> str:
    """The file's SHA-256 (hex)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Early(Generic[T]):
    """Work on files started ahead of need on a daemon thread (``start``), each result kept with
    the identity its file had while the work read it, and handed over (``get``) only while the
    file still has it. A failure is dropped: the caller does the work itself and reports it."""

    def __init__(self, work: Callable[[Path], T], name: str) -> None:
        self._work = work
        self._name = name
        self._done: dict[Path, tuple[tuple[int, int, int, int], T]] = {}
        self._pending: dict[Path, threading.Event] = {}
        self._lock = threading.Lock()

    def start(self, paths: Iterable[Path]) -> None:
        todo = []
        with self._lock:
            for p in paths:
                p = Path(os.path.abspath(p))
                if p not in self._pending and p not in self._done:
                    self._pending[p] = threading.Event()
                    todo.append(p)
        if todo:
            # a daemon: a command that stops early (a usage error) does not wait for it
            threading.Thread(target=self._run, args=(todo,), name=self._name, daemon=True).start()

    def _run(self, paths: list[Path]) -> None:
        for p in paths:
            try:
                before = _identity(p)
                if before is not None:
                    result = self._work(p)
                    if _identity(p) == before:
                        with self._lock:
                            self._done[p] = (before, result)
            except Exception:  # the caller does it again and reports what it finds
                pass
            finally:
                with self._lock:
                    event = self._pending.pop(p)
                event.set()

    def get(self, path: Path, *, keep: bool = True) -> T | None:
        """The result for ``path`` (waiting for it if under way) when the file is unchanged since;
        None otherwise. ``keep=False`` hands it over once (the memory goes with it)."""
        p = Path(os.path.abspath(path))
        with self._lock:
            event = self._pending.get(p)
        if event is not None:
            event.wait()
        with self._lock:
            found = self._done.get(p) if keep else self._done.pop(p, None)
        if found is None or _identity(p) != found[0]:
            return None
        return found[1]


_EARLY: Early[str] = Early(lambda p: sha256_file(p), "optout-sha256-early")  # looked up at each call


def hash_early(paths: Iterable[str | Path]) -> None:
    """Start hashing these files (those that are regular files) on a thread; returns at once."""
    _EARLY.start(Path(p) for p in paths if Path(p).is_file())


def early_sha256(path: Path) -> str | None:
    """The SHA-256 ``hash_early`` took of ``path`` (waiting for it if under way), when the file is
    unchanged since; None when it was not hashed early or may have changed."""
    return _EARLY.get(path)

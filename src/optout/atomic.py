"""Files at rest: atomic writes, and owner-only files and folders whatever the umask.

Atomic writes: a temporary sibling, fsync, then rename over the target. A crash or Ctrl-C at any
point leaves either the old file or the new one, never a partial file, and no temporary file
behind (best effort: a SIGKILL can leave a hidden ``.NAME.*.tmp``, which is never mistaken for
the output). Raises ``OSError``; callers turn it into the ``OutputError`` whose hint fits their
setting.

Owner-only (001 §8.5, DEVELOPERS.md "Security properties"): every file or folder optout creates
that holds patient-level or opt-out data -- the reference service's register and snapshots, check
request files, cleaned lists, the cache and its key, release folders, spill folders, and (when it
exists) what the web app receives as uploads -- is created 0600 / 0700 *as it is created*, so there
is no moment when another account could read it, whatever the umask. The metadata database and
``OPTOUT_HOME`` are owner-only by default too. The helpers:

- :func:`write_bytes`: the temporary file is made 0600 by ``mkstemp`` and the rename keeps it;
- :func:`private_dir`: ``mkdir(0o700)`` for the folder and every missing parent;
- :func:`create_private_file`: an empty 0600 file for a third-party creator (SQLite) to open;
- :func:`private_tempdir` / :func:`spill_dir`: 0700 folders in the system temporary folder named
  with the process id, removed on every exit path; those a killed process left are swept by the
  next one (:func:`sweep_temp`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "SPILL_PREFIX",
    "TEMP_PREFIXES",
    "create_private_file",
    "open_to_others",
    "private_dir",
    "private_tempdir",
    "require_new_target",
    "spill_dir",
    "stale_temp_dirs",
    "sweep_temp",
    "tighten",
    "write_bytes",
]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
SPILL_PREFIX = "optout-spill-"  # DuckDB temp_directory folders: <prefix><pid>-<random>
TEMP_PREFIXES = (SPILL_PREFIX, "optout-linkcheck-")  # every temporary folder optout makes


def require_new_target(path: Path, *, force: bool) -> None:
    """Refuse an output file that exists (unless ``force``) or whose folder does not exist."""
    from optout.errors import Location, OutputError

    if path.exists() and not force:
        raise OutputError(
            f"{path.name} already exists",
            where=Location(file=path),
            hint="choose a new --out, or add --force to replace it",
        )
    if not path.parent.is_dir():
        raise OutputError(
            f"the folder for {path.name} does not exist",
            where=Location(file=path),
            hint=f"create {path.parent} first, or choose another --out",
        )


def write_bytes(path: str | Path, data: bytes, *, private: bool = True) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only (0600).

    The temporary file is created 0600 (``mkstemp``) and renamed into place, so the data is never
    readable by others, not even for a moment. ``private=False`` (for a file meant to be shared
    that holds no patient data) gives the final file the usual mode, 0666 less the umask.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if not private:
            os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_umask_lock = threading.Lock()


def _current_umask() -> int:
    with _umask_lock:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def open_to_others(path: str | Path) -> int:
    """The group and other permission bits of ``path`` (0 when owner-only; symlinks not followed)."""
    return stat.S_IMODE(os.lstat(path).st_mode) & 0o077


def tighten(path: str | Path) -> None:
    """Take the group and other bits off a file or folder of ours (one made by an older version)."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_IMODE(st.st_mode) & 0o077 or st.st_uid != os.getuid():
        return
    os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)


def private_dir(path: str | Path, *, tighten_existing: bool = True) -> Path:
    """Create the folder ``path`` and its missing parents owner-only (0700), whatever the umask.

    A folder that exists already is tightened to owner-only when ``tighten_existing`` (for the
    folders optout names and owns, e.g. ``<home>/check/requests``); pass False for a folder the
    user may have chosen (``OPTOUT_HOME`` itself, the folder of a configured file), which is then
    left as it is (``optout doctor`` reports it). Raises ``OSError``.
    """
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, PRIVATE_DIR)  # the umask can only take bits away: never wider than 0700
        except FileExistsError:
            continue  # made by another process meanwhile
        os.chmod(d, PRIVATE_DIR)  # give back owner bits an unusual umask took away
    if not path.is_dir():
        raise NotADirectoryError(20, "not a folder", str(path))
    if tighten_existing and not missing:
        tighten(path)
    return path


def create_private_file(path: str | Path) -> bool:
    """Create ``path`` empty and owner-only (0600) unless it exists; True if it was created.

    For files a third party creates on first use (SQLite's database file: SQLite then opens the
    file we made, and gives its ``-wal``/``-shm``/``-journal`` files the database file's mode).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


# --------------------------------------------------------------------------- temporary folders


def _pid_of(name: str, prefix: str) -> int | None:
    try:
        return int(name[len(prefix) :].split("-", 1)[0])
    except ValueError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temp_dirs(root: str | Path | None = None) -> list[Path]:
    """Temporary folders of ours that a killed process left in ``root`` (default: system temp)."""
    root = Path(root or tempfile.gettempdir())
    found: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return found
    for entry in entries:
        prefix = next((p for p in TEMP_PREFIXES if entry.name.startswith(p)), None)
        if prefix is None:
            continue
        pid = _pid_of(entry.name, prefix)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if (
            pid is not None
            and pid != os.getpid()
            and stat.S_ISDIR(st.st_mode)
            and st.st_uid == os.getuid()
            and not _pid_alive(pid)
        ):
            found.append(Path(entry.path))
    return found


def sweep_temp(root: str | Path | None = None) -> int:
    """Remove the temporary folders killed processes left (see :func:`stale_temp_dirs`)."""
    gone = 0
    for p in stale_temp_dirs(root):
        shutil.rmtree(p, ignore_errors=True)
        gone += not p.exists()
    return gone


def _make_tempdir(prefix: str) -> Path:
    sweep_temp()
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))  # mkdtemp: 0700


@contextlib.contextmanager
def private_tempdir(prefix: str = SPILL_PREFIX) -> Iterator[Path]:
    """A 0700 folder ``<system temp>/<prefix><pid>-<random>``, removed on every exit path.

    ``prefix`` must be one of :data:`TEMP_PREFIXES`, so a folder a killed process left behind is
    recognised and swept by the next run (the process id in its name is no longer alive).
    """
    if prefix not in TEMP_PREFIXES:
        raise ValueError(f"prefix must be one of {TEMP_PREFIXES}")
    path = _make_tempdir(prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


_spill: Path | None = None
_spill_lock = threading.Lock()


def spill_dir() -> Path:
    """This process's private spill folder (a DuckDB ``temp_directory``), removed at exit.

    Made once, on first use, 0700; a folder a killed process left is swept by the next one.
    """
    global _spill
    with _spill_lock:
        if _spill is None or not _spill.is_dir() or _pid_of(_spill.name, SPILL_PREFIX) != os.getpid():
            _spill = _make_tempdir(SPILL_PREFIX)
            atexit.register(shutil.rmtree, _spill, True)
        return _spill

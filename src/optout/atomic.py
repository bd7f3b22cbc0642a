"""Atomic file writes: a temporary sibling, fsync, then rename over the target.

A crash or Ctrl-C at any point leaves either the old file or the new one, never a partial file,
and no temporary file behind (best effort: a SIGKILL can leave a hidden ``.NAME.*.tmp``, which is
never mistaken for the output). Raises ``OSError``; callers turn it into the ``OutputError`` whose
hint fits their setting.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["require_new_target", "write_bytes"]


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


def write_bytes(path: str | Path, data: bytes, *, private: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``private``: readable by the owner only (0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if private:
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

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

__all__ = ["write_bytes"]


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

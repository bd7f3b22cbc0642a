"""What a command that runs until stopped does first."""

from __future__ import annotations

import gc

__all__ = ["long_running"]


def long_running() -> None:
    """The garbage collector back on: the script turns it off while a command runs (it loads its
    libraries and ends; see ``optout.cli.run``), which a server must not."""
    gc.enable()

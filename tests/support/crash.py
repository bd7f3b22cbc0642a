"""Run the real command line (what ``python -m optout ARGS...`` runs) and SIGKILL it at one step.

    python tests/support/crash.py STEP ARGS...
    python tests/support/crash.py --stop STEP ARGS...

With ``--stop`` the process stops itself there (SIGSTOP) instead: the test waits for that
(``waitpid`` with ``WUNTRACED``), sends its signal, then SIGCONT, and the signal is handled at that
very point.

Before the command starts, one function on its path is wrapped so that the process kills itself
with SIGKILL (no handler runs, no cleanup: as the OOM killer or a power cut) right before or
right after that function. No timing is involved: the same step is hit on every run. The test
hook lives here, not in the product.

``crash_optout`` runs it with its own OPTOUT_HOME, like ``tests.support.cli.run_optout``.
"""

from __future__ import annotations

import functools
import importlib
import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

# step -> (module[:class], function, "before" | "after"), in the order ``optout apply`` passes them
APPLY_STEPS: dict[str, tuple[str, str, str]] = {
    # the data files are in the hidden staging folder; nothing recorded, no release.json
    "writing": ("optout.release.make", "_manifest", "before"),
    # the release is recorded "preparing" (and audited); release.json not written yet
    "preparing": ("optout.release.make", "_record_preparing", "after"),
    # release.json is in the staging folder; the folder is not renamed into place
    "renaming": ("optout.release.manifest:StagedRelease", "commit", "before"),
    # with --force: the old release moved aside, the new one not yet renamed in (see _between_renames)
    "between-renames": ("", "", ""),
    # the release folder is in place, still recorded "preparing" (the fault of issue 7)
    "renamed": ("optout.release.manifest:StagedRelease", "commit", "after"),
    # recorded "prepared"; a release replaced with --force not deleted yet
    "prepared": ("optout.release.recover:Attempt", "prepared", "after"),
    # all done; the report not printed yet
    "finished": ("optout.release.manifest:StagedRelease", "finish", "after"),
    # classified, the staging folder made, the first table about to be written (default engine)
    "writing-table": ("optout.release.engines.polars:PolarsEngine", "write", "before"),
}
# steps of ``optout release list`` (reconciling what an interrupted apply left)
LIST_STEPS: dict[str, tuple[str, str, str]] = {
    # the staging folder is removed (or the old release put back); the release not marked failed yet
    "reconcile-before-failed": ("optout.release.recover", "mark_failed", "before"),
}


def _kill() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _stop() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSTOP)


_action: Callable[[], None] = _kill


def _wrap(target: str, name: str, when: str) -> None:
    module, _, cls = target.partition(":")
    owner: Any = importlib.import_module(module)
    if cls:
        owner = getattr(owner, cls)
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when == "before":
            _action()
        result = original(*args, **kwargs)
        _action()
        return result

    setattr(owner, name, wrapper)


def _between_renames() -> None:
    """Kill inside ``StagedRelease.commit`` just before the staging folder is renamed to OUT."""
    import optout.release.manifest as manifest

    real = manifest.os

    class _Os:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        @staticmethod
        def rename(src: Any, dst: Any) -> None:
            if Path(src).name.startswith(f".{Path(dst).name}.tmp-"):
                _action()
            real.rename(src, dst)

    manifest.os = _Os()  # type: ignore[assignment]


def install(step: str) -> None:
    if step == "between-renames":
        _between_renames()
        return
    target, name, when = {**APPLY_STEPS, **LIST_STEPS}[step]
    _wrap(target, name, when)


def crash_optout(
    home: Path, step: str, *args: str, actor: str = "ig-lead"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPTOUT_HOME": str(home), "OPTOUT_ACTOR": actor}
    env.pop("OPTOUT_DB_URL", None)
    env.pop("OPTOUT_CONFIG", None)
    return subprocess.run(
        [sys.executable, __file__, step, *args],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


if __name__ == "__main__":
    if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # this folder's modules (cli.py, ...) must not shadow anything
    if sys.argv[1] == "--stop":
        _action = _stop
        del sys.argv[1]
    install(sys.argv[1])
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    runpy.run_module("optout", run_name="__main__", alter_sys=True)

"""Run the real `optout` command line in a subprocess with its own OPTOUT_HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_optout(home: Path, *args: str, actor: str = "ig-lead") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPTOUT_HOME": str(home), "OPTOUT_ACTOR": actor}
    env.pop("OPTOUT_DB_URL", None)
    env.pop("OPTOUT_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "optout", *args],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def python_stdout(code: str, *, env_var: str, given: str | None) -> str:
    """What ``python -c code`` prints in a fresh process whose environment lacks ``env_var``, or
    sets it to ``given``: how a setting made when a module loads is tested (``setdefault``)."""
    env = {k: v for k, v in os.environ.items() if k != env_var}
    if given is not None:
        env[env_var] = given
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout

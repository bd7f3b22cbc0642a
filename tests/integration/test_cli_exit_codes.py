"""The documented exit codes of the command line itself (docs/reference/exit-codes.md)."""

from __future__ import annotations

import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optout", *args], capture_output=True, text=True)


def test_unknown_command_is_a_usage_error() -> None:
    r = _run("no-such-command")
    assert r.returncode == 2
    assert "No such command" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_argument_is_a_usage_error() -> None:
    r = _run("release", "disclose")
    assert r.returncode == 2
    assert "Missing argument" in r.stderr


def test_help_and_version_exit_zero() -> None:
    assert _run("--help").returncode == 0
    r = _run("--version")
    assert r.returncode == 0 and r.stdout.startswith("optout ")

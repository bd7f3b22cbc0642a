"""`make demo` is the main job: it must run to the end, leave its evidence, and print no NHS number."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.printed import nhs_numbers_in

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    # as a new user with a permissive umask would run it
    proc = subprocess.run(
        [sys.executable, "-m", "optout.demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        umask=0o000,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "demo-out"
    manifest = json.loads((out / "release" / "release.json").read_text())
    assert manifest["check"]["deadline"]
    assert (out / "evidence" / "evidence.html").is_file()
    assert "audit trail intact" in proc.stdout
    # the sandbox was stopped
    assert "sandbox stopped" in proc.stdout
    # nothing under OPTOUT_HOME readable by another account, no request file left, doctor clean
    home = out / ".optout"
    opened = [p for p in [home, *home.rglob("*")] if stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert opened == []
    # the demo's synthetic extract and release sit in an owner-only folder too
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert list((home / "check" / "requests").iterdir()) == []
    assert "$ optout doctor" in proc.stdout
    assert "no findings: the installation is clean" in proc.stdout
    # never an NHS number on screen
    for text in (proc.stdout, proc.stderr):
        assert nhs_numbers_in(text) == [], "an NHS number was printed"

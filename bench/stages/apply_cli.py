"""``optout apply ...`` as a user runs it: the whole process (start-up and imports included)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.core import Context

NAME = "apply_cli"
TITLE = "optout apply (command line, whole process)"
ORDER = 25
GROUP = "release"
ENGINE: str | None = None  # the default


def run_cli(ctx: Context, engine: str | None) -> dict[str, Any]:
    work = Path(ctx.work_dir)
    exe = Path(sys.executable).with_name("optout")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "optout"]
    cmd += ["apply", *ctx.tables.values(), "--cleaned-list", ctx.allow_path, "--checked-at", ctx.checked_at]
    for link in ctx.links:
        cmd += ["--link", link]
    if engine:
        cmd += ["--engine", engine]
    cmd += ["--out", str(work / "release"), "--report", str(work / "report.json")]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    report = json.loads((work / "report.json").read_text())
    return {"seconds": seconds, "rows_out": {t["name"]: t["rows_out"] for t in report["tables"]}}


def run(ctx: Context) -> dict[str, Any]:
    return run_cli(ctx, ENGINE)

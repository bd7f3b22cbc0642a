"""``optout.apply_opt_outs``: the whole tool (validate, classify, write, hash, manifest, record)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context

NAME = "apply_api"
TITLE = "optout.apply_opt_outs (Python API)"
ORDER = 20
GROUP = "release"


def run(ctx: Context) -> dict[str, Any]:
    from optout import apply_opt_outs

    t0 = time.perf_counter()
    report = apply_opt_outs(
        list(ctx.tables.values()),
        out_dir=Path(ctx.work_dir) / "release",
        cleaned_list=ctx.allow_path,
        checked_at=ctx.checked_at,
        links=ctx.links,
        unmatched="fail",
    )
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows_out": {t.name: t.rows_out for t in report.tables}}

"""``optout.apply_opt_outs(..., engine="spark")`` in Spark local mode, on the same extract as the
DuckDB engine (``apply_api``): validate, classify, count, write in order, hash, manifest, record.
Its ratio is against the hand-written PySpark semi-join (``spark_sql``, the ``spark`` group's
floor); the harness checks it kept exactly the rows every other release stage kept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context
from bench.stages.spark_session import start

NAME = "spark_apply"
TITLE = "optout.apply_opt_outs(engine='spark'), local[*]"
ORDER = 55
GROUP = "spark"
REPEAT = 1


def run(ctx: Context) -> dict[str, Any]:
    from optout import apply_opt_outs

    spark = start(ctx.work_dir)
    t0 = time.perf_counter()
    report = apply_opt_outs(
        list(ctx.tables.values()),
        out_dir=Path(ctx.work_dir) / "release",
        cleaned_list=ctx.allow_path,
        checked_at=ctx.checked_at,
        links=ctx.links,
        unmatched="fail",
        engine="spark",
        engine_options={"session": spark},
    )
    seconds = time.perf_counter() - t0
    spark.stop()
    return {
        "seconds": seconds,
        "rows_out": {t.name: t.rows_out for t in report.tables},
        "engine_details": report.engine_details,
    }

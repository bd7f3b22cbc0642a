"""Hand-written PySpark broadcast semi-join: what a data engineer writes on Spark without the tool.

The same filtering as ``duckdb_sql`` (the patients' text NHS numbers cleaned of spaces and
hyphens, episodes by their integer NHS number, procedures by the kept episodes), each a
``left_semi`` join against a broadcast list. No validation of NHS numbers, no counts, no report, no
manifest, no order kept on purpose: the lower bound of what Spark itself needs. It is the floor of
the ``spark`` group: ``spark_apply``'s ratio is measured against it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context
from bench.stages.spark_session import parquet_rows, start

NAME = "spark_sql"
TITLE = "hand-written PySpark broadcast semi-join (local[*])"
ORDER = 50
GROUP = "spark"
IS_FLOOR = True
REPEAT = 1


def run(ctx: Context) -> dict[str, Any]:
    from pyspark.sql import functions as F

    spark = start(ctx.work_dir)
    work = Path(ctx.work_dir)
    t0 = time.perf_counter()
    allow = spark.read.csv(ctx.allow_path, schema="n BIGINT, rest STRING").select(
        "n"
    )  # the .dat reply: number, then the rest of the line
    allow = F.broadcast(allow)

    def read(name: str) -> Any:
        path = ctx.tables[name]
        if ctx.format == "parquet":
            return spark.read.parquet(path)
        return spark.read.option("header", "true").csv(path)

    def write(df: Any, name: str) -> Path:
        out = work / Path(ctx.tables[name]).name
        if ctx.format == "parquet":
            df.write.parquet(str(out))
        else:
            df.write.option("header", "true").csv(str(out))
        return out

    patients = read("patients")
    cleaned = F.regexp_replace(F.trim(F.col("nhs_number")), "[ -]", "").try_cast("bigint")
    write(patients.join(allow, cleaned == allow["n"], "left_semi"), "patients")
    episodes = read("episodes")
    kept_episodes = write(episodes.join(allow, F.col("nhs_number") == allow["n"], "left_semi"), "episodes")
    kept_ids = spark.read.parquet(str(kept_episodes)) if ctx.format == "parquet" else None
    if kept_ids is None:
        kept_ids = spark.read.option("header", "true").csv(str(kept_episodes))
    ids = F.broadcast(kept_ids.select(F.col("episode_id").alias("k")))
    procedures = read("procedures")
    write(procedures.join(ids, F.col("episode_id") == ids["k"], "left_semi"), "procedures")
    seconds = time.perf_counter() - t0
    rows = {}
    if ctx.format == "parquet":
        rows = {name: parquet_rows(work / Path(ctx.tables[name]).name) for name in ctx.tables}
    spark.stop()
    return {"seconds": seconds, **({"rows_out": rows} if rows else {})}

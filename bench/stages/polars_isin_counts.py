"""Hand-written Polars with the report's counts: ``polars_isin`` plus, per table, the rows and the
distinct people kept and removed (the procedures' people through their episodes).

The figures ``optout apply`` reports (exact distinct people are a hash aggregate over every row's
person, as heavy as the semi-join itself), done the way a data engineer would do them by hand: one
pass over the key columns for the counts, one to filter and write. Still no validation, no
manifest, no atomic output. What it costs against ``polars_isin`` is what the counts cost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context
from bench.stages.floor_polars import rows_of, scan, sink
from bench.stages.polars_isin import allow_list, out_path

NAME = "polars_isin_counts"
TITLE = "hand-written Polars filter(is_in) with the report's counts (rows, distinct people)"
ORDER = 33
GROUP = "release"


def run(ctx: Context) -> dict[str, Any]:
    import polars as pl

    t0 = time.perf_counter()
    allow = allow_list(ctx)
    fmt, codec = ctx.format, ctx.extra.get("compression")
    counts: dict[str, dict[str, int]] = {}

    def out(name: str) -> Path:
        return out_path(ctx, name)

    def count(lf: Any, person: Any, kept: Any) -> dict[str, int]:
        got = lf.select(
            kept.sum().alias("rows_kept"),
            (~kept).sum().alias("rows_removed"),
            person.filter(kept).drop_nulls().n_unique().alias("people_kept"),
            person.filter(~kept).drop_nulls().n_unique().alias("people_removed"),
        ).collect(engine="streaming")
        return {k: int(v[0]) for k, v in got.to_dict(as_series=False).items()}

    if "patients" in ctx.tables:
        n = pl.col("nhs_number").str.replace_all(r"[ \-]", "").str.strip_chars().cast(pl.Int64, strict=False)
        lf = scan(ctx.tables["patients"], fmt)
        counts["patients"] = count(lf, n, n.is_in(allow).fill_null(False))
        sink(lf.filter(n.is_in(allow)), out("patients"), fmt, codec)
    episodes = scan(ctx.tables["episodes"], fmt)
    n = pl.col("nhs_number").cast(pl.Int64, strict=False)
    counts["episodes"] = count(episodes, n, n.is_in(allow).fill_null(False))
    sink(episodes.filter(n.is_in(allow)), out("episodes"), fmt, codec)
    if "procedures" in ctx.tables:
        key = pl.col("episode_id").cast(pl.Int64)
        ep = scan(ctx.tables["episodes"], fmt).select(key, n.alias("person"))
        ep = ep.with_columns(pl.col("person").is_in(allow).fill_null(False).alias("ok"))
        proc = scan(ctx.tables["procedures"], fmt)
        joined = proc.select(key).join(ep, on="episode_id", how="left")
        counts["procedures"] = count(joined, pl.col("person"), pl.col("ok").fill_null(False))
        ids = scan(str(out("episodes")), fmt).select(key).collect()["episode_id"].implode()
        sink(proc.filter(key.is_in(ids)), out("procedures"), fmt, codec)
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows_out": {name: rows_of(out(name), fmt) for name in ctx.tables},
        "counts": counts,
    }

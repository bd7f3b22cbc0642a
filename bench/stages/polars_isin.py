"""Hand-written Polars: ``filter(nhs_number.is_in(allow))``, streaming, row order kept.

What a data engineer writes with Polars instead of the tool: no validation, no report, no
manifest, no atomic output. The patients' text numbers are cleaned of spaces and hyphens first;
the procedures are filtered by the kept episodes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context
from bench.stages.floor_polars import rows_of, scan, sink

NAME = "polars_isin"
TITLE = "hand-written Polars filter(is_in), order kept"
ORDER = 32
GROUP = "release"


def allow_list(ctx: Context) -> Any:
    """The cleaned list read as a data engineer would (Polars CSV reader), ready for ``is_in``."""
    import polars as pl

    return pl.read_csv(
        ctx.allow_path, has_header=False, new_columns=["n", "rest"], schema_overrides={"n": pl.Int64}
    )["n"].implode()


def out_path(ctx: Context, name: str) -> Path:
    """Where a hand-written stage writes table ``name``."""
    return Path(ctx.work_dir) / Path(ctx.tables[name]).name


def run(ctx: Context) -> dict[str, Any]:
    import polars as pl

    t0 = time.perf_counter()
    allow = allow_list(ctx)
    fmt, codec = ctx.format, ctx.extra.get("compression")

    def out(name: str) -> Path:
        return out_path(ctx, name)

    if "patients" in ctx.tables:
        n = pl.col("nhs_number").str.replace_all(r"[ \-]", "").str.strip_chars().cast(pl.Int64, strict=False)
        sink(scan(ctx.tables["patients"], fmt).filter(n.is_in(allow)), out("patients"), fmt, codec)
    episodes = scan(ctx.tables["episodes"], fmt)
    n = pl.col("nhs_number").cast(pl.Int64, strict=False)
    sink(episodes.filter(n.is_in(allow)), out("episodes"), fmt, codec)
    if "procedures" in ctx.tables:
        key = pl.col("episode_id").cast(pl.Int64)
        ids = scan(str(out("episodes")), fmt).select(key).collect()["episode_id"].implode()
        sink(scan(ctx.tables["procedures"], fmt).filter(key.is_in(ids)), out("procedures"), fmt, codec)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows_out": {name: rows_of(out(name), fmt) for name in ctx.tables}}

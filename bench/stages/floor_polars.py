"""I/O floor: Polars copies every table unchanged, ``scan_* -> sink_*`` (streaming).

CSV is read with every column as text (values kept exactly as written), Parquet is written with
the source's codec. The fastest floor of the run is what every ratio is computed against.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context

NAME = "floor_polars"
TITLE = "I/O floor: Polars scan -> sink of the same files, unchanged"
ORDER = 11
GROUP = "release"
IS_FLOOR = True


def scan(path: str, fmt: str) -> Any:
    import polars as pl

    return pl.scan_parquet(path) if fmt == "parquet" else pl.scan_csv(path, infer_schema=False)


def sink(lf: Any, out: Path, fmt: str, compression: str | None) -> None:
    if fmt == "parquet":
        lf.sink_parquet(out, compression=compression or "snappy")
    else:
        lf.sink_csv(out)


def rows_of(path: Path, fmt: str) -> int:
    import polars as pl

    lf = pl.scan_parquet(path) if fmt == "parquet" else pl.scan_csv(path, infer_schema=False)
    return int(lf.select(pl.len()).collect().item())


def run(ctx: Context) -> dict[str, Any]:
    work = Path(ctx.work_dir)
    t0 = time.perf_counter()
    for path in ctx.tables.values():
        sink(scan(path, ctx.format), work / Path(path).name, ctx.format, ctx.extra.get("compression"))
    seconds = time.perf_counter() - t0
    rows = {name: rows_of(work / Path(path).name, ctx.format) for name, path in ctx.tables.items()}
    return {"seconds": seconds, "rows_out": rows}

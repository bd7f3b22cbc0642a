"""The I/O floor: DuckDB copies every table of the extract unchanged (same reader, same writer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context

NAME = "floor"
TITLE = "I/O floor: DuckDB COPY of the same files, unchanged"
ORDER = 10
GROUP = "release"
IS_FLOOR = True


def copy_options(fmt: str) -> str:
    return "FORMAT parquet, COMPRESSION snappy" if fmt == "parquet" else "FORMAT csv, HEADER true"


def scan(path: str, fmt: str) -> str:
    return f"read_parquet('{path}')" if fmt == "parquet" else f"read_csv('{path}')"


def run(ctx: Context) -> dict[str, Any]:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    rows = {}
    for name, path in ctx.tables.items():
        out = Path(ctx.work_dir) / Path(path).name
        sql = f"COPY (SELECT * FROM {scan(path, ctx.format)}) TO '{out}' ({copy_options(ctx.format)})"
        rows[name] = int(con.execute(sql).fetchone()[0])
    return {"seconds": time.perf_counter() - t0, "rows_out": rows}

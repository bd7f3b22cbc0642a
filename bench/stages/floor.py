"""I/O floor: DuckDB copies every table of the extract unchanged (same reader, same writer).

CSV is read with every column as text (values kept exactly as written), Parquet is written with
the source's codec: the same job as a release, minus the filtering.
"""

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


def copy_options(fmt: str, compression: str | None = None) -> str:
    if fmt == "parquet":
        return f"FORMAT parquet, COMPRESSION {(compression or 'snappy').upper()}"
    return "FORMAT csv, HEADER true"


def scan(path: str, fmt: str) -> str:
    return f"read_parquet('{path}')" if fmt == "parquet" else f"read_csv('{path}', all_varchar=true)"


def run(ctx: Context) -> dict[str, Any]:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    rows = {}
    opts = copy_options(ctx.format, ctx.extra.get("compression"))
    for name, path in ctx.tables.items():
        out = Path(ctx.work_dir) / Path(path).name
        sql = f"COPY (SELECT * FROM {scan(path, ctx.format)}) TO '{out}' ({opts})"
        row = con.execute(sql).fetchone()
        assert row is not None
        rows[name] = int(row[0])
    return {"seconds": time.perf_counter() - t0, "rows_out": rows}

"""Hand-written DuckDB semi-join SQL: what a data engineer writes without the tool.

No validation of NHS numbers, no report, no manifest, no atomic output: the lower bound of what
DuckDB itself needs to do the filtering.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context
from bench.stages.floor import copy_options, scan

NAME = "duckdb_sql"
TITLE = "hand-written DuckDB semi-join SQL"
ORDER = 30
GROUP = "release"


def run(ctx: Context) -> dict[str, Any]:
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect()
    con.execute(
        f"CREATE TABLE allow AS SELECT n FROM read_csv('{ctx.allow_path}', header=false, "
        "columns={'n': 'BIGINT', 'rest': 'VARCHAR'}, delim=',')"
    )
    work = Path(ctx.work_dir)
    opts = copy_options(ctx.format, ctx.extra.get("compression"))
    rows = {}

    def copy(name: str, where: str) -> None:
        out = work / Path(ctx.tables[name]).name
        sql = f"COPY (SELECT * FROM {scan(ctx.tables[name], ctx.format)} WHERE {where}) TO '{out}' ({opts})"
        row = con.execute(sql).fetchone()
        assert row is not None
        rows[name] = int(row[0])

    if "patients" in ctx.tables:  # NHS numbers as text, some spelled "943 476 5919"
        copy(
            "patients",
            "TRY_CAST(regexp_replace(trim(nhs_number), '[ -]', '', 'g') AS BIGINT) IN (SELECT n FROM allow)",
        )
    copy("episodes", "TRY_CAST(nhs_number AS BIGINT) IN (SELECT n FROM allow)")
    if "procedures" in ctx.tables:
        kept_episodes = scan(str(work / Path(ctx.tables["episodes"]).name), ctx.format)
        copy("procedures", f"episode_id IN (SELECT episode_id FROM {kept_episodes})")
    return {"seconds": time.perf_counter() - t0, "rows_out": rows}

"""Reading a released table as a recipient would, whether the engine wrote one file (DuckDB, the
reference) or a folder of parts (Spark: ``episodes.parquet/part-00000.parquet``, ... read in name
order)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from optout.tables import open_table, read_table


def parts(path: Path) -> list[Path]:
    """The data files of one released table, in order."""
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.name.startswith("part-"))
    return [path]


def read_output(path: Path) -> pa.Table:
    """The whole released table (parts concatenated in name order; a part with only a header or
    no rows adds nothing)."""
    tables = []
    for p in parts(path):
        if p.stat().st_size == 0:
            continue
        try:
            tables.append(read_table(open_table(p)))
        except Exception as exc:  # a part with a header and no rows
            if "no rows" in str(exc) or "no data rows" in str(exc):
                continue
            raise
    if not tables:
        raise AssertionError(f"{path} holds no rows and no header")
    first = tables[0]
    return pa.concat_tables([t.cast(first.schema) for t in tables])

"""Reading a released table as a recipient would, whether the engine wrote one file (DuckDB, the
reference) or a folder of parts (Spark: ``episodes.parquet/part-00000.parquet``, ... read in name
order)."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from optout.errors import InputError
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
    header: list[str] | None = None
    for p in parts(path):
        if p.suffix in (".parquet", ".pq", ".parq"):
            tables.append(pq.read_table(p))
            continue
        try:
            tables.append(read_table(open_table(p)))
        except InputError as exc:  # a part with a header and no rows
            if "no data rows" not in exc.message:
                raise
            with p.open(newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh))
    if not tables:
        if header is None:
            raise AssertionError(f"{path} holds no rows and no header")
        return pa.table({c: pa.array([], type=pa.string()) for c in header})
    first = tables[0]
    return pa.concat_tables([t.cast(first.schema) for t in tables])

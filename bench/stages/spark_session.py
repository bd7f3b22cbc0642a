"""The Spark session both Spark stages run on (no stage here: no ``NAME``).

Started before the clock starts, with the settings ``--engine spark`` gives a session it starts
itself (``local[*]``, 8 GB driver, UI off, shuffle files encrypted), so the two stages differ only
in the work they do. Starting the JVM takes some 10-20 s on its own and is not in either time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def start(work_dir: str) -> Any:
    from pyspark.sql import SparkSession

    from optout.release.engines.spark import SparkEngine

    spill = Path(work_dir) / ".spark-local"
    spill.mkdir(mode=0o700, exist_ok=True)
    session = SparkEngine._start(SparkSession, "local[*]", None, spill)
    session.range(1).count()  # the JVM and the executors up before the clock starts
    return session


def parquet_rows(folder: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in folder.glob("part-*"))

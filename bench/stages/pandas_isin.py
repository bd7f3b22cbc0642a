"""pandas ``isin``: what an analyst writes today (read whole tables, filter, write)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.core import Context

NAME = "pandas_isin"
TITLE = "pandas read + isin + write"
ORDER = 40
GROUP = "release"
MAX_ROWS = 20_000_000  # beyond this pandas needs many GiB of RAM on a shared machine


def skip(ctx: Context) -> str | None:
    if ctx.rows > MAX_ROWS and not ctx.extra.get("force_pandas"):
        return f"not run above {MAX_ROWS:,} rows (whole tables in memory); --force-pandas runs it"
    return None


def _read(path: str, fmt: str) -> Any:
    import pandas as pd

    if fmt == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"nhs_number": "string"})


def _write(df: Any, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)


def run(ctx: Context) -> dict[str, Any]:
    import pandas as pd

    t0 = time.perf_counter()
    allow = pd.read_csv(ctx.allow_path, header=None, usecols=[0], dtype="int64")[0].to_numpy()
    work = Path(ctx.work_dir)
    rows = {}

    if "patients" in ctx.tables:
        patients = _read(ctx.tables["patients"], ctx.format)
        text = patients["nhs_number"].astype("string").str.replace(r"[ -]", "", regex=True)
        patients = patients[pd.to_numeric(text, errors="coerce").isin(allow)]
        _write(patients, work / Path(ctx.tables["patients"]).name, ctx.format)
        rows["patients"] = len(patients)
        del patients, text

    episodes = _read(ctx.tables["episodes"], ctx.format)
    episodes = episodes[pd.to_numeric(episodes["nhs_number"], errors="coerce").isin(allow)]
    _write(episodes, work / Path(ctx.tables["episodes"]).name, ctx.format)
    rows["episodes"] = len(episodes)
    kept_ids = episodes["episode_id"].to_numpy()
    del episodes

    if "procedures" in ctx.tables:
        procedures = _read(ctx.tables["procedures"], ctx.format)
        procedures = procedures[procedures["episode_id"].isin(kept_ids)]
        _write(procedures, work / Path(ctx.tables["procedures"]).name, ctx.format)
        rows["procedures"] = len(procedures)
    return {"seconds": time.perf_counter() - t0, "rows_out": rows}

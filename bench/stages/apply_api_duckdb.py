"""``optout.apply_opt_outs`` with ``engine="duckdb"`` (the engine before Polars), profiled."""

from __future__ import annotations

from typing import Any

from bench.core import Context
from bench.stages.apply_api import profiled_apply

NAME = "apply_api_duckdb"
TITLE = "optout.apply_opt_outs, engine duckdb (the previous default)"
ORDER = 21
GROUP = "release"


def run(ctx: Context) -> dict[str, Any]:
    return profiled_apply(ctx, "duckdb")

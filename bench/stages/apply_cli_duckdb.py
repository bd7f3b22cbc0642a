"""``optout apply --engine duckdb``: the command line with the previous default engine."""

from __future__ import annotations

from typing import Any

from bench.core import Context
from bench.stages.apply_cli import run_cli

NAME = "apply_cli_duckdb"
TITLE = "optout apply --engine duckdb (command line, the previous default)"
ORDER = 26
GROUP = "release"


def run(ctx: Context) -> dict[str, Any]:
    return run_cli(ctx, "duckdb")

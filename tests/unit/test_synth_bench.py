"""The benchmark harness runs end to end on a tiny extract (a smoke test: nothing is timed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_runs_every_release_stage_and_they_agree(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--rows",
            "3000",
            "--people",
            "500",
            "--repeat",
            "1",
            "--stages",
            "floor,floor_polars,apply_api,duckdb_sql,polars_isin,polars_isin_counts,pandas_isin,validate",
            "--data-dir",
            str(tmp_path / "data"),
            "--results",
            str(results),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(results.read_text())["runs"]["3k-rows-500-people-parquet"]
    stages = run["stages"]
    assert set(stages) == {
        "floor",
        "floor_polars",
        "apply_api",
        "duckdb_sql",
        "polars_isin",
        "polars_isin_counts",
        "pandas_isin",
        "validate",
    }
    assert run["agreement"] == "all release stages kept the same rows"
    kept = stages["apply_api"]["rows_out"]
    # the counts written by hand are the report's
    by_hand = stages["polars_isin_counts"]["counts"]
    for name, people in stages["apply_api"]["people"].items():
        assert by_hand[name]["people_kept"] == people["kept"], name
        assert by_hand[name]["rows_kept"] == kept[name], name
    assert 0 < kept["episodes"] < 3000 and kept["patients"] < 500
    assert stages["floor"]["rows_out"]["episodes"] == 3000
    fastest = run["fastest_floor"]
    assert fastest in {"floor", "floor_polars"} and stages[fastest]["ratio_vs_floor"] == 1
    assert stages["apply_api"]["ratio_vs_floor"] > 0 and "profile" in stages["apply_api"]
    assert all(s["peak_rss_bytes"] > 10_000_000 for s in stages.values())
    assert stages["validate"]["values"] == 3000
    assert {t["id"] for t in run["targets"]} >= {"cli_vs_floor", "cli_vs_semijoin", "validation_values_per_s"}
    # the same data, episodes alone: release stages only
    one = json.loads(results.read_text())["runs"]["3k-rows-500-people-parquet-one-table"]
    assert set(one["stages"]) == set(stages) - {"validate"}
    assert set(one["stages"]["apply_api"]["rows_out"]) == {"episodes"}
    assert one["agreement"] == "all release stages kept the same rows"


def test_every_stage_module_defines_the_interface() -> None:
    sys.path.insert(0, str(ROOT))
    from bench import stages

    mods = stages.all_stages()
    assert {m.NAME for m in mods} >= {
        "floor",
        "floor_polars",
        "apply_api",
        "apply_api_duckdb",
        "apply_cli",
        "apply_cli_duckdb",
        "duckdb_sql",
        "polars_isin",
        "pandas_isin",
        "validate",
    }
    for m in mods:
        assert isinstance(m.TITLE, str) and isinstance(m.ORDER, int) and isinstance(m.GROUP, str)
        assert callable(m.run)
    floors = [m for m in mods if getattr(m, "IS_FLOOR", False)]
    # ratios are against the fastest floor of a group in the run: DuckDB's and Polars' copies
    assert {m.NAME for m in floors if m.GROUP == "release"} == {"floor", "floor_polars"}

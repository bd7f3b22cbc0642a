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
            "floor,apply_api,duckdb_sql,pandas_isin,validate",
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
    assert set(stages) == {"floor", "apply_api", "duckdb_sql", "pandas_isin", "validate"}
    assert run["agreement"] == "all release stages kept the same rows"
    kept = stages["apply_api"]["rows_out"]
    assert 0 < kept["episodes"] < 3000 and kept["patients"] < 500
    assert stages["floor"]["rows_out"]["episodes"] == 3000
    assert stages["apply_api"]["ratio_vs_floor"] > 0 and stages["floor"]["ratio_vs_floor"] == 1
    assert all(s["peak_rss_bytes"] > 10_000_000 for s in stages.values())
    assert stages["validate"]["values"] == 3000
    assert {t["id"] for t in run["targets"]} >= {"apply_vs_floor", "validation_values_per_s"}


def test_every_stage_module_defines_the_interface() -> None:
    sys.path.insert(0, str(ROOT))
    from bench import stages

    mods = stages.all_stages()
    assert {m.NAME for m in mods} >= {
        "floor",
        "apply_api",
        "apply_cli",
        "duckdb_sql",
        "pandas_isin",
        "validate",
    }
    for m in mods:
        assert isinstance(m.TITLE, str) and isinstance(m.ORDER, int) and isinstance(m.GROUP, str)
        assert callable(m.run)
    floors = [m for m in mods if getattr(m, "IS_FLOOR", False)]
    assert len({m.GROUP for m in floors}) == len(floors)  # at most one floor per group

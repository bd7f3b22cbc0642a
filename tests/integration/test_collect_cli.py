"""``optout collect`` end to end with the shipped CRANE profile (a real process, real exit codes)."""

from __future__ import annotations

import csv
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from tests.support.cli import run_optout

from optout import audit
from optout.dat import write_dat
from optout.nhs_number import format_number, synthetic
from optout.registry.gate import load_profile
from optout.store import Store

PROFILE = load_profile("crane")


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_optout(home, *args, actor="crane-lead")


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    nums = synthetic(8, seed=3).tolist()
    consent = ["Yes", "Yes", "No", "unknown", "Yes", "Yes", "No", "Yes"]
    cols = [
        PROFILE.nhs_number_column,
        PROFILE.consent_column,
        *[c for c in PROFILE.known_columns if c not in (PROFILE.nhs_number_column, PROFILE.consent_column)],
    ]
    sub = tmp_path / "crane-q1.csv"
    with sub.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i, (n, c) in enumerate(zip(nums, consent, strict=True)):
            nhs = format_number(n) if i != 7 else ""  # the last child has no NHS number
            w.writerow([nhs, c, *[f"v{i}" for _ in cols[2:]]])
    cl = tmp_path / "cleaned.dat"
    write_dat(cl, np.array(sorted(nums[:5]), dtype=np.int64))  # children 6 and 7 opted out
    return {"sub": sub, "cl": cl, "home": tmp_path / "home", "out": tmp_path / "crane-q1-out.csv"}


def recent() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="seconds")


def test_collect_with_the_crane_profile(files: dict[str, Path]) -> None:
    r = run(
        files["home"],
        "collect",
        str(files["sub"]),
        "--profile",
        "crane",
        "--cleaned-list",
        str(files["cl"]),
        "--checked-at",
        recent(),
        "--out",
        str(files["out"]),
    )
    assert r.returncode == 0, r.stderr
    assert "8 rows in, 5 rows out" in r.stdout
    assert "rows whose NHS number needs fixing: 8" in r.stdout
    with files["out"].open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    assert [bool(r["speech_outcome_5y"]) for r in rows] == [True, True, False, False, True]
    rep = json.loads(Path(str(files["out"]) + ".report.json").read_text())
    assert rep["counts"] == {
        "kept_all": 3,
        "kept_registry_only": 1,
        "kept_registry_only_consent_unclear": 1,
        "dropped_opted_out": 2,
        "dropped_not_checked": 0,
        "dropped_needs_nhs_number": 1,
    }
    store = Store(f"sqlite:///{files['home'] / 'optout.db'}")
    (entry,) = audit.entries(store)
    assert entry.action == "collection.filtered" and entry.actor == "crane-lead"
    assert entry.details_dict["counts"]["dropped_opted_out"] == 2


def test_external_report_suppresses_small_counts(files: dict[str, Path]) -> None:
    r = run(
        files["home"],
        "collect",
        str(files["sub"]),
        "--profile",
        "crane",
        "--cleaned-list",
        str(files["cl"]),
        "--checked-at",
        recent(),
        "--out",
        str(files["out"]),
        "--report-for",
        "external",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["counts"]["kept_all"] == "<5" and rep["counts"]["dropped_not_checked"] == 0
    assert "rows_to_fix" not in rep


@pytest.mark.parametrize(
    ("change", "code", "needle"),
    [
        ({"--profile": "crnae"}, 9, "did you mean 'crane'"),
        ({"--checked-at": "2020-01-01T00:00:00Z"}, 4, "001 §8.4"),
        ({"--checked-at": "2020-01-01T00:00"}, 2, "time zone"),
        ({"--cleaned-list": "missing.dat"}, 3, "missing.dat"),
    ],
)
def test_bad_input_exit_codes(files: dict[str, Path], change: dict[str, str], code: int, needle: str) -> None:
    opts = {
        "--profile": "crane",
        "--cleaned-list": str(files["cl"]),
        "--checked-at": recent(),
        "--out": str(files["out"]),
    }
    opts.update(change)
    args = [x for kv in opts.items() for x in kv]
    r = run(files["home"], "collect", str(files["sub"]), *args)
    assert r.returncode == code, r.stderr
    assert needle in r.stderr
    assert not files["out"].exists()


def test_existing_output_is_refused_without_force(files: dict[str, Path]) -> None:
    files["out"].write_text("earlier")
    args = [
        "collect",
        str(files["sub"]),
        "--profile",
        "crane",
        "--cleaned-list",
        str(files["cl"]),
        "--checked-at",
        recent(),
        "--out",
        str(files["out"]),
    ]
    r = run(files["home"], *args)
    assert r.returncode == 5 and "--force" in r.stderr
    assert run(files["home"], *args, "--force").returncode == 0

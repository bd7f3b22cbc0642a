"""``optout release list|show|disclose|withdraw|linkcheck`` as a user runs them (real process,
real exit codes). Releases are set up through the library as ``optout apply`` leaves them."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.support.cli import run_optout
from tests.support.releases import make_release

from optout.store import Store


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_optout(home, *args)


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    store = Store(f"sqlite:///{h / 'optout.db'}")
    now = datetime.now(UTC)
    make_release(store, tmp_path / "out", "rel-fresh", checked_at=now - timedelta(days=2))
    make_release(store, tmp_path / "out", "rel-old", checked_at=now - timedelta(days=25))
    make_release(
        store, tmp_path / "out", "rel-cache", checked_at=now - timedelta(days=12, hours=12), source="cache"
    )
    store.dispose()
    return h


def test_list_shows_state_deadline_and_days_left(home: Path) -> None:
    r = run(home, "release", "list")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines()[2:]}
    assert lines["rel-fresh"].split()[1] == "prepared" and lines["rel-fresh"].split()[-1] == "17"
    assert "expired" in lines["rel-old"]
    assert "<1" in lines["rel-cache"] and "cache" in lines["rel-cache"]
    data = json.loads(run(home, "release", "list", "--state", "expired", "--json").stdout)
    assert [d["id"] for d in data] == ["rel-old"]


def test_disclose_show_and_refusals(home: Path) -> None:
    r = run(home, "release", "disclose", "rel-fresh", "--to", "University of Leeds")
    assert r.returncode == 0, r.stderr
    assert "disclosed to University of Leeds" in r.stdout
    show = run(home, "release", "show", "rel-fresh")
    assert "release rel-fresh: disclosed" in show.stdout
    assert "release.disclosed" in show.stdout and "ig-lead" in show.stdout

    again = run(home, "release", "disclose", "rel-fresh", "--to", "Acme Analytics Ltd")
    assert again.returncode == 4
    assert "onward sharing" in again.stderr and "001 §8.3" in again.stderr

    late = run(home, "release", "disclose", "rel-old", "--to", "University of Leeds")
    assert late.returncode == 4
    assert "expired" in late.stderr and "re-run the check" in late.stderr

    unknown = run(home, "release", "disclose", "rel-fresj", "--to", "X")
    assert unknown.returncode == 9 and "did you mean 'rel-fresh'" in unknown.stderr

    missing_to = run(home, "release", "disclose", "rel-cache")
    assert missing_to.returncode != 0 and "to" in missing_to.stderr


def test_withdraw_then_disclose_is_refused(home: Path) -> None:
    w = run(home, "release", "withdraw", "rel-cache", "--reason", "cohort was wrong")
    assert w.returncode == 0, w.stderr
    d = run(home, "release", "disclose", "rel-cache", "--to", "X")
    assert d.returncode == 4 and "withdrawn (cohort was wrong)" in d.stderr


def test_tampered_release_exits_8(home: Path, tmp_path: Path) -> None:
    (tmp_path / "out" / "rel-fresh" / "episodes.csv").write_text("id,age\n1,41\n", encoding="utf-8")
    r = run(home, "release", "disclose", "rel-fresh", "--to", "X")
    assert r.returncode == 8 and "episodes.csv has changed" in r.stderr


def test_linkcheck_alone(tmp_path: Path) -> None:
    d = tmp_path / "files"
    d.mkdir()
    (d / "a.csv").write_text(
        "nhs_number,x\n" + "".join(f"{i:010d},{i}\n" for i in range(30)), encoding="utf-8"
    )
    (d / "b.csv").write_text("NHS No,y\n1,2\n", encoding="utf-8")
    (d / "c.csv").write_text("code,y\n" + "".join(f"K{i:06d},{i}\n" for i in range(30)), encoding="utf-8")
    r = run(tmp_path, "release", "linkcheck", str(d / "a.csv"), str(d / "b.csv"))
    assert r.returncode == 4
    assert "NHS number column in 2 files" in r.stdout
    ok = run(tmp_path, "release", "linkcheck", str(d / "a.csv"), str(d / "c.csv"), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    missing = run(tmp_path, "release", "linkcheck", str(d / "nope.csv"))
    assert missing.returncode == 3

"""``optout apply`` killed (SIGKILL) at every step never leaves a release the store and the audit
trail did not see (issue 7, fault 1).

The real command line runs in a subprocess (``tests/support/crash.py``) and kills itself at one
step; then the next ``optout release list`` or ``optout apply`` must leave either no release
folder and a ``failed`` (or no) record, or the folder with a ``prepared`` record and its audit
entry. Never a folder without a record, never a record left ``preparing``, and the audit trail
still verifies.
"""

from __future__ import annotations

import hashlib
import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from tests.support.cli import run_optout
from tests.support.crash import APPLY_STEPS, crash_optout

from optout import audit
from optout.dat import write_dat
from optout.nhs_number import synthetic
from optout.release import apply_opt_outs
from optout.release.recover import RECONCILED
from optout.store import Store, releases

PEOPLE = synthetic(30, seed=5)
CHECKED = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
APPLY = ["apply", "src/episodes.csv", "--cleaned-list", "src/cleaned.dat", "--checked-at", CHECKED]

# what becomes of the release the killed apply was making, once the next command has run
OUTCOME: dict[str, str | None] = {
    "writing-table": None,  # the staging folder made, its first table not written: never recorded
    "writing": None,  # never recorded: nothing to settle (its hidden staging folder has no release.json)
    "preparing": "failed",
    "renaming": "failed",
    "between-renames": "failed",
    "renamed": "prepared",  # reconciled: the folder is in place
    "prepared": "prepared",
    "finished": "prepared",
}
assert set(OUTCOME) == set(APPLY_STEPS)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    rows = "".join(f"{n},{i % 7}\n" for i, n in enumerate(PEOPLE))
    (src / "episodes.csv").write_text("nhs_number,los\n" + rows, encoding="utf-8")
    write_dat(src / "cleaned.dat", np.sort(PEOPLE[:24]))
    return tmp_path


def _store(home: Path) -> Store:
    return Store(f"sqlite:///{home / 'optout.db'}")


def _records(home: Path) -> dict[str, Any]:
    store = _store(home)
    try:
        with store.begin() as conn:
            return {r.id: r for r in conn.execute(sa.select(releases)).all()}
    finally:
        store.dispose()


def _entries(home: Path) -> list[audit.Entry]:
    store = _store(home)
    try:
        return audit.entries(store)
    finally:
        store.dispose()


def _release_in(folder: Path) -> str | None:
    manifest = folder / "release.json"
    return json.loads(manifest.read_bytes())["release_id"] if manifest.is_file() else None


def _first_release(work: Path, home: Path) -> str:
    """A release already at OUT (made normally), for the --force runs to replace."""
    store = _store(home)
    try:
        report = apply_opt_outs(
            [work / "src" / "episodes.csv"],
            out_dir=work / "rel",
            cleaned_list=work / "src" / "cleaned.dat",
            checked_at=CHECKED,
            store=store,
        )
    finally:
        store.dispose()
    return report.release_id


@pytest.mark.parametrize("first", ["release list", "apply"])
@pytest.mark.parametrize("mode", ["new", "force"])
@pytest.mark.parametrize("step", list(APPLY_STEPS))
def test_killed_apply_never_leaves_an_unrecorded_release(
    work: Path, step: str, mode: str, first: str
) -> None:
    home = work / "home"
    out = work / "rel"
    old = _first_release(work, home) if mode == "force" else None
    force = ["--force"] if mode == "force" else []

    killed = crash_optout(home, step, *APPLY, "--out", "rel", *force)
    assert killed.returncode == -signal.SIGKILL, killed.stderr  # killed at the step, not before
    made = [rid for rid in _records(home) if rid != old]  # the release the killed apply was making

    newest = None
    if first == "release list":
        listed = run_optout(home, "release", "list")
        assert listed.returncode == 0, listed.stderr
    else:
        again = run_optout(home, *APPLY, "--out", "rel", "--force", "--json")
        assert again.returncode == 0, again.stderr
        newest = json.loads(again.stdout)["release_id"]

    records = _records(home)
    actions = {(e.subject, e.action): e for e in _entries(home)}
    # whatever is at OUT is a recorded, prepared release with its audit entry
    at_out = _release_in(out)
    if at_out is not None:
        assert at_out in records, "a release folder that the store and the audit trail never saw"
        assert records[at_out].state == "prepared"
        sha = hashlib.sha256((out / "release.json").read_bytes()).hexdigest()
        assert records[at_out].manifest_sha256 == sha
        assert (at_out, "release.prepared") in actions
    assert [r.id for r in records.values() if r.state == "preparing"] == []
    # what became of the release the killed apply was making
    assert len(made) == (0 if OUTCOME[step] is None else 1), "the killed apply's release is not recorded"
    if made:
        assert records[made[0]].state == OUTCOME[step]
        assert (made[0], f"release.{OUTCOME[step]}") in actions
        if step == "renamed":
            assert actions[(made[0], "release.prepared")].details_dict["reason"] == RECONCILED
        if first == "release list":  # the list shows it, with its state
            (row,) = [line for line in listed.stdout.splitlines() if line.startswith(made[0])]
            assert row.split()[1] == OUTCOME[step]
    expected = newest or (made[0] if OUTCOME[step] == "prepared" else old)
    assert at_out == expected
    # leftovers: hidden, never holding a release.json the store does not know about
    hidden = [p for p in work.iterdir() if p.name.startswith(".rel.")]
    if first == "apply":
        assert hidden == []
    for p in hidden:
        assert p.name.startswith(".rel.old-") or not (p / "release.json").exists(), p.name
        if p.name.startswith(".rel.old-"):  # a replaced release the killed apply had not deleted yet
            assert (step, mode, _release_in(p)) == ("prepared", "force", old)
    # and the audit trail is intact
    verified = run_optout(home, "audit", "verify")
    assert verified.returncode == 0 and "audit trail intact" in verified.stdout, verified.stdout


def test_reconciling_twice_or_killed_midway_records_once(work: Path) -> None:
    home = work / "home"
    killed = crash_optout(home, "preparing", *APPLY, "--out", "rel")
    assert killed.returncode == -signal.SIGKILL
    (made,) = _records(home)
    assert [p.name[:9] for p in work.iterdir() if p.name.startswith(".rel.")] == [".rel.tmp-"]
    # the reconciling `release list` killed after removing the staging folder, before recording
    midway = crash_optout(home, "reconcile-before-failed", "release", "list")
    assert midway.returncode == -signal.SIGKILL
    assert [p for p in work.iterdir() if p.name.startswith(".rel.")] == []
    assert _records(home)[made].state == "preparing"
    for _ in range(2):
        listed = run_optout(home, "release", "list", "--state", "failed", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [r["id"] for r in json.loads(listed.stdout)] == [made]
    assert [e.action for e in _entries(home) if e.subject == made] == ["release.preparing", "release.failed"]
    refused = run_optout(home, "release", "disclose", made, "--to", "University of Leeds")
    assert refused.returncode == 4 and "failed" in refused.stderr
    assert not (work / "rel").exists()

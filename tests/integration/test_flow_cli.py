"""``optout flow add|list|show|edit`` as an IG lead runs them (real process, real exit codes)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from tests.support.cli import run_optout
from tests.support.releases import make_release

from optout.store import Store

FLOW = {
    "name": "Heart failure study",
    "owner": "Practice DPO",
    "review_date": "2020-01-31",  # long past: overdue
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential", "nhs_number": "present"},
    "purpose": "research",
    "legal_basis": "s251",
    "recipient": {"name": "University of Exampleshire", "type": "university", "role": "third-party"},
}


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_optout(home, *args)


def test_register_show_edit_and_a_release_invalidated_by_the_change(tmp_path: Path) -> None:
    home = tmp_path / "home"
    flow_file = tmp_path / "hf-study.yaml"
    flow_file.write_text(yaml.safe_dump(FLOW, sort_keys=False), encoding="utf-8")

    r = run(home, "flow", "add", str(flow_file))
    assert r.returncode == 0, r.stderr
    assert "registered flow hf-study (version 1)" in r.stdout
    assert "decision: applies (opt-out-applied)" in r.stdout
    assert "[002 NOT DIRECT CARE]" in r.stdout
    assert "optout apply ... --flow hf-study" in r.stdout

    again = run(home, "flow", "add", str(flow_file))
    assert again.returncode == 2 and "already registered" in again.stderr

    listed = run(home, "flow", "list")
    assert "hf-study" in listed.stdout and "2020-01-31 OVERDUE" in listed.stdout

    # a release made for version 1
    store = Store(f"sqlite:///{home / 'optout.db'}")
    make_release(
        store,
        tmp_path / "out",
        "rel-1",
        checked_at=datetime.now(UTC) - timedelta(days=1),
        flow_id="hf-study",
        flow_version=1,
    )
    store.dispose()

    edit = run(
        home,
        "flow",
        "edit",
        "hf-study",
        "--set",
        "recipient.role=processor",
        "--set",
        "review_date=2027-01-31",
    )
    assert edit.returncode == 0, edit.stderr
    assert "updated flow hf-study (version 2)" in edit.stdout
    assert "does-not-apply (not-a-disclosure)" in edit.stdout
    assert "changed: recipient.role, review_date" in edit.stdout

    show = run(home, "flow", "show", "hf-study", "--json")
    data = json.loads(show.stdout)
    assert data["version"] == 2 and data["review_overdue"] is False
    assert [(h["version"], h["changed_by"]) for h in data["history"]] == [(1, "ig-lead"), (2, "ig-lead")]
    assert data["history"][1]["changed"] == ["recipient.role", "review_date"]
    assert data["releases"] == [{"id": "rel-1", "state": "prepared", "flow_version": 1}]
    assert any(r["clause"] for r in data["assessment"]["reasons"])
    text = run(home, "flow", "show", "hf-study").stdout
    assert "history:" in text and "v2" in text and "changed: recipient.role, review_date" in text

    d = run(home, "release", "disclose", "rel-1", "--to", "University of Exampleshire")
    assert d.returncode == 4
    assert "flow hf-study version 1" in d.stderr and "changed recipient.role, review_date" in d.stderr

    bad = run(home, "flow", "edit", "hf-study", "--set", "purpose=reserch")
    assert bad.returncode == 3 and "did you mean 'research'" in bad.stderr

    unknown = run(home, "flow", "show", "hf-studdy")
    assert unknown.returncode == 9 and "hf-study" in unknown.stderr


def test_new_user_path_flow_apply_release_disclose(tmp_path: Path) -> None:
    import numpy as np

    from optout.dat import write_dat
    from optout.nhs_number import synthetic

    home = tmp_path / "home"
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({**FLOW, "review_date": "2030-01-31"}), encoding="utf-8")
    consent = tmp_path / "consented.yaml"
    consent.write_text(yaml.safe_dump({**FLOW, "legal_basis": "explicit-consent"}), encoding="utf-8")
    assert run(home, "flow", "add", str(study)).returncode == 0
    assert run(home, "flow", "add", str(consent)).returncode == 0

    people = synthetic(30, seed=3)
    extract = tmp_path / "episodes.csv"
    extract.write_text(
        "nhs_number,los\n" + "".join(f"{n},{i}\n" for i, n in enumerate(people)), encoding="utf-8"
    )
    cleaned = tmp_path / "cleaned.dat"
    write_dat(cleaned, np.sort(people[:27]))
    checked = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = [str(extract), "--cleaned-list", str(cleaned), "--checked-at", checked]

    no = run(home, "apply", *common, "--out", str(tmp_path / "out-c"), "--flow", "consented")
    assert no.returncode == 4 and "needs no opt-out release" in no.stderr
    assert not (tmp_path / "out-c").exists()

    ok = run(home, "apply", *common, "--out", str(tmp_path / "out"), "--flow", "study")
    assert ok.returncode == 0, ok.stderr
    [rel] = json.loads(run(home, "release", "list", "--flow", "study", "--json").stdout)
    assert (rel["state"], rel["flow_version"], rel["check_source"]) == ("prepared", 1, "one-off")
    assert 18.9 < rel["days_left"] < 19.1

    d = run(home, "release", "disclose", rel["id"], "--to", "University of Exampleshire")
    assert d.returncode == 0, d.stderr
    assert f"release {rel['id']} disclosed to University of Exampleshire" in d.stdout

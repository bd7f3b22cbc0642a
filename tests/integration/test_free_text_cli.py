"""Free text with an NHS number in it, as a user would type it (issue 7, fault 3).

A flow file named "Study for 9434765919" was assessed, printed and stored. Every free-text value
the tool stores or prints now goes through one guard (``optout.text``): the command exits with a
clear error naming the field, and the number is never echoed, in any spelling. Rows stored before
the guard existed are shown masked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from tests.support.cli import run_optout
from tests.support.releases import make_release

from optout.store import Store, disclosures, flow_versions, flows

NUMBER = "9434765919"  # a valid test-range (9xx) NHS number: must never come back out
SPELLINGS = ("9434765919", "943 476 5919", "943-476-5919")

FLOW: dict[str, Any] = {
    "name": "Heart failure study",
    "owner": "Practice DPO",
    "review_date": "2030-01-31",
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential", "nhs_number": "present"},
    "purpose": "research",
    "legal_basis": "s251",
    "recipient": {"name": "University of Exampleshire", "type": "university", "role": "third-party"},
}


def assert_no_number(result: subprocess.CompletedProcess[str]) -> None:
    """The number is in neither stream, however it is spaced or hyphenated."""
    for stream in (result.stdout, result.stderr):
        assert NUMBER not in re.sub(r"[\s\-]", "", stream), stream


def write_flow(tmp_path: Path, filename: str, **changes: Any) -> Path:
    doc = json.loads(json.dumps(FLOW))
    for key, value in changes.items():
        node = doc
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    path = tmp_path / filename
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def assess(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optout", "assess", str(path), *args],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_assess_refuses_a_flow_named_with_an_nhs_number(tmp_path: Path, spelling: str) -> None:
    """The reported case: ``optout assess`` printed the name "Study for 9434765919"."""
    path = write_flow(tmp_path, "study.yaml", name=f"Study for {spelling}")
    for args in ((), ("--json",)):
        r = assess(path, *args)
        assert r.returncode == 3, r.stdout + r.stderr
        assert "'name'" in r.stderr and "NHS number" in r.stderr and "study.yaml" in r.stderr
        assert "line 1" in r.stderr and "how to fix" in r.stderr
        assert r.stdout == ""
        assert_no_number(r)


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("description", "'description'"),
        ("owner", "'owner'"),
        ("recipient__name", "'recipient.name'"),
        ("origin__organisation", "'origin.organisation'"),
        ("approvals", "'approvals'"),
    ],
)
def test_assess_refuses_every_free_text_field(tmp_path: Path, key: str, field: str) -> None:
    value: Any = [f"CAG 1-02(a)/2020 for {NUMBER}"] if key == "approvals" else "about 943 476 5919"
    r = assess(write_flow(tmp_path, "f.yaml", **{key: value}))
    assert r.returncode == 3 and field in r.stderr and "NHS number" in r.stderr
    assert_no_number(r)


def test_a_number_where_a_word_is_expected_is_not_echoed(tmp_path: Path) -> None:
    r = assess(write_flow(tmp_path, "f.yaml", purpose=NUMBER))
    assert r.returncode == 3 and "'purpose'" in r.stderr
    assert_no_number(r)


def test_flow_add_refuses_and_stores_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write_flow(tmp_path, "study.yaml", name=f"Study for {NUMBER}")
    r = run_optout(home, "flow", "add", str(path))
    assert r.returncode == 3 and "'name'" in r.stderr and "NHS number" in r.stderr
    assert_no_number(r)
    listed = run_optout(home, "flow", "list")
    assert listed.returncode == 0 and "no flows registered" in listed.stdout


def test_flow_ids_and_set_values_are_guarded_too(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write_flow(tmp_path, "study.yaml")
    r = run_optout(home, "flow", "add", str(path), "--id", f"study-{NUMBER}")
    assert r.returncode == 2 and "flow id" in r.stderr
    assert_no_number(r)
    named = write_flow(tmp_path, f"{NUMBER}.yaml")  # the id would be made from the file name
    r = run_optout(home, "flow", "add", str(named))
    assert r.returncode == 2
    assert_no_number(r)

    assert run_optout(home, "flow", "add", str(path)).returncode == 0
    r = run_optout(home, "flow", "edit", "study", "--set", "recipient.name=Unit 943-476-5919")
    assert r.returncode == 2 and "--set recipient.name" in r.stderr and "NHS number" in r.stderr
    assert_no_number(r)
    r = run_optout(home, "flow", "show", NUMBER)  # an unknown id is not echoed either
    assert r.returncode == 9
    assert_no_number(r)
    shown = json.loads(run_optout(home, "flow", "show", "study", "--json").stdout)
    assert shown["version"] == 1 and shown["recipient"] == "University of Exampleshire"


def test_actor_with_an_nhs_number_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = write_flow(tmp_path, "study.yaml")
    r = run_optout(home, "flow", "add", str(path), actor=f"Dr Who {NUMBER}")
    assert r.returncode == 2 and "OPTOUT_ACTOR" in r.stderr
    assert_no_number(r)
    assert "no flows registered" in run_optout(home, "flow", "list").stdout


@pytest.fixture()
def releases_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    store = Store(f"sqlite:///{home / 'optout.db'}")
    now = datetime.now(UTC)
    make_release(store, tmp_path / "out", "rel-a", checked_at=now - timedelta(days=2))
    make_release(
        store,
        tmp_path / "out",
        "rel-b",
        checked_at=now - timedelta(days=2),
        files={"a.csv": "id,age\n1,40\n", "b.csv": "id,age\n1,40\n"},
        not_upheld=["a.csv"],
    )
    store.dispose()
    return home


def test_disclose_withdraw_and_link_risk_reasons_are_guarded(releases_home: Path) -> None:
    home = releases_home
    r = run_optout(home, "release", "disclose", "rel-a", "--to", f"Clinic {NUMBER}")
    assert r.returncode == 2 and "--to" in r.stderr and "NHS number" in r.stderr
    assert_no_number(r)
    r = run_optout(home, "release", "withdraw", "rel-a", "--reason", "wrong patient 943 476 5919")
    assert r.returncode == 2 and "--reason" in r.stderr
    assert_no_number(r)
    r = run_optout(
        home, "release", "disclose", "rel-b", "--to", "Leeds", "--accept-link-risk", f"ok for {NUMBER}"
    )
    assert r.returncode == 2 and "--accept-link-risk" in r.stderr
    assert_no_number(r)
    listed = json.loads(run_optout(home, "release", "list", "--json").stdout)
    assert {x["id"]: x["state"] for x in listed} == {"rel-a": "prepared", "rel-b": "prepared"}


def test_rows_stored_before_the_guard_are_printed_masked(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert run_optout(home, "flow", "add", str(write_flow(tmp_path, "study.yaml"))).returncode == 0
    store = Store(f"sqlite:///{home / 'optout.db'}")
    make_release(store, tmp_path / "out", "rel-a", checked_at=datetime.now(UTC) - timedelta(days=1))
    with store.begin() as conn:  # what an older version let through
        facts = dict(conn.execute(sa.select(flows.c.facts)).scalar_one())
        facts["name"] = f"Study for {NUMBER}"
        facts["recipient"] = {**facts["recipient"], "name": "Unit 943 476 5919"}
        conn.execute(
            flows.update().values(
                name=f"Study for {NUMBER}", owner=f"DPO {NUMBER}", recipient="Unit 943 476 5919", facts=facts
            )
        )
        conn.execute(flow_versions.update().values(changed_by=f"clerk {NUMBER}"))
        conn.execute(
            disclosures.insert().values(
                release_id="rel-a", recipient=f"Clinic {NUMBER}", disclosed_at="2026-03-01", actor="x"
            )
        )
    store.dispose()
    for args in (
        ("flow", "list"),
        ("flow", "list", "--json"),
        ("flow", "show", "study"),
        ("flow", "show", "study", "--json"),
        ("release", "list"),
        ("release", "list", "--json"),
        ("release", "show", "rel-a"),
    ):
        r = run_optout(home, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert "[NHS number hidden]" in r.stdout, args
        assert_no_number(r)

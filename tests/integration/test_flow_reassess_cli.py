"""``optout flow list --reassess [--json]``: a register kept under the old rules, as a new user of
the current rules finds it (real process)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.cli import run_optout
from tests.support.old_register import old_register

from optout.policy import rules_version

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"


def test_flows_registered_under_the_old_rules_whose_answer_changes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    old_register(home / "optout.db")  # the NDRS flow was told "applies" under rules 1

    text = run_optout(home, "flow", "list", "--reassess")
    assert text.returncode == 0, text.stderr
    assert (
        f"1 flow(s) would get a different answer under the current rules ({rules_version()})" in text.stdout
    )
    assert "ndrs-tumours (v1, Tumour records to the NDRS): recorded applies under rules 1" in text.stdout
    assert "does-not-apply (exempt: phe-national-cancer-register)" in text.stdout
    assert "NHS England since 1 February 2023" in text.stdout
    assert "optout flow edit ndrs-tumours --reassess" in text.stdout
    assert "1 other flow(s) were decided under older rules with the same answer" in text.stdout

    doc = json.loads(run_optout(home, "flow", "list", "--reassess", "--json").stdout)
    assert [d["flow_id"] for d in doc] == ["ndrs-tumours"]
    assert doc[0]["stored_rules_version"] == "1" and doc[0]["rules_version"] == rules_version()
    assert doc[0]["holder"]["holder"] == "nhs-england" and doc[0]["changed"] is True

    edit = run_optout(home, "flow", "edit", "ndrs-tumours", "--reassess")
    assert edit.returncode == 0, edit.stderr
    assert "updated flow ndrs-tumours (version 2)" in edit.stdout
    after = run_optout(home, "flow", "list", "--reassess")
    assert "no registered flow would get a different answer" in after.stdout
    show = run_optout(home, "flow", "show", "ndrs-tumours")
    assert f"(rules {rules_version()})" in show.stdout


def test_a_new_user_registers_the_two_flows_of_the_issue_with_today_s_names(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for name in ("cancer-registry-ndrs", "nhs-england-s259"):
        r = run_optout(home, "flow", "add", str(EXAMPLES / f"{name}.yaml"), "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["decision"] == "does-not-apply" and doc["rules_version"] == rules_version()
        assert doc["assessment"]["holder"]["holder"] == "nhs-england"
    listed = run_optout(home, "flow", "list", "--reassess", "--json")
    assert json.loads(listed.stdout) == []

"""``optout assess FLOW.yaml [--json]`` as an IG lead runs it (real process, real exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optout", "assess", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_applies_prints_the_answer_and_clauses(tmp_path: Path) -> None:
    result = run(str(EXAMPLES / "local-audit-pcn.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "APPLIES" in result.stdout
    assert "[002 DIRECT CARE]" in result.stdout
    assert "across the PCN" in result.stdout


def test_json_is_the_decision(tmp_path: Path) -> None:
    result = run(str(EXAMPLES / "cancer-registry-phe.yaml"), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "does-not-apply"
    assert doc["exemption"] == "phe-national-cancer-register"
    assert doc["compliance"] == "exempt"
    # each reason points at a policy text or the public page it quotes (the NDRS notice names
    # today's holder of the cancer register: NHS England)
    assert all(
        r["clause"] and (r["file"].endswith(".txt") or r["file"].startswith("https://"))
        for r in doc["reasons"]
    )
    assert doc["holder"]["holder"] == "nhs-england" and doc["rules_version"].startswith("2+")
    assert len(doc["facts_sha256"]) == 64


def test_cannot_decide_exits_10_naming_the_facts(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: half-described\npurpose: research\nlegal_basis: s251\n", encoding="utf-8")
    result = run(str(flow), "--json", cwd=tmp_path)
    assert result.returncode == 10, result.stderr
    doc = json.loads(result.stdout)
    assert doc["outcome"] == "cannot-decide"
    facts = [m["fact"] for m in doc["missing"]]
    assert facts == [
        "origin.sector",
        "origin.country",
        "origin.funding",
        "data.confidentiality",
        "recipient.role",
    ]
    assert all(m["question"] for m in doc["missing"])
    text = run(str(flow), cwd=tmp_path)
    assert text.returncode == 10
    assert "Add these facts" in text.stdout and "origin.country" in text.stdout


def test_a_misspelt_value_exits_3_with_did_you_mean(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: x\npurpose: risk-stratificaton\n", encoding="utf-8")
    result = run(str(flow), cwd=tmp_path)
    assert result.returncode == 3
    assert result.stdout == ""
    assert "did you mean 'risk-stratification'" in result.stderr
    assert "line 2" in result.stderr


def test_contradiction_exits_3(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: x\ndata:\n  confidentiality: anonymised\n  identifiers: [nhs-number, age-band]\n",
        encoding="utf-8",
    )
    result = run(str(flow), "--json", cwd=tmp_path)
    assert result.returncode == 3
    assert "Contradictory facts" in result.stderr and "nhs-number" in result.stderr

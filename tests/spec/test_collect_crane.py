"""Spec: the registry collection gate (policy 000, CRANE), one case per rule, quoting the clause.

Each case is one child's row in a CRANE submission: whether the NHS number is on the cleaned list
(the national check service's allow-list), the consent status, and what the registry may record.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from optout.dat import write_dat
from optout.nhs_number import format_number, synthetic
from optout.registry.gate import (
    DROPPED_NHS_NUMBER,
    DROPPED_NOT_CHECKED,
    DROPPED_OPTED_OUT,
    KEPT_ALL,
    KEPT_REGISTRY,
    KEPT_REGISTRY_UNCLEAR,
    collect,
    load_profile,
)

CHECKED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)
PROFILE = load_profile("crane")

OPT_OUT_ALL = (
    "000 §2: if the parent chooses to opt-out of their child's confidential patient information "
    "being used for purposes other than their immediate clinical care, none of the child's data "
    "should be recorded in CRANE - this includes both registry and audit data"
)
REGISTRY = (
    "000 §2: there is a minimum dataset that CRANE is allowed to collect, on all children born "
    "with a cleft, under our Section 251 approval"
)
CONSENT = "000 §1: families consent to the audit function of CRANE"
WITHDRAW = (
    "000 §1: the withdrawal of patients' consent can be implemented at any time by changing the "
    "patient's consent status to 'No'"
)
SINGLE_ID = (
    "001 §8.2: the NHS number is used as the single identifier to register and to apply an "
    "individual's national data opt-out (no valid number: cannot be checked, fail closed)"
)

# (case, nhs number kind, consent value, expected outcome, clause)
# nhs kinds: "allowed" (on the cleaned list), "opted-out" (checked, not returned),
# "unchecked" (valid but not in the cohort that was checked), "missing", "bad-check-digit",
# "too-short"
CASES = [
    ("consent Yes, not opted out: everything", "allowed", "Yes", KEPT_ALL, CONSENT),
    ("consent yes in lower case is still an explicit Yes", "allowed", " yes ", KEPT_ALL, CONSENT),
    ("consent No: registry minimum dataset only", "allowed", "No", KEPT_REGISTRY, REGISTRY),
    ("consent withdrawn (status No): registry only", "allowed", "NO", KEPT_REGISTRY, WITHDRAW),
    ("consent blank: fail closed, registry only", "allowed", "", KEPT_REGISTRY_UNCLEAR, REGISTRY),
    ("consent Unknown: fail closed, registry only", "allowed", "Unknown", KEPT_REGISTRY_UNCLEAR, REGISTRY),
    ("consent 'Y' is not the profile's Yes: registry only", "allowed", "Y", KEPT_REGISTRY_UNCLEAR, REGISTRY),
    ("opted out, consent Yes: nothing at all", "opted-out", "Yes", DROPPED_OPTED_OUT, OPT_OUT_ALL),
    (
        "opted out, consent No: nothing at all (not even s251 registry)",
        "opted-out",
        "No",
        DROPPED_OPTED_OUT,
        OPT_OUT_ALL,
    ),
    (
        "not in the checked cohort: nothing until checked",
        "unchecked",
        "Yes",
        DROPPED_NOT_CHECKED,
        OPT_OUT_ALL,
    ),
    ("NHS number missing: cannot be checked, nothing", "missing", "Yes", DROPPED_NHS_NUMBER, SINGLE_ID),
    ("NHS number fails Modulus 11: nothing", "bad-check-digit", "No", DROPPED_NHS_NUMBER, SINGLE_ID),
    ("NHS number too short: nothing", "too-short", "Yes", DROPPED_NHS_NUMBER, SINGLE_ID),
]

ROW = {
    "date_of_birth": "2021-06-01",
    "sex": "F",
    "cleft_type": "CLP",
    "cleft_laterality": "unilateral-left",
    "syndromic_diagnosis": "none",
    "postcode_district": "LS6",
    "date_of_diagnosis": "2021-06-01",
    "referral_date": "2021-06-02",
    "treating_unit": "Leeds",
    "lip_repair_date": "2021-09-10",
    "palate_repair_date": "2022-03-01",
    "speech_outcome_5y": "CAPS-A 1",
    "speech_assessment_date": "2026-06-02",
    "velopharyngeal_function": "competent",
    "dental_index": "5-year index 2",
    "dmft_score_5y": "0",
    "hearing_assessment_5y": "normal",
    "psychology_screening": "screened",
    "psychology_screening_date": "2024-01-01",
    "facial_appearance_rating": "3",
    "family_satisfaction_score": "9",
}


def numbers_for(kinds: list[str], seed: int = 1) -> tuple[list[str], np.ndarray, np.ndarray]:
    """NHS numbers (as text) for each kind, the cleaned list and the cohort that was checked."""
    pool = iter(synthetic(len(kinds) + 5, seed=seed).tolist())
    texts: list[str] = []
    allowed: list[int] = []
    cohort: list[int] = []
    for k in kinds:
        n = next(pool)
        if k == "allowed":
            allowed.append(n)
            cohort.append(n)
            texts.append(format_number(n))
        elif k == "opted-out":
            cohort.append(n)
            texts.append(format_number(n))
        elif k == "unchecked":
            texts.append(format_number(n))
        elif k == "missing":
            texts.append("")
        elif k == "bad-check-digit":
            texts.append(format_number((n // 10) * 10 + (n % 10 + 1) % 10))
        elif k == "too-short":
            texts.append(format_number(n)[:8])
    return texts, np.unique(np.array(allowed, dtype=np.int64)), np.unique(np.array(cohort, dtype=np.int64))


def write_submission(path: Path, nhs: list[str], consent: list[str]) -> None:
    cols = [PROFILE.nhs_number_column, PROFILE.consent_column, *ROW]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for n, c in zip(nhs, consent, strict=True):
            w.writerow([n, c, *ROW.values()])


def read_out(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(("case", "kind", "consent", "outcome", "clause"), CASES, ids=[c[0] for c in CASES])
def test_crane_gate(tmp_path: Path, case: str, kind: str, consent: str, outcome: str, clause: str) -> None:
    # the case's child plus one ordinary consenting child, so the output is never trivially empty
    nhs, allowed, cohort = numbers_for([kind, "allowed"])
    sub = tmp_path / "submission.csv"
    write_submission(sub, nhs, [consent, "Yes"])
    cl = tmp_path / "cleaned.dat"
    write_dat(cl, allowed)
    co = tmp_path / "cohort.dat"
    write_dat(co, cohort)
    out = tmp_path / "crane.csv"
    rep = collect(
        sub,
        profile=PROFILE,
        out=out,
        cleaned_list=cl,
        checked_at=CHECKED,
        cohort=co,
        now=NOW,
        record_audit=False,
    )
    assert rep.counts[outcome] == (2 if outcome == KEPT_ALL else 1), (case, clause, rep.counts)
    rows = read_out(out)
    assert list(rows[0]) == [PROFILE.nhs_number_column, PROFILE.consent_column, *ROW]  # shape is stable
    mine = [r for r in rows if r[PROFILE.nhs_number_column] == nhs[0]] if kind != "missing" else []
    if outcome.startswith("dropped"):
        assert len(rows) == 1 and mine == [], clause
    else:
        assert len(mine) == 1, clause
        row = mine[0]
        for f in PROFILE.registry_fields:
            if f != PROFILE.nhs_number_column:
                assert row[f] == ROW[f], (clause, f)
        for f in PROFILE.audit_fields:
            assert row[f] == (ROW[f] if outcome == KEPT_ALL else ""), (clause, f)
        assert row[PROFILE.consent_column] == consent  # kept as submitted


def test_withdrawal_applies_from_the_next_submission(tmp_path: Path) -> None:
    """000 §1: withdrawal "can be implemented at any time by changing the patient's consent status
    to 'No'" — submission 1 (Yes) carries the audit fields; submission 2 (No) does not."""
    nhs, allowed, _ = numbers_for(["allowed"])
    cl = tmp_path / "cleaned.dat"
    write_dat(cl, allowed)
    s1, s2 = tmp_path / "q1.csv", tmp_path / "q2.csv"
    write_submission(s1, nhs, ["Yes"])
    write_submission(s2, nhs, ["No"])
    o1, o2 = tmp_path / "q1-out.csv", tmp_path / "q2-out.csv"
    for s, o in ((s1, o1), (s2, o2)):
        collect(s, profile="crane", out=o, cleaned_list=cl, checked_at=CHECKED, now=NOW, record_audit=False)
    first, second = read_out(o1)[0], read_out(o2)[0]
    assert first["speech_outcome_5y"] == ROW["speech_outcome_5y"] and first["dental_index"] != ""
    assert all(second[f] == "" for f in PROFILE.audit_fields)
    assert second["cleft_type"] == ROW["cleft_type"]  # the s251 registry minimum dataset stays
    assert read_out(o1)[0]["speech_outcome_5y"] == ROW["speech_outcome_5y"]  # earlier output untouched


def test_rows_of_one_child_that_disagree_on_consent_fall_back_to_no(tmp_path: Path) -> None:
    """Fail closed: a child with rows saying Yes and No is treated as No in every row."""
    nhs, allowed, _ = numbers_for(["allowed"])
    sub = tmp_path / "s.csv"
    write_submission(sub, [nhs[0], nhs[0]], ["Yes", "No"])
    cl = tmp_path / "cleaned.dat"
    write_dat(cl, allowed)
    out = tmp_path / "o.csv"
    rep = collect(
        sub, profile="crane", out=out, cleaned_list=cl, checked_at=CHECKED, now=NOW, record_audit=False
    )
    assert rep.counts[KEPT_ALL] == 0 and rep.counts[KEPT_REGISTRY] == 2
    assert all(r["speech_outcome_5y"] == "" for r in read_out(out))


def test_the_crane_profile_says_it_is_illustrative() -> None:
    assert PROFILE.illustrative and "Data Dictionary" in PROFILE.note
    assert PROFILE.nhs_number_column in PROFILE.registry_fields
    assert not set(PROFILE.registry_fields) & set(PROFILE.audit_fields)
    assert {"cleft_type", "date_of_birth", "treating_unit"} <= set(PROFILE.registry_fields)
    assert {"speech_outcome_5y", "psychology_screening"} <= set(PROFILE.audit_fields)

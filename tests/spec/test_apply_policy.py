"""Spec: applying opt-outs to an extract. Each case quotes the clause it implements and runs on
every engine (DuckDB and the pure-Python reference).

001 §8.1: "the entire record, or records, associated with that individual must be fully removed
from the extract or dataset used for this purpose. It is not permitted to simply remove
identifiers or otherwise de-identify part of the record".

001 §8.2 (table):
  | NHS number available within the data to be released                          | opt-out applies |
  | missing or inaccurate AND obtaining it is not disproportionate                | applies (trace) |
  | missing or inaccurate AND obtaining it is disproportionate AND good practice  | does not apply  |
and "in some instances, patient identifiers including NHS number have been intentionally removed
... (legally restricted) ... no attempt should be made to re-identify the individual".

001 §8.4: "20 days to process and disclose the data" after a check with the service directly.

Every case runs on the Spark engine too (``spark`` fixture: one local session for the test run);
its output is a folder of parts, read back in order.

Tables are written as small ASCII tables; A..F are people (synthetic 9xx NHS numbers), A, B, C
and E are on the cleaned list (no opt-out), D and F are not.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from tests.support.outputs import read_output

from optout.dat import write_dat
from optout.errors import OptoutError, PolicyRefusal
from optout.nhs_number import format_number, synthetic
from optout.release import apply_opt_outs
from optout.release.engines import embedded_engine_names
from optout.store import Store

ENGINES = [*embedded_engine_names(), "spark"]  # every in-process engine, and Spark
_NUMS = synthetic(6, seed=11)
PEOPLE = {k: format_number(int(n)) for k, n in zip("ABCDEF", _NUMS, strict=True)}
ON_LIST = "ACBE"
CHECKED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = CHECKED + timedelta(days=1)


def table(text: str) -> list[list[str]]:
    """An ASCII table (``a | b`` rows, first row the header) with {A}..{F} as NHS numbers."""
    rows = []
    for line in text.strip().splitlines():
        cells = [c.strip() for c in line.split("|")]
        rows.append([c.format(**PEOPLE) if "{" in c else c for c in cells])
    return rows


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    return path


def released(path: Path) -> list[list[str]]:
    t = read_output(path)
    out = [t.column_names]
    for r in t.to_pylist():
        out.append(["" if v is None else str(v) for v in r.values()])
    return out


@dataclass
class Case:
    name: str
    clause: str
    tables: dict[str, str]
    expected: dict[str, str] | None  # table -> ASCII table of what goes out; None = refused
    links: list[str] = field(default_factory=list)
    unmatched: str = "fail"
    reason: str | None = None
    trace_index: str | None = None
    cohort: str | None = None  # people submitted (letters)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # table -> removed reason -> rows


PATIENTS = """
patient_id | nhs_number | sex
p1         | {A}        | F
p2         | {D}        | M
p3         | {B}        | F
"""

CASES = [
    Case(
        "a person on the cleaned list stays, one who is not is removed",
        "001 §8.1 / §8 'cleaned list of those that do not have a national data opt-out'",
        {"patients": PATIENTS},
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            """
        },
        counts={"patients": {"not_on_cleaned_list": 1}},
    ),
    Case(
        "whole record: a removed person's rows go from every linked table, grandchildren too",
        "001 §8.1 'the entire record, or records, associated with that individual must be fully removed'",
        {
            "patients": PATIENTS,
            "episodes": """
            episode_id | patient_id | ward
            e1         | p1         | 7
            e2         | p2         | 3
            e3         | p2         | 4
            e4         | p3         | 7
            """,
            "drugs": """
            drug | episode_id
            d1   | e1
            d2   | e2
            d3   | e3
            d4   | e4
            """,
        },
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            """,
            "episodes": """
            episode_id | patient_id | ward
            e1         | p1         | 7
            e4         | p3         | 7
            """,
            "drugs": """
            drug | episode_id
            d1   | e1
            d4   | e4
            """,
        },
        links=["episodes.patient_id=patients.patient_id", "drugs.episode_id=episodes.episode_id"],
        counts={
            "episodes": {"linked_to_removed_row": 2},
            "drugs": {"linked_to_removed_row": 2},
        },
    ),
    Case(
        "fail closed: a child row whose parent row is missing is removed (orphan)",
        "001 §8.1 (a row we cannot tie to a checked person cannot be shown not to be opted out)",
        {
            "patients": PATIENTS,
            "episodes": """
            episode_id | patient_id | ward
            e1         | p1         | 7
            e9         | p9         | 1
            e0         |            | 2
            """,
        },
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            """,
            "episodes": """
            episode_id | patient_id | ward
            e1         | p1         | 7
            """,
        },
        links=["episodes.patient_id=patients.patient_id"],
        counts={"episodes": {"orphan": 2}},
    ),
    Case(
        "a linked table with its own NHS number must pass both tests",
        "001 §8.1",
        {
            "patients": PATIENTS,
            "letters": """
            letter | patient_id | nhs_number
            l1     | p1         | {A}
            l2     | p2         | {A}
            l3     | p3         | {D}
            """,
        },
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            """,
            "letters": """
            letter | patient_id | nhs_number
            l1     | p1         | {A}
            """,
        },
        links=["letters.patient_id=patients.patient_id"],
        counts={"letters": {"linked_to_removed_row": 1, "not_on_cleaned_list": 1}},
    ),
    Case(
        "a parent key shared by two people is ambiguous: its children are removed",
        "001 §8.1 (fail closed)",
        {
            "patients": """
            family | nhs_number
            f1     | {A}
            f1     | {B}
            f2     | {C}
            """,
            "visits": """
            visit | family
            v1    | f1
            v2    | f2
            """,
        },
        {
            "patients": """
            family | nhs_number
            f1     | {A}
            f1     | {B}
            f2     | {C}
            """,
            "visits": """
            visit | family
            v2    | f2
            """,
        },
        links=["visits.family=patients.family"],
        counts={"visits": {"linked_to_removed_row": 1}},
    ),
    Case(
        "real-world spellings of the same number are the same person",
        "001 §8.2 'the NHS number is used as the single identifier'",
        {
            "patients": """
            id | nhs_number
            1  | {A}
            2  | {D}
            """
            + f"3  | {PEOPLE['A'][:3]} {PEOPLE['A'][3:6]} {PEOPLE['A'][6:]}\n"
            + f"4  | {PEOPLE['D'][:3]}-{PEOPLE['D'][3:6]}-{PEOPLE['D'][6:]}\n",
        },
        {
            "patients": f"""
            id | nhs_number
            1  | {{A}}
            3  | {PEOPLE["A"][:3]} {PEOPLE["A"][3:6]} {PEOPLE["A"][6:]}
            """
        },
        counts={"patients": {"not_on_cleaned_list": 2}},
    ),
    # ---- 001 §8.2: missing or invalid NHS numbers, each --unmatched choice ----------------------
    Case(
        "unmatched=fail (default): stop, write nothing",
        "001 §8.2 table row 2 (the opt-out applies; the organisation must decide how)",
        {"patients": PATIENTS + "p4 | | F\np5 | 123 | M\n"},
        None,
    ),
    Case(
        "unmatched=withhold: rows that cannot be checked are removed and counted",
        "001 §8.2 table rows 1-2 (the opt-out applies, so an unchecked row cannot go out)",
        {"patients": PATIENTS + "p4 | | F\np5 | 123 | M\n"},
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            """
        },
        unmatched="withhold",
        counts={"patients": {"not_on_cleaned_list": 1, "invalid_nhs_number": 2}},
    ),
    Case(
        "unmatched=trace: the number is looked up from a local id, then the opt-out applies",
        "001 §8.2 table row 2 ('effort in obtaining the NHS number ... is not disproportionate')",
        {"patients": PATIENTS + "p4 | | F\np5 | 123 | M\np6 | | F\np7 | | F\n"},
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            p4         |            | F
            """
        },
        unmatched="trace",
        trace_index="""
        patient_id | nhs_number
        p4         | {C}
        p5         | {F}
        p7         | 123
        """,
        counts={"patients": {"not_on_cleaned_list": 2, "untraced": 2}},
    ),
    Case(
        "unmatched=release, disproportionate effort: the rows stay, recorded in the manifest",
        "001 §8.2 table row 3 ('disproportionate ... AND good practice' -> opt-out does not apply)",
        {"patients": PATIENTS + "p4 | | F\n"},
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            p4         |            | F
            """
        },
        unmatched="release",
        reason="disproportionate-effort",
        counts={"patients": {"not_on_cleaned_list": 1}},
    ),
    Case(
        "unmatched=release, legally restricted: no attempt to re-identify",
        "001 §8.2 'no attempt should be made to re-identify the individual'",
        {"patients": PATIENTS + "p4 | | F\n"},
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            p4         |            | F
            """
        },
        unmatched="release",
        reason="legally-restricted",
    ),
    Case(
        "with the cohort: a number never submitted is a process error, removed and counted apart",
        "001 §8 (the service only answers for the numbers submitted)",
        {"patients": PATIENTS + "p4 | {C} | F\n"},
        {
            "patients": """
            patient_id | nhs_number | sex
            p1         | {A}        | F
            p3         | {B}        | F
            """
        },
        cohort="ABD",
        counts={"patients": {"opted_out": 1, "not_in_cohort": 1}},
    ),
]


def _run(case: Case, tmp_path: Path, engine: str):  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    paths = [write_csv(src / f"{name}.csv", table(text)) for name, text in case.tables.items()]
    allow = [int(PEOPLE[p]) for p in ON_LIST if case.cohort is None or p in case.cohort]
    cl = src / "cleaned.dat"
    write_dat(cl, sorted(allow))
    kwargs = {}
    if case.trace_index:
        kwargs["trace_index"] = write_csv(src / "index.csv", table(case.trace_index))
    if case.cohort:
        cohort = src / "cohort.dat"
        write_dat(cohort, sorted(int(PEOPLE[p]) for p in case.cohort))
        kwargs["cohort"] = cohort
    return apply_opt_outs(
        paths,
        out_dir=tmp_path / "release",
        cleaned_list=cl,
        checked_at=CHECKED,
        links=case.links,
        unmatched=case.unmatched,
        release_reason=case.reason,
        engine=engine,
        store=Store(f"sqlite:///{tmp_path / 'store.db'}"),
        now=NOW,
        **kwargs,
    )


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_apply(case: Case, engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if engine == "spark":
        request.getfixturevalue("spark")
    if case.expected is None:
        with pytest.raises(PolicyRefusal) as exc:
            _run(case, tmp_path, engine)
        assert "001 §8.2" in exc.value.message
        assert not (tmp_path / "release").exists()
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
        return
    report = _run(case, tmp_path, engine)
    for name, text in case.expected.items():
        assert released(tmp_path / "release" / f"{name}.csv") == table(text), name
    for name, removed in case.counts.items():
        got = {k: v["rows"] for k, v in report.table(name).removed.items()}
        assert got == removed, name
    if case.reason:
        import json

        manifest = json.loads((tmp_path / "release" / "release.json").read_text())
        assert manifest["choices"]["release_reason"] == case.reason
        assert manifest["files"][0]["opt_out_upheld"] is False
        assert manifest["files"][0]["basis"] == case.reason


@pytest.mark.parametrize(
    ("source_days", "after", "refused"),
    [
        (20, timedelta(days=19, hours=23), False),
        (20, timedelta(days=20, seconds=1), True),
    ],
)
def test_deadline_20_days_after_the_check(
    tmp_path: Path, source_days: int, after: timedelta, refused: bool
) -> None:
    """001 §8.4: '20 days to process and disclose the data' after a direct check."""
    case = CASES[0]
    src = tmp_path / "src"
    src.mkdir()
    paths = [write_csv(src / "patients.csv", table(case.tables["patients"]))]
    cl = src / "cleaned.dat"
    write_dat(cl, sorted(int(PEOPLE[p]) for p in ON_LIST))

    def go():  # type: ignore[no-untyped-def]
        return apply_opt_outs(
            paths,
            out_dir=tmp_path / "release",
            cleaned_list=cl,
            checked_at=CHECKED,
            store=Store(f"sqlite:///{tmp_path / 'store.db'}"),
            now=CHECKED + after,
        )

    if refused:
        with pytest.raises(PolicyRefusal, match=r"001 §8\.4"):
            go()
        assert not (tmp_path / "release").exists()
    else:
        rep = go()
        assert rep.deadline == CHECKED + timedelta(days=source_days)


def test_external_report_shows_small_counts_as_under_5(tmp_path: Path) -> None:
    """Small numbers would let a recipient work out who opted out (counts 1-4 -> "<5", 0 stays 0)."""
    rep = _run(CASES[1], tmp_path, "duckdb")
    ext = rep.to_dict(report_for="external")
    patients = next(t for t in ext["tables"] if t["name"] == "patients")
    assert patients["removed"]["not_on_cleaned_list"] == {"rows": "<5", "people": "<5"}
    assert patients["rows_in"] == "<5"
    assert "problem_rows" not in patients
    internal = rep.to_dict()
    assert next(t for t in internal["tables"] if t["name"] == "patients")["rows_removed"] == 1


def test_no_person_is_labelled_opted_out_without_the_cohort(tmp_path: Path) -> None:
    """Without the cohort we only know a number is not on the list, not that it was submitted."""
    rep = _run(CASES[0], tmp_path, "duckdb")
    assert "opted_out" not in rep.table("patients").removed
    assert "not_on_cleaned_list" in rep.table("patients").removed


def test_errors_and_reports_never_carry_an_nhs_number(tmp_path: Path) -> None:
    case = CASES[6]  # fail
    with pytest.raises(OptoutError) as exc:
        _run(case, tmp_path, "duckdb")
    text = exc.value.render()
    assert all(n not in text for n in PEOPLE.values())
    rep = _run(CASES[7], tmp_path / "w", "duckdb") if (tmp_path / "w").mkdir() is None else None
    assert rep is not None
    body = rep.to_json() + (tmp_path / "w" / "release" / "release.json").read_text()
    assert all(n not in body for n in PEOPLE.values())

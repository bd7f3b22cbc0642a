"""Linkage check across release files (001 §8.1: no common identifiers across files released
without the opt-out upheld)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optout.errors import InputError, UsageError
from optout.release.linkcheck import identifier_kind, linkcheck


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("NHS Number", "nhs-number"),
        ("nhs_no", "nhs-number"),
        ("patient_nhs_number", "nhs-number"),
        ("NHSNumber", "nhs-number"),
        ("CHI", "chi-number"),
        ("Local Patient ID", "local-patient-id"),
        ("MRN", "local-patient-id"),
        ("hospital_number", "local-patient-id"),
        ("patient_id", "local-patient-id"),
        ("PersonRef", "local-patient-id"),
        ("surname", "name"),
        ("Forename", "name"),
        ("address_line_1", "address"),
        ("email", "email"),
        ("mobile", "phone"),
        ("Date of Birth", "date-of-birth"),
        ("DOB", "date-of-birth"),
        ("post_code", "postcode"),
        ("Postcode", "postcode"),
        # near misses: not identifiers by name
        ("age", None),
        ("admission_date", None),
        ("ethnicity", None),
        ("gp_practice_code", None),
        ("diagnosis", None),
        ("channel", None),
    ],
)
def test_identifier_kind_by_column_name(column: str, kind: str | None) -> None:
    assert identifier_kind(column) == kind


def _write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_shared_identifier_column_names_are_reported(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "NHS Number,age", [f"{i},{i}" for i in range(3)])
    _write(tmp_path / "b.csv", "nhs_no,score", [f"{i},{i}" for i in range(3)])
    _write(tmp_path / "c.csv", "code,score", ["x,1"])
    report = linkcheck([tmp_path])
    kinds = [(f.kind, f.columns) for f in report.findings]
    assert kinds == [("shared-identifier", [("a.csv", "NHS Number"), ("b.csv", "nhs_no")])]
    assert not report.ok


def test_identifier_in_one_file_only_is_not_a_link(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "nhs_number,dob,postcode", ["1,2000-01-01,LS1 4AB"])
    _write(tmp_path / "b.csv", "dob,score", ["2000-01-01,3"])
    assert linkcheck([tmp_path / "a.csv", tmp_path / "b.csv"]).ok


def test_date_of_birth_and_postcode_together_in_two_files(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "dob,postcode,x", ["2000-01-01,LS1 4AB,1"])
    _write(tmp_path / "b.csv", "date_of_birth,post_code", ["2000-01-01,LS1 4AB"])
    report = linkcheck([tmp_path])
    assert [f.kind for f in report.findings] == ["shared-quasi-identifiers"]


def test_overlapping_high_cardinality_values_are_counted(tmp_path: Path) -> None:
    # a: P00000..P00149; b: the same people from 100..199 spelt in lower case with a space
    _write(tmp_path / "a.csv", "key,sex", [f"P{i:05d},{'MF'[i % 2]}" for i in range(150)])
    _write(tmp_path / "b.csv", "ref,sex", [f"p {i:05d},{'MF'[i % 2]}" for i in range(100, 200)])
    report = linkcheck([tmp_path])
    assert len(report.findings) == 1
    f = report.findings[0]
    assert f.kind == "overlapping-values"
    assert f.columns == [("a.csv", "key"), ("b.csv", "ref")]
    assert f.overlap == 50 and f.distinct == [150, 100]
    assert "50% of the smaller column's 100" in f.message
    sex = [c for c in report.columns if c.column == "sex"]
    assert all(not c.high_cardinality for c in sex)  # 2 distinct values: never compared


def test_repeated_identifier_still_counts_as_high_cardinality(tmp_path: Path) -> None:
    # an episodes table: 40 people, 5 episodes each (uniqueness 0.2 >= 0.05)
    _write(tmp_path / "episodes.csv", "person,episode", [f"K{i % 40:05d},{i}" for i in range(200)])
    _write(tmp_path / "people.csv", "who", [f"K{i:05d}" for i in range(40)])
    report = linkcheck([tmp_path], min_overlap=10)
    assert [(f.overlap, f.columns) for f in report.findings] == [
        (40, [("episodes.csv", "person"), ("people.csv", "who")])
    ]


def test_short_values_and_thresholds(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "age", [str(i) for i in range(90)])
    _write(tmp_path / "b.csv", "score", [str(i) for i in range(90)])
    assert linkcheck([tmp_path]).ok  # ages and scores coincide by chance: too short to compare
    assert not linkcheck([tmp_path], min_length=1).ok
    assert linkcheck([tmp_path], min_length=1, min_overlap=91).ok


def test_parquet_and_csv_are_compared(tmp_path: Path) -> None:
    pq.write_table(pa.table({"ident": [f"Z{i:06d}" for i in range(30)]}), tmp_path / "a.parquet")
    _write(tmp_path / "b.csv", "other", [f"Z{i:06d}" for i in range(20, 60)])
    report = linkcheck([tmp_path])
    assert [f.overlap for f in report.findings] == [10]


def test_ignored_columns_are_left_out(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "row_no,nhs_number", [f"{1000 + i},x" for i in range(50)])
    _write(tmp_path / "b.csv", "seq,nhs_no", [f"{1000 + i},y" for i in range(50)])
    assert [f.kind for f in linkcheck([tmp_path]).findings] == ["shared-identifier", "overlapping-values"]
    assert [f.kind for f in linkcheck([tmp_path], ignore=["ROW_NO"]).findings] == ["shared-identifier"]
    report = linkcheck([tmp_path], ignore=["a.csv:row_no", "b.csv:nhs_no"])
    assert report.ok and report.settings["ignore"] == ["a.csv:row_no", "b.csv:nhs_no"]


def test_one_file_has_nothing_to_compare(tmp_path: Path) -> None:
    _write(tmp_path / "a.csv", "nhs_number,nhs_no", [f"{i},{i}" for i in range(50)])
    report = linkcheck([tmp_path / "a.csv"])
    assert report.ok and "only one file" in report.render()


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        linkcheck([tmp_path / "missing.csv"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no data files"):
        linkcheck([tmp_path / "empty"])
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"bad\.parquet"):
        linkcheck([tmp_path / "bad.parquet"])
    with pytest.raises(UsageError):
        linkcheck([tmp_path], min_overlap=0)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.lists(
        st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=8, max_size=12),
        min_size=25,
        max_size=60,
        unique=True,
    ),
    cut=st.integers(min_value=0, max_value=25),
)
def test_the_report_never_contains_a_value_from_the_files(
    tmp_path_factory: pytest.TempPathFactory, values: list[str], cut: int
) -> None:
    d = tmp_path_factory.mktemp("lk")
    _write(d / "one.csv", "nhs_number", values)
    _write(d / "two.csv", "nhs_number", values[cut:])
    report = linkcheck([d], min_distinct=5)
    text = report.render() + json.dumps(report.to_dict())
    assert not report.ok
    for v in values:
        assert v not in text and v.lower() not in text

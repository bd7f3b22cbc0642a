"""The collection gate's bad-input handling, formats, report and audit entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optout import audit
from optout.check.cleaned_list import AllowList
from optout.dat import write_dat
from optout.errors import InputError, NotFoundError, OutputError, PolicyRefusal, UsageError
from optout.nhs_number import format_number, synthetic
from optout.registry.gate import (
    DROPPED_NHS_NUMBER,
    DROPPED_OPTED_OUT,
    KEPT_ALL,
    KEPT_REGISTRY,
    KEPT_REGISTRY_UNCLEAR,
    OUTCOMES,
    collect,
    load_profile,
    parse_profile,
)
from optout.store import Store

CHECKED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 5, tzinfo=UTC)

MINI = b"""
format: optout-collection-profile/1
name: mini
nhs_number_column: nhs
consent: {column: consent, yes_values: ["Yes"], no_values: ["No"]}
registry_fields: [nhs, cleft_type]
audit_fields: [speech]
"""


@pytest.fixture()
def mini(tmp_path: Path) -> Path:
    p = tmp_path / "mini.yaml"
    p.write_bytes(MINI)
    return p


def allow(numbers: list[int], source: str = "one-off", cohort: list[int] | None = None) -> AllowList:
    return AllowList(
        numbers=np.unique(np.array(numbers, dtype=np.int64)),
        checked_at=CHECKED,
        source=source,
        sha256="0" * 64,
        origin="test",
        cohort=None if cohort is None else np.unique(np.array(cohort, dtype=np.int64)),
    )


def csv_file(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


N = synthetic(10, seed=7).tolist()


def test_profile_unknown_name_says_did_you_mean() -> None:
    with pytest.raises(NotFoundError) as exc:
        load_profile("crnae")
    assert "did you mean 'crane'" in exc.value.message


def test_profile_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_profile(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (MINI.replace(b"audit_fields", b"audit_feilds"), "did you mean 'audit_fields'"),
        (MINI.replace(b"yes_values", b"yes"), "true/false"),
        (MINI.replace(b'["Yes"]', b"[Yes]"), "quote"),
        (MINI.replace(b"[speech]", b"[cleft_type]"), "both registry and audit"),
        (MINI.replace(b"[speech]", b"[nhs]"), "cannot be audit fields"),
        (MINI.replace(b"name: mini\n", b""), "missing name"),
        (b"- a\n- b\n", "mapping"),
        (b"name: [unclosed\n", "not valid YAML"),
        (MINI.replace(b'no_values: ["No"]', b'no_values: ["yes"]'), "both yes and no"),
    ],
)
def test_bad_profiles_are_input_errors(text: bytes, needle: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_profile(text, source="p.yaml")
    assert needle in exc.value.render()
    assert exc.value.hint


def test_unknown_column_in_submission_is_refused(tmp_path: Path, mini: Path) -> None:
    sub = csv_file(tmp_path / "s.csv", "nhs,consent,cleft_type,speeech", [f"{N[0]},Yes,CL,ok"])
    with pytest.raises(InputError) as exc:
        collect(sub, profile=mini, out=tmp_path / "o.csv", allow_list=allow(N), now=NOW, record_audit=False)
    assert "speeech" in exc.value.message and "did you mean 'speech'" in exc.value.message
    assert exc.value.where is not None and exc.value.where.column == "speeech"
    assert not (tmp_path / "o.csv").exists()


def test_missing_profile_column_is_refused(tmp_path: Path, mini: Path) -> None:
    sub = csv_file(tmp_path / "s.csv", "nhs,consent,cleft_type", [f"{N[0]},Yes,CL"])
    with pytest.raises(InputError) as exc:
        collect(sub, profile=mini, out=tmp_path / "o.csv", allow_list=allow(N), now=NOW, record_audit=False)
    assert "speech" in exc.value.message


def test_expired_cleaned_list_is_refused(tmp_path: Path, mini: Path) -> None:
    sub = csv_file(tmp_path / "s.csv", "nhs,consent,cleft_type,speech", [f"{N[0]},Yes,CL,ok"])
    late = datetime(2026, 3, 22, tzinfo=UTC)  # 21 days after the check
    with pytest.raises(PolicyRefusal) as exc:
        collect(sub, profile=mini, out=tmp_path / "o.csv", allow_list=allow(N), now=late, record_audit=False)
    assert "001 §8.4" in exc.value.message and "20 days" in exc.value.message
    cache_late = datetime(2026, 3, 15, tzinfo=UTC)  # 14 days after a cache refresh
    with pytest.raises(PolicyRefusal):
        collect(
            sub,
            profile=mini,
            out=tmp_path / "o.csv",
            allow_list=allow(N, "cache"),
            now=cache_late,
            record_audit=False,
        )


def test_usage_errors(tmp_path: Path, mini: Path) -> None:
    sub = csv_file(tmp_path / "s.csv", "nhs,consent,cleft_type,speech", [f"{N[0]},Yes,CL,ok"])
    with pytest.raises(UsageError):
        collect(sub, profile=mini, out=tmp_path / "o.csv", now=NOW, record_audit=False)  # no cleaned list
    with pytest.raises(UsageError):
        collect(sub, profile=mini, out=sub, allow_list=allow(N), now=NOW, record_audit=False)
    with pytest.raises(UsageError):
        collect(sub, profile=mini, out=None, allow_list=allow(N), now=NOW, record_audit=False)
    with pytest.raises(UsageError):
        collect(
            sub,
            profile=mini,
            out=tmp_path / "o.csv",
            allow_list=allow(N),
            report_for="public",
            now=NOW,
            record_audit=False,
        )


def test_existing_output_needs_force(tmp_path: Path, mini: Path) -> None:
    sub = csv_file(tmp_path / "s.csv", "nhs,consent,cleft_type,speech", [f"{N[0]},Yes,CL,ok"])
    out = tmp_path / "o.csv"
    out.write_text("keep me")
    with pytest.raises(OutputError):
        collect(sub, profile=mini, out=out, allow_list=allow(N), now=NOW, record_audit=False)
    assert out.read_text() == "keep me"
    collect(sub, profile=mini, out=out, allow_list=allow(N), now=NOW, record_audit=False, force=True)
    assert out.read_text().startswith("nhs,consent,cleft_type,speech")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.yaml", "o.csv", "o.csv.report.json", "s.csv"]


def test_parquet_in_parquet_out_keeps_types_and_nulls_audit_fields(tmp_path: Path, mini: Path) -> None:
    t = pa.table(
        {
            "nhs": pa.array([N[0], N[1], N[2]], pa.int64()),
            "consent": ["Yes", "No", "Yes"],
            "cleft_type": ["CL", "CP", "CLP"],
            "speech": pa.array([3, 4, 5], pa.int32()),
        }
    )
    sub = tmp_path / "s.parquet"
    pq.write_table(t, sub)
    out = tmp_path / "o.parquet"
    rep = collect(sub, profile=mini, out=out, allow_list=allow([N[0], N[1]]), now=NOW, record_audit=False)
    got = pq.read_table(out)
    assert got.schema == t.schema
    assert got.column("nhs").to_pylist() == [N[0], N[1]]
    assert got.column("speech").to_pylist() == [3, None]
    assert rep.counts[KEPT_ALL] == 1 and rep.counts[KEPT_REGISTRY] == 1 and rep.counts[DROPPED_OPTED_OUT] == 1


def test_csv_values_are_kept_exactly_and_the_delimiter_too(tmp_path: Path, mini: Path) -> None:
    spaced = format_number(N[0], spaced=True)
    sub = csv_file(tmp_path / "s.csv", "nhs;consent;cleft_type;speech", [f"{spaced};Yes;CL, bilateral;007"])
    out = tmp_path / "o.csv"
    collect(sub, profile=mini, out=out, allow_list=allow([N[0]]), now=NOW, record_audit=False)
    assert out.read_text().splitlines() == [
        "nhs;consent;cleft_type;speech",
        f"{spaced};Yes;CL, bilateral;007",
    ]


def test_report_counts_and_rows_to_fix_never_numbers(tmp_path: Path, mini: Path) -> None:
    rows = [
        f"{N[0]},Yes,CL,a",
        f"{N[1]},No,CL,b",
        ",Yes,CL,c",
        f"{N[2]},Yes,CL,d",
        "12345,No,CL,e",
        f"{N[3]},maybe,CL,f",
    ]
    sub = csv_file(tmp_path / "s.csv", "nhs,consent,cleft_type,speech", rows)
    out = tmp_path / "o.csv"
    rep = collect(
        sub, profile=mini, out=out, allow_list=allow([N[0], N[1], N[3]]), now=NOW, record_audit=False
    )
    assert rep.counts == {
        KEPT_ALL: 1,
        KEPT_REGISTRY: 1,
        KEPT_REGISTRY_UNCLEAR: 1,
        DROPPED_OPTED_OUT: 1,
        "dropped_not_checked": 0,
        DROPPED_NHS_NUMBER: 2,
    }
    assert rep.rows_to_fix == [3, 5]
    assert rep.nhs_number_problems == {"missing": 1, "wrong length": 1}
    internal = (tmp_path / "o.csv.report.json").read_text()
    for n in N[:4]:
        assert str(n) not in internal and format_number(n, spaced=True) not in internal
    d = json.loads(internal)
    assert d["rows_to_fix"] == [3, 5] and d["counts"][KEPT_ALL] == 1
    ext = rep.to_dict(report_for="external")
    assert ext["counts"][KEPT_ALL] == "<5" and "rows_to_fix" not in ext
    assert ext["counts"]["dropped_not_checked"] == 0
    assert any("treated as No" in x for x in rep.notes)
    text = rep.describe()
    assert "rows whose NHS number needs fixing: 3, 5" in text
    assert "3, 5" not in rep.describe(report_for="external")


def test_dry_run_writes_nothing(tmp_path: Path, mini: Path) -> None:
    sub = csv_file(tmp_path / "s.csv", "nhs,consent,cleft_type,speech", [f"{N[0]},Yes,CL,ok"])
    rep = collect(sub, profile=mini, out=tmp_path / "o.csv", allow_list=allow(N), now=NOW, dry_run=True)
    assert rep.dry_run and rep.counts[KEPT_ALL] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini.yaml", "s.csv"]


def test_each_run_is_audited_with_counts_only(tmp_path: Path, mini: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    sub = csv_file(
        tmp_path / "s.csv", "nhs,consent,cleft_type,speech", [f"{N[0]},Yes,CL,ok", f"{N[1]},Yes,CL,x"]
    )
    cl = tmp_path / "cl.dat"
    write_dat(cl, np.array([N[0]], dtype=np.int64))
    collect(
        sub, profile=mini, out=tmp_path / "o.csv", cleaned_list=cl, checked_at=CHECKED, store=store, now=NOW
    )
    (e,) = audit.entries(store)
    assert e.action == "collection.filtered" and e.subject == "mini"
    d = e.details_dict
    assert d["counts"][KEPT_ALL] == 1 and d["counts"][DROPPED_OPTED_OUT] == 1 and d["rows_in"] == 2
    assert str(N[0]) not in e.details and str(N[1]) not in e.details
    assert audit.verify(store).ok


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kinds=st.lists(st.sampled_from(["allowed", "opted-out", "bad"]), min_size=1, max_size=12),
    consents=st.lists(st.sampled_from(["Yes", "No", "", "unknown", "YES"]), min_size=12, max_size=12),
)
def test_outcomes_partition_the_rows_and_nothing_opted_out_survives(
    tmp_path_factory: pytest.TempPathFactory, kinds: list[str], consents: list[str]
) -> None:
    tmp = tmp_path_factory.mktemp("gen")
    mini = tmp / "mini.yaml"
    mini.write_bytes(MINI)
    nums = synthetic(len(kinds), seed=len(kinds)).tolist()
    text = [str(n) if k != "bad" else str(n)[:9] for n, k in zip(nums, kinds, strict=True)]
    rows = [f"{t},{c},CL,s{i}" for i, (t, c) in enumerate(zip(text, consents, strict=False))]
    sub = csv_file(tmp / "s.csv", "nhs,consent,cleft_type,speech", rows)
    allowed = [n for n, k in zip(nums, kinds, strict=True) if k == "allowed"]
    out = tmp / "o.csv"
    rep = collect(sub, profile=mini, out=out, allow_list=allow(allowed), now=NOW, record_audit=False)
    assert sum(rep.counts[k] for k in OUTCOMES) == len(kinds)
    got = pacsv.read_csv(out, convert_options=pacsv.ConvertOptions(column_types={"nhs": pa.string()}))
    kept = set(got.column("nhs").to_pylist())
    assert kept == {str(n) for n in allowed}
    for r in got.to_pylist():
        if r["speech"]:
            assert r["consent"].strip().lower() == "yes"

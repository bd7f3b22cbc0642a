"""optout.check.cleaned_list: the service's .dat reply / a one-column CSV -> AllowList, the sidecar,
the disclosure deadline (001 §8.4), and strict errors that never quote a number."""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from optout.check.cleaned_list import (
    SIDECAR_FORMAT,
    AllowList,
    read_cleaned_list,
    read_dat_bytes,
    sorted_unique,
    write_dat,
)
from optout.errors import InputError, IntegrityError, OutputError, UsageError
from optout.nhs_number import format_number, synthetic

NUMS = synthetic(50, seed=2)
T = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    sha = write_dat(tmp_path / "l.dat", NUMS)
    data = (tmp_path / "l.dat").read_bytes()
    assert sha == hashlib.sha256(data).hexdigest()
    assert data.startswith(format_number(int(NUMS[0])).encode() + b",\n")
    al = read_cleaned_list(tmp_path / "l.dat", checked_at=T)
    assert np.array_equal(al.numbers, np.sort(NUMS))
    assert al.sha256 == sha and al.source == "one-off" and al.origin == "l.dat"
    assert [p.name for p in tmp_path.iterdir()] == ["l.dat"]  # no temporary file left


@pytest.mark.parametrize(
    "body",
    [
        "{a},\n{b},\n",  # LF
        "{a},\r\n{b},\r\n",  # CRLF
        "{a},\n{b},",  # no final newline
        "{b},\n{a},\n{a},\n",  # unsorted, repeated
        "{a}\n{b}\n",  # commas missing (accepted when reading)
    ],
)
def test_dat_forms(body: str) -> None:
    a, b = sorted(format_number(int(n)) for n in NUMS[:2])
    got = read_dat_bytes(body.format(a=a, b=b).encode(), source_name="x.dat")
    assert got.tolist() == [int(a), int(b)]


def test_empty_list_means_nobody_may_go_out() -> None:
    assert read_dat_bytes(b"", source_name="x.dat").size == 0


@pytest.mark.parametrize(
    ("body", "line", "cls"),
    [
        (b"9434765919,\nabc,\n", 2, "not digits"),
        (b"9434765919,\n943476591,\n", 2, "wrong length"),
        (b"9434765918,\n", 1, "bad check digit"),
    ],
)
def test_dat_errors_name_the_line_not_the_number(body: bytes, line: int, cls: str) -> None:
    with pytest.raises(InputError) as exc:
        read_dat_bytes(body, source_name="x.dat")
    assert exc.value.where is not None
    assert exc.value.where.line == line and exc.value.where.value_class == cls
    assert "943476591" not in exc.value.render()


def test_service_rejection_is_recognised() -> None:
    with pytest.raises(InputError, match="rejection"):
        read_dat_bytes(b"The file contains one or more invalid NHS Numbers.\n", source_name="x.dat")


def test_one_column_csv_with_header(tmp_path: Path) -> None:
    p = tmp_path / "l.csv"
    p.write_text("nhs_number\n" + "\n".join(format_number(int(n), spaced=True) for n in NUMS[:5]) + "\n")
    al = read_cleaned_list(p, checked_at=T)
    assert al.numbers.tolist() == sorted(int(n) for n in NUMS[:5])


def test_checked_at_is_required_and_must_have_a_zone(tmp_path: Path) -> None:
    write_dat(tmp_path / "l.dat", NUMS)
    with pytest.raises(UsageError, match=r"001 §8\.4"):
        read_cleaned_list(tmp_path / "l.dat")
    with pytest.raises(UsageError, match="time zone"):
        read_cleaned_list(tmp_path / "l.dat", checked_at="2026-03-02T09:30:00")
    al = read_cleaned_list(tmp_path / "l.dat", checked_at="2026-03-02T10:30:00+01:00")
    assert al.checked_at == T and al.checked_at.tzinfo == UTC


def test_sidecar_gives_checked_at_and_local_id(tmp_path: Path) -> None:
    sha = write_dat(tmp_path / "l.dat", NUMS)
    side = {
        "format": SIDECAR_FORMAT,
        "mode": "one-off",
        "checked_at": "2026-03-02T09:30:00Z",
        "local_id": "REQ-1",
        "sha256": sha,
    }
    (tmp_path / "l.dat.json").write_text(json.dumps(side))
    al = read_cleaned_list(tmp_path / "l.dat")
    assert al.checked_at == T and al.local_id == "REQ-1"
    assert al.deadline == T + timedelta(days=20)


def test_sidecar_hash_mismatch_is_an_integrity_error(tmp_path: Path) -> None:
    write_dat(tmp_path / "l.dat", NUMS)
    side = {"format": SIDECAR_FORMAT, "checked_at": "2026-03-02T09:30:00Z", "sha256": "0" * 64}
    (tmp_path / "l.dat.json").write_text(json.dumps(side))
    with pytest.raises(IntegrityError):
        read_cleaned_list(tmp_path / "l.dat")


def test_deadlines_001_8_4() -> None:
    """001 §8.4: 20 days after a direct check; 13 days after a cache refresh."""
    one_off = AllowList(np.empty(0, np.int64), T, "one-off", "x", "o")
    cache = AllowList(np.empty(0, np.int64), T, "cache", "x", "o")
    assert one_off.deadline - T == timedelta(days=20)
    assert cache.deadline - T == timedelta(days=13)


def test_repr_never_shows_numbers() -> None:
    al = AllowList(np.sort(NUMS), T, "one-off", "ab" * 32, "o")
    assert all(format_number(int(n)) not in repr(al) for n in NUMS)


def test_cohort_must_contain_the_cleaned_list(tmp_path: Path) -> None:
    write_dat(tmp_path / "l.dat", NUMS[:10])
    write_dat(tmp_path / "c.dat", NUMS[:20])
    al = read_cleaned_list(tmp_path / "l.dat", checked_at=T, cohort=tmp_path / "c.dat")
    assert al.cohort is not None and al.cohort.size == 20
    write_dat(tmp_path / "small.dat", NUMS[:5])
    with pytest.raises(InputError, match="not in the cohort"):
        read_cleaned_list(tmp_path / "l.dat", checked_at=T, cohort=tmp_path / "small.dat")


def test_write_dat_to_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputError):
        write_dat(tmp_path / "nope" / "l.dat", NUMS)


def test_sorted_unique() -> None:
    x = np.array([5, 3, 5, 1, 3], dtype=np.int64)
    assert sorted_unique(x).tolist() == [1, 3, 5]
    assert sorted_unique(np.empty(0, np.int64)).size == 0


def test_naive_timezone_other_than_utc(tmp_path: Path) -> None:
    write_dat(tmp_path / "l.dat", NUMS)
    al = read_cleaned_list(
        tmp_path / "l.dat", checked_at=datetime(2026, 3, 2, 4, 30, tzinfo=timezone(timedelta(hours=-5)))
    )
    assert al.checked_at == T
    assert os.path.exists(tmp_path / "l.dat")

"""Reading a cohort to check: every form, invalid rows withheld by class and row, never sent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optout.check.cohort import cohort_from_numbers, read_cohort
from optout.errors import InputError, UsageError
from optout.nhs_number import format_number, synthetic

GOOD = [int(x) for x in synthetic(6, seed=11)]
BAD_CHECK = GOOD[0] + 1 if (GOOD[0] % 10) != 9 else GOOD[0] - 1  # same length, wrong check digit


def _lines(values: list[str]) -> str:
    return "".join(f"{v}\n" for v in values)


def test_csv_column_normalised_deduplicated_and_sorted(tmp_path: Path) -> None:
    p = tmp_path / "cohort.csv"
    rows = [format_number(GOOD[0], spaced=True), str(GOOD[1]), str(GOOD[0]), "", "12345", str(BAD_CHECK)]
    p.write_text("id,nhs_number\n" + "".join(f"r{i},{v}\n" for i, v in enumerate(rows)))
    c = read_cohort(p)
    assert c.column == "nhs_number"
    assert c.numbers.tolist() == sorted({GOOD[0], GOOD[1]})
    assert (c.rows, c.duplicates, c.withheld) == (6, 1, 3)
    by = {k.reason: (k.count, k.rows) for k in c.invalid}
    assert by == {"missing": (1, [4]), "wrong length": (1, [5]), "bad check digit": (1, [6])}


def test_report_never_shows_a_value(tmp_path: Path) -> None:
    p = tmp_path / "cohort.csv"
    p.write_text("nhs_number\n" + _lines([str(GOOD[0]), str(BAD_CHECK), "94347659"]))
    c = read_cohort(p)
    text = c.describe_withheld() + str(c.summary())
    assert "bad check digit: 1 row (row 2)" in text and "wrong length: 1 row (row 3)" in text
    for v in (str(GOOD[0]), str(BAD_CHECK), "94347659"):
        assert v not in text


def test_plain_list_and_dat(tmp_path: Path) -> None:
    plain = tmp_path / "cohort.txt"
    plain.write_text(_lines([str(g) for g in GOOD[:3]]))
    dat = tmp_path / "cohort.dat"
    dat.write_bytes(b"".join(f"{g},\r\n".encode() for g in GOOD[:3]))
    for p in (plain, dat):
        c = read_cohort(p)
        assert c.numbers.tolist() == sorted(GOOD[:3]) and c.rows == 3 and c.column is None


def test_parquet_column(tmp_path: Path) -> None:
    p = tmp_path / "cohort.parquet"
    pq.write_table(pa.table({"NHS_NUMBER": pa.array(GOOD[:4], pa.int64()), "x": [1, 2, 3, 4]}), p)
    c = read_cohort(p)
    assert c.column == "NHS_NUMBER" and c.numbers.tolist() == sorted(GOOD[:4])


def test_column_must_be_named_when_ambiguous(tmp_path: Path) -> None:
    p = tmp_path / "cohort.csv"
    p.write_text("a,b\n" + _lines([f"{GOOD[0]},{GOOD[1]}"]))
    with pytest.raises(UsageError) as exc:
        read_cohort(p)
    assert "--column" in (exc.value.hint or "")
    assert read_cohort(p, column="b").numbers.tolist() == [GOOD[1]]


def test_chi_numbers_keep_leading_zero(tmp_path: Path) -> None:
    p = tmp_path / "chi.csv"
    p.write_text("chi\n0101000006\n")  # 010 100 0006: a valid CHI number (Mod 11)
    assert read_cohort(p, chi=True).numbers.tolist() == [101_000_006]


@pytest.mark.parametrize("content", ["", "\n\n", "nhs_number\n"])
def test_empty_cohort_is_refused_before_sending(tmp_path: Path, content: str) -> None:
    p = tmp_path / "cohort.csv"
    p.write_text(content)
    with pytest.raises(InputError) as exc:  # exit 3, from reading or from the check before sending
        read_cohort(p).require_something_to_send()
    assert exc.value.exit_code == 3


def test_all_invalid_cohort_is_refused_before_sending(tmp_path: Path) -> None:
    p = tmp_path / "cohort.csv"
    p.write_text("nhs_number\n" + _lines(["1", "abc", str(BAD_CHECK)]))
    c = read_cohort(p)
    with pytest.raises(InputError, match="none of the 3 rows") as exc:
        c.require_something_to_send()
    assert str(BAD_CHECK) not in exc.value.render()


def test_missing_file() -> None:
    with pytest.raises(InputError):
        read_cohort("/nonexistent/cohort.csv")


def test_cohort_from_numbers() -> None:
    c = cohort_from_numbers(np.array(GOOD + GOOD[:2], dtype=np.int64))
    assert c.size == len(GOOD) and c.duplicates == 2

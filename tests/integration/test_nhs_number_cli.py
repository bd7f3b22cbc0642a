"""``optout nhs-number check``: counts per problem class and per range, row numbers of problems,
exit 0 when all are valid and 3 when some are not; never a number on screen."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.support.printed import nhs_numbers_in

from optout.cli import main
from optout.dat import write_dat
from optout.nhs_number import format_number, parse, synthetic

NUMS = [format_number(int(n)) for n in synthetic(5, seed=9)]
TEN = re.compile(r"(?<!\d)\d{10}(?!\d)")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert nhs_numbers_in(out + err) == []
    assert "Traceback" not in err
    return code, out, err


def test_all_valid_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.csv"
    p.write_text("id,nhs_number\n" + "".join(f"{i},{n}\n" for i, n in enumerate(NUMS)))
    code, out, _ = run(capsys, "nhs-number", "check", str(p), "--json")
    assert code == 0
    s = json.loads(out)
    assert s["rows"] == 5 and s["valid"] == 5 and s["invalid"] == 0
    assert s["column"] == "nhs_number" and s["valid_by_range"] == {"test": 5}


def test_problems_are_counted_by_class_with_row_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_check = NUMS[0][:9] + str((int(NUMS[0][9]) + 1) % 10)
    values = [NUMS[0], "", "12345", "abc", bad_check, f"{NUMS[1][:3]} {NUMS[1][3:6]} {NUMS[1][6:]}", NUMS[0]]
    p = tmp_path / "c.csv"
    p.write_text("patient,NHS_No\n" + "".join(f"{i},{v}\n" for i, v in enumerate(values)))
    code, out, _ = run(capsys, "nhs-number", "check", str(p), "--json")
    assert code == 3
    s = json.loads(out)
    assert s["valid"] == 3 and s["invalid"] == 4 and s["duplicate_rows"] == 1
    by = s["invalid_by_reason"]
    assert by["missing"] == {"rows": 1, "row_numbers": [2]}
    assert by["wrong length"]["row_numbers"] == [3]
    assert by["not digits"]["row_numbers"] == [4]
    assert by["bad check digit"]["row_numbers"] == [5]
    # the human form: tables, no numbers
    code, out, _ = run(capsys, "nhs-number", "check", str(p))
    assert code == 3 and "bad check digit" in out and "7 rows" in out


def test_chi_numbers_with_impossible_dates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CHI-range numbers whose DDMMYY is not a date have their own class, in every column type."""
    # 29/39/40 and 01/13/01 pass Modulus 11; 29/39/40 with a wrong check digit fails Modulus 11
    # first; 29/02/00 and 01/01/01 are real dates
    values = [NUMS[0], "2939408734", "293 940 8734", "0113011113", "2939408735", "2902000006", "0101011113"]
    p = tmp_path / "c.csv"
    p.write_text("nhs_number\n" + "".join(f"{v}\n" for v in values))
    code, out, _ = run(capsys, "nhs-number", "check", str(p), "--json")
    assert code == 3
    s = json.loads(out)
    assert s["valid"] == 3 and s["invalid"] == 4
    assert s["invalid_by_reason"]["bad CHI date"] == {"rows": 3, "row_numbers": [2, 3, 4]}
    assert s["invalid_by_reason"]["bad check digit"] == {"rows": 1, "row_numbers": [5]}
    assert s["valid_by_range"] == {"scotland-chi": 2, "test": 1}
    for t in (pa.int64(), pa.float64()):
        ints = [int(v.replace(" ", "")) for v in values]
        pq.write_table(pa.table({"chi_number": pa.array(ints, t)}), tmp_path / "t.parquet")
        code, out, _ = run(capsys, "nhs-number", "check", str(tmp_path / "t.parquet"), "--chi", "--json")
        assert code == 3
        assert json.loads(out)["invalid_by_reason"]["bad CHI date"]["row_numbers"] == [2, 3, 4]
    code, out, _ = run(capsys, "nhs-number", "check", str(p))
    assert code == 3 and "bad CHI date" in out and "2939408734" not in out


def test_column_option_parquet_integers_and_chi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chi = 101_000_000 + 0  # search a valid CHI number that lost its leading zero
    while not parse(f"0{chi}").ok:
        chi += 1
    pq.write_table(
        pa.table({"a": [1, 2], "chi_id": pa.array([chi, chi], pa.int64())}), tmp_path / "t.parquet"
    )
    code, out, _ = run(
        capsys, "nhs-number", "check", str(tmp_path / "t.parquet"), "--column", "chi_id", "--json"
    )
    assert code == 3 and json.loads(out)["invalid_by_reason"]["wrong length"]["rows"] == 2
    code, out, _ = run(
        capsys, "nhs-number", "check", str(tmp_path / "t.parquet"), "--column", "chi_id", "--chi", "--json"
    )
    assert code == 0 and json.loads(out)["valid_by_range"] == {"scotland-chi": 2}


def test_dat_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_dat(tmp_path / "cohort.dat", [int(n) for n in NUMS])
    code, out, _ = run(capsys, "nhs-number", "check", str(tmp_path / "cohort.dat"), "--json")
    assert code == 0 and json.loads(out)["valid"] == 5


def test_which_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "c.csv"
    p.write_text("a,b\n1,2\n")
    code, _, err = run(capsys, "nhs-number", "check", str(p))
    assert code == 2 and "--column" in err
    code, _, err = run(capsys, "nhs-number", "check", str(p), "--column", "zz")
    assert code == 3 and "no column" in err
    code, _, err = run(capsys, "nhs-number", "check", str(tmp_path / "missing.csv"))
    assert code == 3 and "does not exist" in err

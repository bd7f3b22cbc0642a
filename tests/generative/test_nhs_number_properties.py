"""NHS-number properties on arbitrary inputs (hypothesis).

- Modulus 11: any nine digits plus their computed check digit is valid, unless the remainder
  gives 10, in which case no tenth digit makes a valid number.
- Changing any single digit of a valid number makes it invalid (Modulus 11 detects every
  single-digit error), and so does swapping two different adjacent digits among the first nine.
- Scottish CHI numbers (010 100 0000 - 311 299 9999) begin with a date of birth DDMMYY: one
  that passes Modulus 11 but whose first six digits are not a real date is "bad CHI date".
  Modulus 11 is checked first, so a number failing both is "bad check digit".
- The three forms of the rules, scalar ``parse``, ``parse_array`` (int, float and text Arrow
  columns) and the DuckDB SQL (``sql_reason`` / ``sql_normalised``) agree on every input,
  CHI-range numbers with impossible dates included.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optout import nhs_number as N
from optout.nhs_number import Reason, parse

WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def reference_check(nine_digits: str) -> int | None:
    """The NHS Data Dictionary's algorithm, written out independently of the code under test."""
    total = sum(int(d) * w for d, w in zip(nine_digits, WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def reference_bad_chi_date(number: str) -> bool:
    """In the CHI range and the first six digits are not a real date DDMMYY, as the CHI
    definition and the nhs-number package read them (strptime's %y: 29/02 is a date exactly
    when YY is divisible by 4). Written independently of the code under test."""
    if not "0101000000" <= number <= "3112999999":
        return False
    try:
        datetime.strptime(number[:6], "%d%m%y")
    except ValueError:
        return True
    return False


def reference_reason(number: str) -> Reason:
    """The reason for ten digits: Modulus 11 first, then the CHI date."""
    if reference_check(number[:9]) != int(number[9]):
        return Reason.BAD_CHECK_DIGIT
    return Reason.BAD_CHI_DATE if reference_bad_chi_date(number) else Reason.VALID


nine_digit_text = st.integers(0, 999_999_999).map(lambda n: f"{n:09d}")


@given(nine_digit_text)
def test_nine_digits_plus_check_digit(nine: str) -> None:
    check = reference_check(nine)
    if check is None:
        for last in "0123456789":
            assert parse(nine + last).reason is Reason.BAD_CHECK_DIGIT
        assert N.check_digit(int(nine)) is None
    else:
        p = parse(nine + str(check))
        if reference_bad_chi_date(nine + str(check)):
            assert p.reason is Reason.BAD_CHI_DATE and p.value is None
        else:
            assert p.ok and p.value == int(nine + str(check))
        assert N.check_digit(int(nine)) == check
        # any other last digit is wrong
        other = (check + 1) % 10
        assert parse(nine + str(other)).reason is Reason.BAD_CHECK_DIGIT


def _valid_text(nine: str) -> str | None:
    check = reference_check(nine)
    if check is None or reference_bad_chi_date(nine + str(check)):
        return None
    return nine + str(check)


valid_text = cast("st.SearchStrategy[str]", nine_digit_text.map(_valid_text).filter(lambda s: s is not None))

# Ten digits in the CHI range, built from a day, month and year that are often impossible
# (day 00-39, month 00-19, any year), half of them with the right check digit.
_chi_nine = st.builds(
    lambda dd, mm, yy, serial: f"{dd:02d}{mm:02d}{yy:02d}{serial:03d}",
    st.integers(0, 39),
    st.one_of(st.integers(0, 19), st.integers(0, 99)),
    st.one_of(st.sampled_from([0, 1, 4, 68, 69, 96, 99]), st.integers(0, 99)),
    st.integers(0, 999),
).filter(lambda nine: "010100000" <= nine <= "311299999")


def _chi_ten(nine: str, last: int | None) -> str:
    check = reference_check(nine)
    return nine + str(check if last is None and check is not None else (last or 0))


chi_range_text = st.builds(_chi_ten, _chi_nine, st.one_of(st.none(), st.integers(0, 9)))


@given(chi_range_text)
@example("2939408734")  # issue 7: 29/39/40, month 39, passes Modulus 11
@example("2902000006")  # 29/02/00: 2000 was a leap year
@example("2902010001")  # 29/02/01: not a leap year
def test_chi_range_numbers(number: str) -> None:
    expected = reference_reason(number)
    for value, chi in (
        (number, False),
        (f"{number[:3]} {number[3:6]} {number[6:]}", False),
        (int(number), True),
    ):
        p = parse(value, chi=chi)
        assert p.reason is expected
        assert p.value == (int(number) if expected is Reason.VALID else None)
    assert N.is_valid(number) is (expected is Reason.VALID)


@given(chi_range_text.filter(lambda n: reference_bad_chi_date(n)), st.integers(1, 9))
def test_modulus_11_is_reported_before_the_chi_date(number: str, delta: int) -> None:
    wrong = number[:9] + str((int(number[9]) + delta) % 10)
    if reference_check(number[:9]) == int(number[9]):
        assert parse(number).reason is Reason.BAD_CHI_DATE
        assert parse(wrong).reason is Reason.BAD_CHECK_DIGIT
    else:
        assert parse(number).reason is Reason.BAD_CHECK_DIGIT


@given(valid_text, st.integers(0, 9), st.integers(1, 9))
def test_single_digit_errors_are_detected(number: str, position: int, delta: int) -> None:
    digits = list(number)
    digits[position] = str((int(digits[position]) + delta) % 10)
    assert parse("".join(digits)).reason is Reason.BAD_CHECK_DIGIT


@given(valid_text, st.integers(0, 7))
def test_adjacent_transpositions_are_detected(number: str, position: int) -> None:
    a, b = number[position], number[position + 1]
    if a == b:
        return
    swapped = number[:position] + b + a + number[position + 2 :]
    assert parse(swapped).reason is Reason.BAD_CHECK_DIGIT


@given(valid_text, st.integers(0, 2**31))
def test_int_and_text_agree_for_valid_numbers(number: str, _salt: int) -> None:
    n = int(number)
    text_result = parse(number)
    int_result = parse(n, chi=number.startswith("0"))
    if number.startswith("00"):
        assert int_result.reason is Reason.WRONG_LENGTH  # only one lost zero is ever restored
    else:
        assert int_result == text_result


# --------------------------------------------------------------------------- the three forms agree


def _spelling(number: str, style: int, pad: str) -> str:
    if style == 0:
        s = number
    elif style == 1:
        s = f"{number[:3]} {number[3:6]} {number[6:]}"
    elif style == 2:
        s = f"{number[:3]}-{number[3:6]}-{number[6:]}"
    elif style == 3:
        s = f"{int(number) / 1e9:.9f}E+09"
    elif style == 4:
        s = f"{number}.0"
    else:
        s = number[:-1] + "." + number[-1] + "E1"
    return pad + s + pad


spelled_valid = st.builds(
    _spelling, valid_text, st.integers(0, 5), st.sampled_from(["", " ", "\t", "\xa0", "  "])
)
spelled_chi = st.builds(_spelling, chi_range_text, st.integers(0, 5), st.sampled_from(["", " "]))
text_values = st.one_of(
    spelled_valid,
    spelled_chi,
    chi_range_text.map(lambda n: n[1:]),  # lost its leading zero (restored only with chi)
    st.text(alphabet="0123456789 -.eE+\t\xa0", max_size=24),
    st.text(alphabet="0123456789", min_size=8, max_size=12),
    st.text(max_size=12),
    st.builds(lambda a, b: f"{a}.{b}", st.integers(0, 10**12), st.text("0123456789", max_size=25)),
    st.builds(lambda m, e: f"{m}E{e}", st.text("0123456789.", min_size=1, max_size=14), st.integers(-40, 40)),
    st.none(),
)
int_values = st.one_of(
    valid_text.map(int),
    chi_range_text.map(int),
    st.integers(101_000_000, 3_112_999_999),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 10**11),
    st.integers(10**8, 10**9),
    st.none(),
)
float_values = st.one_of(
    valid_text.map(float),
    chi_range_text.map(float),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e8, max_value=1e10),
    st.integers(10**8, 10**10).map(float),
    st.none(),
)

_CON = duckdb.connect()


def _three_forms(values: list[Any], arrow_type: pa.DataType, chi: bool) -> None:
    col = pa.array(values, arrow_type)
    scalar = [parse(None if v is None else col[i].as_py(), chi=chi) for i, v in enumerate(values)]
    vals, reasons = N.parse_array(col, chi=chi)
    assert [Reason(int(r)) for r in reasons] == [p.reason for p in scalar]
    assert vals.tolist() == [p.value or 0 for p in scalar]
    cur = _CON.cursor()
    cur.register("t", pa.table({"x": col}))
    sql_type = str(cur.sql("SELECT x FROM t").types[0])
    reason = N.sql_reason("x", sql_type, chi=chi)
    normalised = N.sql_normalised("x", sql_type, chi=chi)
    got = cur.sql(f"SELECT {reason} AS r, {normalised} AS n FROM t").fetchall()
    assert got == [(int(p.reason), p.value) for p in scalar]


_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("chi", [False, True])
@_settings
@given(values=st.lists(text_values, max_size=40))
@example(values=["9.434765919E-09", "9434765919.0000000001", "1E999999999", "+0101001231", "101001231"])
@example(values=["2939408734", "293 940 8734", "2.939408734E+09", "113011113", "0113011113", "2902000006"])
@example(values=["9 434765919", "-943-476-5919", "943--476  5919", "00.0E+11", ".5", "5.", "1e+0010"])
def test_text_forms_agree(values: list[str | None], chi: bool) -> None:
    _three_forms(values, pa.string(), chi)


@pytest.mark.parametrize("chi", [False, True])
@_settings
@given(values=st.lists(int_values, max_size=40))
@example(values=[2939408734, 113011113, 2902010001, 2902000006, 101011113, 3113000009])
def test_int_forms_agree(values: list[int | None], chi: bool) -> None:
    _three_forms(values, pa.int64(), chi)


@pytest.mark.parametrize("chi", [False, True])
@_settings
@given(values=st.lists(float_values, max_size=40))
@example(values=[1e19, -1e19, float("nan"), -0.0, 101001231.0, 9434765919.0, 2939408734.0, 113011113.0])
def test_float_forms_agree(values: list[float | None], chi: bool) -> None:
    _three_forms(values, pa.float64(), chi)


@given(
    st.lists(
        st.one_of(
            st.integers(-(2**63), 2**63 - 1), st.integers(100_000_000, 3_200_000_000), chi_range_text.map(int)
        ),
        max_size=200,
    ),
    st.booleans(),
)
def test_validate_int_array_matches_parse(values: list[int], chi: bool) -> None:
    codes = N.validate_int_array(np.array(values, dtype=np.int64), chi=chi)
    assert codes.tolist() == [int(parse(v, chi=chi).reason) for v in values]


@given(st.integers(0, 2**63 - 1))
def test_range_codes_match_classify_range(n: int) -> None:
    assert int(N.range_codes(np.array([n], dtype=np.int64))[0]) == N.classify_range(n)


@given(st.lists(chi_range_text, min_size=1, max_size=50))
def test_sql_check_reason_agrees(numbers: list[str]) -> None:
    """The checks after the form (the DuckDB engine's fast path) as plain SQL on a BIGINT."""
    cur = _CON.cursor()
    cur.register("t", pa.table({"x": pa.array([int(n) for n in numbers], pa.int64())}))
    got = [r for (r,) in cur.sql(f"SELECT {N.sql_check_reason('x')} FROM t").fetchall()]
    assert got == [int(reference_reason(n)) for n in numbers]


@given(valid_text)
def test_masked_repr(number: str) -> None:
    n = N.NHSNumber(number)
    assert number not in repr(n) and number[:3] not in repr(n)
    assert str(n) == number

"""NHS-number properties on arbitrary inputs (hypothesis).

- Modulus 11: any nine digits plus their computed check digit is valid, unless the remainder
  gives 10, in which case no tenth digit makes a valid number.
- Changing any single digit of a valid number makes it invalid (Modulus 11 detects every
  single-digit error), and so does swapping two different adjacent digits among the first nine.
- The three forms of the rules, scalar ``parse``, ``parse_array`` (int, float and text Arrow
  columns) and the DuckDB SQL (``sql_reason`` / ``sql_normalised``) agree on every input.
"""

from __future__ import annotations

from typing import Any

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
        assert p.ok and p.value == int(nine + str(check))
        assert N.check_digit(int(nine)) == check
        # any other last digit is wrong
        other = (check + 1) % 10
        assert parse(nine + str(other)).reason is Reason.BAD_CHECK_DIGIT


def _valid_text(nine: str) -> str | None:
    check = reference_check(nine)
    return None if check is None else nine + str(check)


valid_text = nine_digit_text.map(_valid_text).filter(lambda s: s is not None)


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
text_values = st.one_of(
    spelled_valid,
    st.text(alphabet="0123456789 -.eE+\t\xa0", max_size=24),
    st.text(alphabet="0123456789", min_size=8, max_size=12),
    st.text(max_size=12),
    st.builds(lambda a, b: f"{a}.{b}", st.integers(0, 10**12), st.text("0123456789", max_size=25)),
    st.builds(lambda m, e: f"{m}E{e}", st.text("0123456789.", min_size=1, max_size=14), st.integers(-40, 40)),
    st.none(),
)
int_values = st.one_of(
    valid_text.map(int),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 10**11),
    st.integers(10**8, 10**9),
    st.none(),
)
float_values = st.one_of(
    valid_text.map(float),
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
@example(values=["9 434765919", "-943-476-5919", "943--476  5919", "00.0E+11", ".5", "5.", "1e+0010"])
def test_text_forms_agree(values: list[str | None], chi: bool) -> None:
    _three_forms(values, pa.string(), chi)


@pytest.mark.parametrize("chi", [False, True])
@_settings
@given(values=st.lists(int_values, max_size=40))
def test_int_forms_agree(values: list[int | None], chi: bool) -> None:
    _three_forms(values, pa.int64(), chi)


@pytest.mark.parametrize("chi", [False, True])
@_settings
@given(values=st.lists(float_values, max_size=40))
@example(values=[1e19, -1e19, float("nan"), -0.0, 101001231.0, 9434765919.0])
def test_float_forms_agree(values: list[float | None], chi: bool) -> None:
    _three_forms(values, pa.float64(), chi)


@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=200), st.booleans())
def test_validate_int_array_matches_parse(values: list[int], chi: bool) -> None:
    codes = N.validate_int_array(np.array(values, dtype=np.int64), chi=chi)
    assert codes.tolist() == [int(parse(v, chi=chi).reason) for v in values]


@given(st.integers(0, 2**63 - 1))
def test_range_codes_match_classify_range(n: int) -> None:
    assert int(N.range_codes(np.array([n], dtype=np.int64))[0]) == N.classify_range(n)


@given(valid_text)
def test_masked_repr(number: str) -> None:
    n = N.NHSNumber(number)
    assert number not in repr(n) and number[:3] not in repr(n)
    assert str(n) == number

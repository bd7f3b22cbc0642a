"""NHS numbers: spellings, reasons, ranges, masking. Tables of cases; every row states the rule.

Policy 001 §8.2: the NHS number is "the single identifier" used to apply an opt-out, so a value
must be normalised the same way wherever it is read (scalar, Arrow/NumPy column, DuckDB SQL).
The three forms are compared on every row of the tables below and, on arbitrary inputs, by the
hypothesis properties in tests/generative/test_nhs_number_properties.py.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from optout import nhs_number as N
from optout.nhs_number import NHSNumber, Range, Reason, parse

VALID = 9434765919  # the NHS Data Dictionary's example number
CHI = 101001231  # 010 100 1231: a Scottish CHI number (first six digits a date), valid Mod 11
CHI_TEXT = "0101001231"

V, MISS, ND, LEN, CD, NI, BD = (
    Reason.VALID,
    Reason.MISSING,
    Reason.NOT_DIGITS,
    Reason.WRONG_LENGTH,
    Reason.BAD_CHECK_DIGIT,
    Reason.NOT_INTEGER,
    Reason.BAD_CHI_DATE,
)

# (value, chi, expected reason, expected normalised value or None, why)
SPELLINGS: list[tuple[Any, bool, Reason, int | None, str]] = [
    ("9434765919", False, V, VALID, "ten digits"),
    ("943 476 5919", False, V, VALID, "spaced 3-3-4 as printed on NHS letters"),
    ("943-476-5919", False, V, VALID, "hyphenated"),
    ("943  476  5919", False, V, VALID, "double spaces between groups"),
    ("9 4 3 4 7 6 5 9 1 9", False, V, VALID, "a space between every digit"),
    ("  9434765919  ", False, V, VALID, "surrounding spaces"),
    ("\t9434765919\r\n", False, V, VALID, "tab and CRLF around"),
    ("\xa0943 476 5919\xa0", False, V, VALID, "no-break spaces around (copied from a web page)"),
    (VALID, False, V, VALID, "int (numeric column)"),
    (np.int64(VALID), False, V, VALID, "NumPy int64"),
    (np.uint64(VALID), False, V, VALID, "NumPy uint64"),
    (float(VALID), False, V, VALID, "float that is exactly whole (numeric spreadsheet column)"),
    (np.float64(VALID), False, V, VALID, "NumPy float64, whole"),
    ("9.434765919E+09", False, V, VALID, "Excel scientific notation, exactly whole"),
    ("9.434765919e9", False, V, VALID, "lower-case e, no exponent sign"),
    ("9.4347659190E+09", False, V, VALID, "trailing zero in the mantissa"),
    ("94347659190E-1", False, V, VALID, "negative exponent that still gives a whole number"),
    ("9434765919.0", False, V, VALID, "float written as text (pandas to_csv of a float column)"),
    ("+9434765919", False, V, VALID, "explicit plus sign (spreadsheet notation)"),
    (Decimal("9434765919"), False, V, VALID, "Decimal"),
    (b"9434765919", False, V, VALID, "ASCII bytes"),
    # missing
    (None, False, MISS, None, "None"),
    ("", False, MISS, None, "empty text"),
    ("   ", False, MISS, None, "only spaces"),
    ("\xa0\t", False, MISS, None, "only whitespace"),
    (float("nan"), False, MISS, None, "NaN (pandas' missing value)"),
    # wrong length
    ("943476591", False, LEN, None, "nine digits, column not declared CHI"),
    ("94347659199", False, LEN, None, "eleven digits"),
    ("0", False, LEN, None, "one digit"),
    (943476591, False, LEN, None, "nine-digit int, column not declared CHI"),
    (0, False, LEN, None, "zero"),
    (94347659190, False, LEN, None, "eleven-digit int"),
    ("9.434765919E+10", False, LEN, None, "Excel notation, eleven digits"),
    ("1E999999999", False, LEN, None, "a huge exponent (answered without building the integer)"),
    ("0.0", False, LEN, None, "zero written as a float"),
    (1e300, False, LEN, None, "huge float"),
    # not digits
    ("94347659l9", False, ND, None, "letter l for digit 1"),
    ("943/476/5919", False, ND, None, "slashes are not a separator"),
    ("943.476.5919", False, ND, None, "dots as separators"),
    ("-9434765919", False, ND, None, "leading minus"),
    ("9434765919-", False, ND, None, "separator not between digits"),
    ("-943-476-5919", False, ND, None, "leading hyphen"),
    (-VALID, False, ND, None, "negative int"),
    (-float(VALID), False, ND, None, "negative float"),
    ("９４３４７６５９１９", False, ND, None, "full-width digits"),
    ("٩٤٣٤٧٦٥٩١٩", False, ND, None, "Arabic-Indic digits"),
    ("9434765919\x00", False, ND, None, "NUL byte"),
    (True, False, ND, None, "a boolean is not a number here"),
    (b"\xff\xfe", False, ND, None, "undecodable bytes"),
    ("NHS9434765919", False, ND, None, "prefix"),
    ("9.434765919E+09 x", False, ND, None, "trailing junk after Excel notation"),
    # not a whole number
    ("9.434765919E-09", False, NI, None, "negative exponent: a tiny fraction, never a valid number"),
    ("9.4347659195E+09", False, NI, None, "Excel notation with a fractional part"),
    ("9434765919.5", False, NI, None, "fraction as text"),
    ("9434765919.0000000001", False, NI, None, "fraction beyond double precision (decided exactly)"),
    (9434765919.5, False, NI, None, "fractional float"),
    (float("inf"), False, NI, None, "infinity"),
    (float("-inf"), False, NI, None, "minus infinity"),
    # bad check digit
    ("9434765918", False, CD, None, "last digit wrong"),
    ("9434765910", False, CD, None, "last digit wrong (0)"),
    (9434765918, False, CD, None, "int, last digit wrong"),
    ("9434765960", False, CD, None, "first nine digits give remainder 10: no number is valid"),
    # Scottish CHI numbers: leading zero restored only when the column is declared CHI
    (CHI_TEXT, False, V, CHI, "CHI as 10-digit text keeps its zero: valid without chi"),
    (CHI, False, LEN, None, "CHI that lost its zero in a numeric column: not restored without chi"),
    (CHI, True, V, CHI, "declared CHI column: 9-digit int gets its zero back"),
    (float(CHI), True, V, CHI, "declared CHI column: 9-digit float"),
    ("101001231", True, V, CHI, "declared CHI column: 9-digit text"),
    ("101001231", False, LEN, None, "9-digit text without chi"),
    ("1.01001231E+08", True, V, CHI, "declared CHI column: Excel notation of 9 digits"),
    ("1.01001231E+08", False, LEN, None, "Excel notation of 9 digits without chi"),
    (10100123, True, LEN, None, "chi restores one zero only: 8 digits stay wrong length"),
    ("10100123", True, LEN, None, "chi: 8-digit text stays wrong length"),
    (101001232, True, CD, None, "chi: restored but the check digit is wrong"),
    (VALID, True, V, VALID, "chi does not change 10-digit numbers"),
    ("943 476 5919", True, V, VALID, "chi does not change 10-digit spelled numbers"),
    # Scottish CHI numbers begin with the date of birth DDMMYY: in the CHI range (010 100 0000 -
    # 311 299 9999) a number whose first six digits are not a real date is not a CHI number, even
    # when it passes Modulus 11 (issue 7; the UK FCI nhs-number package rejects these too)
    ("2939408734", False, BD, None, "CHI range, 29/39/40: month 39"),
    ("293 940 8734", False, BD, None, "CHI range, month 39, spaced"),
    ("2.939408734E+09", False, BD, None, "CHI range, month 39, Excel notation"),
    (2939408734, False, BD, None, "CHI range, month 39, int"),
    (2939408734.0, False, BD, None, "CHI range, month 39, float"),
    ("0113011113", False, BD, None, "CHI range, month 13 (nhs-number package's test vector)"),
    ("0101011113", False, V, 101011113, "CHI 01/01/01 (nhs-number package's test vector)"),
    ("1500000000", False, BD, None, "CHI range, month 00"),
    ("2913000002", False, BD, None, "CHI range, month 13"),
    ("3002000000", False, BD, None, "30 February"),
    ("3101000009", False, V, 3101000009, "31 January"),
    ("3109990008", False, BD, None, "31 September"),
    ("3111000001", False, BD, None, "31 November"),
    ("3011000018", False, V, 3011000018, "30 November"),
    ("2802010018", False, V, 2802010018, "28 February, any year"),
    ("2902960018", False, V, 2902960018, "29/02/96: a leap year"),
    ("2902040008", False, V, 2902040008, "29/02/04: a leap year"),
    ("2902000006", False, V, 2902000006, "29/02/00: 2000 was a leap year (1900 was not; accepted)"),
    ("2902010001", False, BD, None, "29/02/01: neither 1901 nor 2001 was a leap year"),
    ("2902990006", False, BD, None, "29/02/99: not a leap year"),
    ("0101000006", False, V, 101000006, "01/01/00: the first date of the CHI range"),
    ("3112999991", False, V, 3112999991, "31/12/99: the last number of the CHI range"),
    ("3113000009", False, V, 3113000009, "31/13/00: beyond the CHI range, no date to check"),
    ("0100999999", False, V, 100999999, "01/00/99: below the CHI range, no date to check"),
    ("3312990009", False, V, 3312990009, "Northern Ireland range: its digits are not a date"),
    ("2939408735", False, CD, None, "bad date and bad check digit: Modulus 11 is reported first"),
    ("2902010002", False, CD, None, "29/02/01 and bad check digit: Modulus 11 is reported first"),
    (113011113, True, BD, None, "declared CHI column: zero restored, then month 13"),
    ("113011113", True, BD, None, "declared CHI column: 9-digit text, month 13"),
    ("1.13011113E+08", True, BD, None, "declared CHI column: Excel notation, month 13"),
    (113011113, False, LEN, None, "CHI with month 13 that lost its zero, not declared: length first"),
    (101011113, True, V, 101011113, "declared CHI column: 01/01/01"),
]


def _id(case: tuple[Any, bool, Reason, int | None, str]) -> str:
    return f"{case[4]}{' [chi]' if case[1] else ''}"


@pytest.mark.parametrize("case", SPELLINGS, ids=_id)
def test_parse_spellings(case: tuple[Any, bool, Reason, int | None, str]) -> None:
    value, chi, reason, normalised, _why = case
    p = parse(value, chi=chi)
    assert p.reason is reason
    assert p.value == normalised
    assert p.ok is (reason is Reason.VALID)
    assert N.is_valid(value, chi=chi) is p.ok


def _sql_eval(array: pa.Array, chi: bool) -> list[tuple[int, int | None]]:
    con = duckdb.connect()
    con.register("t", pa.table({"x": array}))
    sql_type = con.sql("SELECT x FROM t").types[0]
    reason = N.sql_reason("x", str(sql_type), chi=chi)
    norm = N.sql_normalised("x", str(sql_type), chi=chi)
    return [tuple(r) for r in con.sql(f"SELECT {reason}, {norm} FROM t").fetchall()]


def _column_of(value: Any) -> pa.Array | None:
    """The Arrow column a reader would produce for this value, or None if no column type fits."""
    if value is None:
        return pa.array([None], pa.string())
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, np.integer)):
        v = int(value)
        return pa.array([v], pa.uint64() if isinstance(value, np.unsignedinteger) else pa.int64())
    if isinstance(value, (float, np.floating)):
        return pa.array([float(value)], pa.float64())
    if isinstance(value, bytes):
        return None
    return pa.array([str(value)], pa.string())


@pytest.mark.parametrize("case", [c for c in SPELLINGS if _column_of(c[0]) is not None], ids=_id)
def test_column_and_sql_forms_agree_with_parse(case: tuple[Any, bool, Reason, int | None, str]) -> None:
    value, chi, reason, normalised, _why = case
    col = _column_of(value)
    assert col is not None
    vals, reasons = N.parse_array(col, chi=chi)
    assert reasons.dtype == np.uint8 and vals.dtype == np.int64
    assert Reason(int(reasons[0])) is reason
    assert int(vals[0]) == (normalised or 0)
    assert _sql_eval(col, chi) == [(int(reason), normalised)]


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (101_000_000, Range.SCOTLAND_CHI),  # 010 100 0000: first CHI number
        (100_999_999, Range.UNALLOCATED),
        (3_112_999_999, Range.SCOTLAND_CHI),  # 311 299 9999: last CHI number
        (3_113_000_000, Range.UNALLOCATED),
        (3_199_999_999, Range.UNALLOCATED),
        (3_200_000_000, Range.NORTHERN_IRELAND),
        (3_999_999_999, Range.NORTHERN_IRELAND),
        (4_000_000_000, Range.ENGLAND_WALES_IOM),
        (4_999_999_999, Range.ENGLAND_WALES_IOM),
        (5_000_000_000, Range.UNALLOCATED),
        (5_999_999_999, Range.UNALLOCATED),
        (6_000_000_000, Range.ENGLAND_WALES_IOM),
        (7_999_999_999, Range.ENGLAND_WALES_IOM),
        (8_000_000_000, Range.UNALLOCATED),
        (8_999_999_999, Range.UNALLOCATED),
        (9_000_000_000, Range.TEST),  # 9xx: never issued to patients
        (VALID, Range.TEST),
        (9_999_999_999, Range.TEST),
        (0, Range.UNALLOCATED),
    ],
)
def test_ranges(n: int, expected: Range) -> None:
    assert N.classify_range(n) is expected
    assert Range(int(N.range_codes(np.array([n]))[0])) is expected


def test_range_labels() -> None:
    assert Range.ENGLAND_WALES_IOM.label == "england-wales-iom"
    assert Range.SCOTLAND_CHI.label == "scotland-chi"
    assert NHSNumber(CHI, chi=True).range is Range.SCOTLAND_CHI
    assert NHSNumber("4010232137").range is Range.ENGLAND_WALES_IOM


def test_reason_codes_are_stable() -> None:
    """Codes are stored in reports: they must never be renumbered."""
    assert {r.name: int(r) for r in Reason} == {
        "VALID": 0,
        "MISSING": 1,
        "NOT_DIGITS": 2,
        "WRONG_LENGTH": 3,
        "BAD_CHECK_DIGIT": 4,
        "NOT_INTEGER": 5,
        "BAD_CHI_DATE": 6,
    }
    assert len({r.label for r in Reason}) == len(Reason)
    assert Reason.BAD_CHI_DATE.label == "bad CHI date"


def test_masked_repr_never_shows_the_number() -> None:
    n = NHSNumber("943 476 5919")
    for text in (repr(n), f"{n!r}", repr([n]), repr({"k": n}), repr(N.Parsed(None, Reason.MISSING))):
        assert "9434765919" not in text
        assert "943" not in text
    assert str(n) == "9434765919"
    assert n.value == VALID
    assert n == NHSNumber(VALID) and hash(n) == hash(NHSNumber(VALID))
    assert n != VALID  # never equal to a bare int: compare .value explicitly


def test_invalid_number_error_names_the_class_not_the_value() -> None:
    with pytest.raises(ValueError) as exc:
        NHSNumber("9434765918")
    assert "bad check digit" in str(exc.value)
    assert "9434765918" not in str(exc.value)


def test_bad_chi_date_error_names_the_class_not_the_value() -> None:
    with pytest.raises(ValueError) as exc:
        NHSNumber("2939408734")
    assert "bad CHI date" in str(exc.value)
    assert "2939408734" not in str(exc.value) and "293" not in str(exc.value)
    assert not N.is_valid("293 940 8734")


def _real_date(ddmmyy: int) -> bool:
    """The CHI definition, as the nhs-number package reads it: strptime's %y (00-68 -> 20YY,
    69-99 -> 19YY), so 29 February is a real date exactly when YY is divisible by 4."""
    try:
        datetime.strptime(f"{ddmmyy:06d}", "%d%m%y")
    except ValueError:
        return False
    return True


def test_chi_dates_every_day_month_and_year() -> None:
    """Every DD 00-32, MM 00-13, YY 00-99 in the CHI range, in all three forms, against strptime.

    Each date gets a serial number whose Modulus 11 check digit exists, so only the date decides.
    """
    numbers, expected = [], []
    for dd in range(33):
        for mm in range(14):
            for yy in range(100):
                six = dd * 10_000 + mm * 100 + yy
                for serial in (0, 1):  # of two neighbours at most one has no check digit
                    nine = six * 1000 + serial
                    check = N.check_digit(nine)
                    if check is not None:
                        break
                assert check is not None
                n = nine * 10 + check
                if N.classify_range(n) is not Range.SCOTLAND_CHI:
                    continue
                numbers.append(n)
                expected.append(V if _real_date(six) else BD)
    assert len(numbers) == 43_200 and expected.count(V) == 36_525  # 365.25 days x 100 years
    # as integers a number below 10**9 has lost its leading zero: a declared CHI column
    assert [parse(n, chi=True).reason for n in numbers] == expected
    assert [parse(N.format_number(n)).reason for n in numbers] == expected
    want = np.array([int(r) for r in expected], dtype=np.uint8)
    x = np.array(numbers, dtype=np.int64)
    assert np.array_equal(N.validate_int_array(x, chi=True), want)
    vals, reasons = N.parse_array(pa.array([N.format_number(n) for n in numbers]))
    assert np.array_equal(reasons, want) and np.array_equal(vals, np.where(want == 0, x, 0))
    for col in (pa.array(numbers, pa.int64()), pa.array([N.format_number(n) for n in numbers])):
        con = duckdb.connect()
        con.register("t", pa.table({"x": col}))
        sql_type = str(con.sql("SELECT x FROM t").types[0])
        got = con.sql(f"SELECT {N.sql_reason('x', sql_type, chi=True)} FROM t").fetchnumpy()
        assert np.array_equal(next(iter(got.values())), want)
    # the checks after the form, as the DuckDB engine's fast path uses them on a BIGINT
    con = duckdb.connect()
    con.register("t", pa.table({"x": x}))
    got = con.sql(f"SELECT {N.sql_check_reason('x')} AS r FROM t").fetchnumpy()["r"]
    assert np.array_equal(got, want)


def test_sql_check_reason_matches_parse() -> None:
    """``sql_check_reason``: Modulus 11 first, then the CHI date; other ranges are not dated."""
    rng = np.random.default_rng(4)
    x = np.concatenate(
        [
            rng.integers(0, 10**10, 20_000),
            rng.integers(100_000_000, 3_200_000_000, 20_000),
            N.synthetic(2000, seed=2, low=10_100_000, high=311_299_999),
        ]
    )
    con = duckdb.connect()
    con.register("t", pa.table({"x": x}))
    got = con.sql(f"SELECT {N.sql_check_reason('x')} AS r FROM t").fetchnumpy()["r"]
    assert got.tolist() == [int(parse(N.format_number(int(n))).reason) for n in x]
    assert set(got.tolist()) == {0, int(CD), int(BD)}


def test_format_number_keeps_chi_leading_zero() -> None:
    assert N.format_number(CHI) == CHI_TEXT
    assert N.format_number(VALID, spaced=True) == "943 476 5919"
    assert N.format_number(CHI, spaced=True) == "010 100 1231"
    assert parse(N.format_number(CHI, spaced=True)).value == CHI


def test_check_digit() -> None:
    assert N.check_digit(943476591) == 9
    assert N.check_digit(943476596) is None  # remainder 10: no valid number
    assert N.check_digit(900000000) == 9
    assert N.check_digit(0) == 0  # 11 - 0 = 11 -> 0


def test_validate_int_array_matches_parse_across_chunks() -> None:
    """Longer than one internal chunk, so chunk boundaries are crossed."""
    rng = np.random.default_rng(1)
    good = N.synthetic(70_000, seed=3)
    noise = rng.integers(-(10**11), 10**11, size=70_000)
    chi_range = rng.integers(100_000_000, 3_200_000_000, size=70_000)  # many impossible dates
    x = np.concatenate([good, noise, chi_range, good + 1, np.array([CHI, 0, -1, 2939408734, 113011113])])
    rng.shuffle(x)
    for chi in (False, True):
        codes = N.validate_int_array(x, chi=chi)
        assert codes.dtype == np.uint8 and codes.shape == x.shape
        sample = rng.choice(x.shape[0], 3000, replace=False)
        for i in sample:
            assert codes[i] == parse(int(x[i]), chi=chi).reason
        assert (codes[np.isin(x, good)] == 0).all()


@pytest.mark.parametrize(
    "arrow_type",
    [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint32(), pa.uint64(), pa.float32(), pa.float64()],
)
def test_parse_array_numeric_types(arrow_type: pa.DataType) -> None:
    values = [VALID, CHI, 0, 7, None, 4010232137, 4010232138]
    if pa.types.is_unsigned_integer(arrow_type) or pa.types.is_integer(arrow_type):
        info = np.iinfo(arrow_type.to_pandas_dtype())
        values = [v for v in values if v is None or info.min <= v <= info.max]
        values.append(int(info.max))
        if info.min < 0:
            values.append(int(info.min))
    if arrow_type == pa.float32():
        values = [None, 0, 7, 0.5, float("nan")]  # float32 cannot hold 10-digit numbers exactly
    col = pa.array(values, arrow_type)
    for chi in (False, True):
        vals, reasons = N.parse_array(col, chi=chi)
        expected = [parse(v if v is None else col[i].as_py(), chi=chi) for i, v in enumerate(values)]
        assert [Reason(int(r)) for r in reasons] == [p.reason for p in expected]
        assert vals.tolist() == [p.value or 0 for p in expected]
        assert _sql_eval(col, chi) == [(int(p.reason), p.value) for p in expected]


def test_parse_array_other_containers() -> None:
    texts = ["943 476 5919", None, "x", "9.434765919E+09", "9434765918"]
    expected = [(p.value or 0, int(p.reason)) for p in map(parse, texts)]

    def pairs(result: tuple[np.ndarray, np.ndarray]) -> list[tuple[int, int]]:
        return list(zip(result[0].tolist(), result[1].tolist(), strict=True))

    assert pairs(N.parse_array(texts)) == expected  # plain Python list
    assert pairs(N.parse_array(pa.array(texts, pa.large_string()))) == expected
    assert pairs(N.parse_array(pa.array(texts).dictionary_encode())) == expected
    chunked = pa.chunked_array([pa.array(texts[:2], pa.string()), pa.array(texts[2:], pa.string())])
    assert pairs(N.parse_array(chunked)) == expected
    assert pairs(N.parse_array(np.array([VALID, 5], dtype=np.int64))) == [(VALID, 0), (0, int(LEN))]
    big = np.array([2**64 - 1, VALID], dtype=np.uint64)  # must not wrap round to a negative number
    assert pairs(N.parse_array(big)) == [(0, int(LEN)), (VALID, 0)]
    empty_vals, empty_reasons = N.parse_array(pa.array([], pa.string()))
    assert empty_vals.shape == (0,) and empty_reasons.shape == (0,)


def test_huge_floats_do_not_wrap() -> None:
    col = pa.array([1e19, -1e19, 1e300, -1e300, float(VALID)], pa.float64())
    _vals, reasons = N.parse_array(col)
    assert [Reason(int(r)) for r in reasons] == [LEN, ND, LEN, ND, V]
    assert [Reason(int(r)) for r, _ in _sql_eval(col, False)] == [LEN, ND, LEN, ND, V]


def test_sql_decimal_column() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM "
        "(VALUES (9434765919.000::DECIMAL(18,3)), (9434765919.500), (NULL)) v(x)"
    )
    got = con.sql(
        f"SELECT {N.sql_reason('x', 'DECIMAL(18,3)')}, {N.sql_normalised('x', 'DECIMAL(18,3)')} FROM t"
    ).fetchall()
    assert got == [(0, VALID), (int(NI), None), (int(MISS), None)]


class TestSynthetic:
    def test_valid_distinct_test_range(self) -> None:
        x = N.synthetic(50_000, seed=7)
        assert x.dtype == np.int64 and x.shape == (50_000,)
        assert np.unique(x).shape == x.shape
        assert (N.validate_int_array(x) == 0).all()
        assert (N.range_codes(x) == Range.TEST).all()

    def test_deterministic_per_seed(self) -> None:
        assert np.array_equal(N.synthetic(1000, seed=1), N.synthetic(1000, seed=1))
        assert not np.array_equal(N.synthetic(1000, seed=1), N.synthetic(1000, seed=2))

    def test_other_ranges_and_limits(self) -> None:
        x = N.synthetic(100, seed=0, low=400_000_000, high=499_999_999)
        assert (N.range_codes(x) == Range.ENGLAND_WALES_IOM).all()
        # CHI numbers: only real dates (most DDMMYY in the range are not dates)
        chi = N.synthetic(3000, seed=0, low=10_100_000, high=311_299_999)
        assert (N.range_codes(chi) == Range.SCOTLAND_CHI).all()
        assert all(_real_date(int(n) // 10_000) for n in chi)
        assert (N.validate_int_array(chi, chi=True) == 0).all()
        with pytest.raises(ValueError):
            N.synthetic(1000, low=1, high=100)
        assert N.synthetic(0).shape == (0,)


def test_nan_is_missing_not_invalid() -> None:
    assert parse(math.nan).reason is MISS
    assert parse(np.float32("nan")).reason is MISS


def test_sorted_unique_matches_numpy_unique() -> None:
    rng = np.random.default_rng(2)
    for x in (np.array([], dtype=np.int64), np.array([5]), rng.integers(0, 50, 1000), N.synthetic(500)):
        assert np.array_equal(N.sorted_unique(x), np.unique(x))

"""NHS numbers: normalise real-world spellings, validate (Modulus 11), classify the issuing range.

Policy 001 §8.2: "the NHS number is used as the single identifier to register and to apply an
individual's national data opt-out". Everything in this package keys on the normalised NHS number
held as a 64-bit integer (10 digits fit; Scottish CHI numbers keep their leading zero when shown
as text with ``format_number``).

Three forms of the same rules, kept in step by tests (tests/unit/test_nhs_number.py and the
hypothesis properties in tests/generative/):

- scalar: ``parse(value, chi=False) -> Parsed`` for single values and error messages;
- vectorised NumPy/Arrow: ``validate_int_array`` / ``parse_array`` for whole columns;
- SQL (DuckDB): ``sql_normalised`` / ``sql_reason`` for the release engine (and
  ``sql_check_reason``, the checks after the form, for its fast path).

The checks, in order (the first that fails is the reason): missing; not digits; not a whole
number; wrong length (10 digits, or 9 restored to 10 with ``chi=True``); Modulus 11 (bad check
digit); then, for numbers in the Scottish CHI range only, the date of birth (bad CHI date).

CHI dates. A CHI number (010 100 0000 - 311 299 9999) begins with the holder's date of birth
DDMMYY, so one whose first six digits are not a real date was never issued ("bad CHI date"), even
when it passes Modulus 11. A real date: MM 01-12 and DD 01 up to the days of that month; 29/02
whenever YY is divisible by 4. The year has two digits and no century, and a false rejection
would withhold a real person's record, so 29/02/00 is accepted although 1900 (unlike 2000) was
not a leap year. The UK FCI ``nhs-number`` package reads the date with ``strptime("%d%m%y")``
(00-68 -> 20YY, 69-99 -> 19YY), which accepts exactly the same dates. Modulus 11 is checked
before the date: a number that fails both is "bad check digit" (its digits are corrupt, so the
date they spell means nothing), and every single-digit error or adjacent transposition is still
reported as "bad check digit". Numbers outside the CHI range (9xx test numbers, England, Northern
Ireland, and the unallocated 010 000 0000 - 010 099 9999) have no date to check.

Nothing here logs or prints a number. ``NHSNumber.__repr__`` masks the value so that a number
cannot leak into a traceback or log line by accident.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = [
    "NHSNumber",
    "Parsed",
    "Range",
    "Reason",
    "check_digit",
    "classify_range",
    "format_number",
    "is_valid",
    "parse",
    "parse_array",
    "range_codes",
    "sorted_unique",
    "sql_check",
    "sql_check_reason",
    "sql_normalised",
    "sql_reason",
    "synthetic",
    "validate_int_array",
]

_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_LOW = 1_000_000_000  # smallest 10-digit integer
_HIGH = 10_000_000_000
_CHI_LOW = 100_000_000  # a 9-digit integer: a CHI number that lost its leading zero
_CHI_FIRST = 101_000_000  # 010 100 0000: the Scottish CHI range (first six digits DDMMYY)
_CHI_LAST = 3_112_999_999  # 311 299 9999
# Days in month MM (1-12; index 0 is no month): February 29, which is a date only when YY is
# divisible by 4 (see the module docstring).
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Whitespace trimmed from both ends of a text value: ASCII whitespace and the no-break space that
# spreadsheets and web pages leave behind. The same set in Python, Arrow and SQL (so they agree).
_WS = " \t\n\r\x0b\x0c\xa0"
# Digits, optionally grouped by spaces or hyphens *between* digits: 943 476 5919, 943-476-5919.
_SPACED = re.compile(r"[0-9]+(?:[ \-]+[0-9]+)*")
# A number as a spreadsheet writes it: 9434765919.0, 9.434765919E+09 (exponent sign kept, so that
# 9.434765919E-09 is read as the tiny fraction it is, not as a valid NHS number).
_EXCEL_RE = r"[+]?([0-9]+)(\.([0-9]+))?([eE]([+\-]?[0-9]+))?"
_EXCEL = re.compile(_EXCEL_RE)


class Reason(enum.IntEnum):
    """Why a value is not a usable NHS number. Codes are stable (stored in reports).

    ``BAD_CHI_DATE``: in the Scottish CHI range, passes Modulus 11, but its first six digits are
    not a real date of birth DDMMYY.
    """

    VALID = 0
    MISSING = 1
    NOT_DIGITS = 2
    WRONG_LENGTH = 3
    BAD_CHECK_DIGIT = 4
    NOT_INTEGER = 5
    BAD_CHI_DATE = 6

    @property
    def label(self) -> str:
        return _REASON_LABELS[self]


_REASON_LABELS = {
    Reason.VALID: "valid",
    Reason.MISSING: "missing",
    Reason.NOT_DIGITS: "not digits",
    Reason.WRONG_LENGTH: "wrong length",
    Reason.BAD_CHECK_DIGIT: "bad check digit",
    Reason.NOT_INTEGER: "not a whole number",
    Reason.BAD_CHI_DATE: "bad CHI date",
}


class Range(enum.IntEnum):
    """Which registry issued a (valid) number, from its first digits (ARCHITECTURE.md facts)."""

    ENGLAND_WALES_IOM = 1  # 400 000 0000-499 999 9999 and 600 000 0000-799 999 9999
    SCOTLAND_CHI = 2  # 010 100 0000-311 299 9999
    NORTHERN_IRELAND = 3  # 320 000 0000-399 999 9999
    TEST = 4  # 9xx: never issued to patients, used for test data
    UNALLOCATED = 5  # anything else (000..., 312-319, 5xx, 8xx)

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


def check_digit(first_nine: int) -> int | None:
    """The Modulus 11 check digit for the first nine digits, or None when it would be 10."""
    total = 0
    q = first_nine
    for w in range(2, 11):
        q, d = divmod(q, 10)
        total += d * w
    c = 11 - total % 11
    if c == 11:
        return 0
    if c == 10:
        return None
    return c


def _chi_date_ok(n: int) -> bool:
    """A number in the CHI range: are its first six digits a real date DDMMYY?"""
    dd, rest = divmod(n, 100_000_000)
    mm, rest = divmod(rest, 1_000_000)
    yy = rest // 10_000
    if not 1 <= mm <= 12 or not 1 <= dd <= _MONTH_DAYS[mm]:
        return False
    return not (mm == 2 and dd == 29 and yy % 4 != 0)


def _checked(n: int) -> Parsed:
    """A number of the right form (0 <= n < 10**10): Modulus 11, then the CHI date."""
    q, last = divmod(n, 10)
    if check_digit(q) != last:
        return Parsed(None, Reason.BAD_CHECK_DIGIT)
    if _CHI_FIRST <= n <= _CHI_LAST and not _chi_date_ok(n):
        return Parsed(None, Reason.BAD_CHI_DATE)
    return Parsed(n, Reason.VALID)


@dataclass(frozen=True, slots=True)
class Parsed:
    value: int | None  # the normalised number when valid, else None
    reason: Reason

    @property
    def ok(self) -> bool:
        return self.reason is Reason.VALID


def _parse_digits(text: str, chi: bool) -> Parsed:
    if not text.isascii() or not text.isdigit():
        return Parsed(None, Reason.NOT_DIGITS)
    if chi and len(text) == 9:
        text = "0" + text
    if len(text) != 10:
        return Parsed(None, Reason.WRONG_LENGTH)
    return _checked(int(text))


def _parse_int(n: int, chi: bool) -> Parsed:
    if n < 0:
        return Parsed(None, Reason.NOT_DIGITS)
    if not (_CHI_LOW if chi else _LOW) <= n < _HIGH:
        return Parsed(None, Reason.WRONG_LENGTH)
    return _checked(n)


def parse(value: Any, *, chi: bool = False) -> Parsed:
    """Normalise and validate one value as found in a real extract.

    Accepted spellings: ``9434765919``, ``943 476 5919``, ``943-476-5919``, surrounding spaces,
    integers, floats that are exactly whole (a numeric spreadsheet column), Excel's scientific
    notation ``9.434765919E+09`` when it is exactly a whole number. With ``chi=True`` (the column
    is declared to hold Scottish CHI numbers) a 9-digit value gets its leading zero back. A number
    in the CHI range must also begin with a real date (``Reason.BAD_CHI_DATE``; module docstring).
    """
    if value is None:
        return Parsed(None, Reason.MISSING)
    if isinstance(value, bool):
        return Parsed(None, Reason.NOT_DIGITS)
    if isinstance(value, (int, np.integer)):
        return _parse_int(int(value), chi)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        if math.isnan(f):
            return Parsed(None, Reason.MISSING)
        if math.isinf(f) or not f.is_integer():
            return Parsed(None, Reason.NOT_INTEGER)
        return _parse_int(int(f), chi)
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return Parsed(None, Reason.NOT_DIGITS)
    text = str(value).strip(_WS)
    if not text:
        return Parsed(None, Reason.MISSING)
    if _SPACED.fullmatch(text):
        return _parse_digits(text.replace(" ", "").replace("-", ""), chi)
    if _EXCEL.fullmatch(text):
        try:
            d = Decimal(text)
        except InvalidOperation:  # pragma: no cover - regex guards this
            return Parsed(None, Reason.NOT_DIGITS)
        if d != d.to_integral_value():
            return Parsed(None, Reason.NOT_INTEGER)
        # compare before int(): "1E999999999" must not build a billion-digit integer
        if not (_CHI_LOW if chi else _LOW) <= d < _HIGH:
            return Parsed(None, Reason.WRONG_LENGTH)
        return _parse_int(int(d), chi)
    return Parsed(None, Reason.NOT_DIGITS)


def is_valid(value: Any, *, chi: bool = False) -> bool:
    return parse(value, chi=chi).ok


def format_number(n: int, *, spaced: bool = False) -> str:
    """The 10-digit text form (CHI numbers keep their leading zero)."""
    s = f"{n:010d}"
    return f"{s[:3]} {s[3:6]} {s[6:]}" if spaced else s


def classify_range(n: int) -> Range:
    prefix = n // 10_000_000  # first three digits
    if _CHI_FIRST <= n <= _CHI_LAST:
        return Range.SCOTLAND_CHI
    if 320 <= prefix <= 399:
        return Range.NORTHERN_IRELAND
    if 400 <= prefix <= 499 or 600 <= prefix <= 799:
        return Range.ENGLAND_WALES_IOM
    if prefix >= 900:
        return Range.TEST
    return Range.UNALLOCATED


class NHSNumber:
    """A validated NHS number. Its repr is masked so it never leaks into logs or tracebacks."""

    __slots__ = ("_n",)

    def __init__(self, value: Any, *, chi: bool = False) -> None:
        p = parse(value, chi=chi)
        if p.value is None:
            raise ValueError(f"not a valid NHS number ({p.reason.label})")
        self._n = p.value

    @property
    def value(self) -> int:
        return self._n

    @property
    def range(self) -> Range:
        return classify_range(self._n)

    def __str__(self) -> str:
        return format_number(self._n)

    def __repr__(self) -> str:
        return "NHSNumber(***masked***)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NHSNumber) and other._n == self._n

    def __hash__(self) -> int:
        return hash(self._n)


# --------------------------------------------------------------------------- vectorised (NumPy)

_CHUNK = 1 << 16  # keep the working set in cache


def _checksum_ok(x: np.ndarray) -> np.ndarray:
    q = x // 10
    cd = x - q * 10
    s = np.zeros(x.shape, dtype=np.int64)
    for w in range(2, 11):
        nq = q // 10
        s += (q - nq * 10) * w
        q = nq
    c = 11 - s % 11
    c[c == 11] = 0
    return c == cd


_MONTH_DAYS_NP = np.zeros(100, dtype=np.int64)
_MONTH_DAYS_NP[: len(_MONTH_DAYS)] = _MONTH_DAYS


def _bad_chi_dates(x: np.ndarray) -> np.ndarray:
    """Mask: in the CHI range and the first six digits are not a real date DDMMYY.

    The date is worked out only for the values in the range, and a chunk whose smallest value is
    above it (English and test numbers) costs one pass of ``min``."""
    out = np.zeros(x.shape, dtype=bool)
    if x.size == 0 or x.min() > _CHI_LAST:
        return out
    in_range = (x - _CHI_FIRST).view(np.uint64) <= _CHI_LAST - _CHI_FIRST  # negatives wrap: out
    if not in_range.any():
        return out
    idx = np.flatnonzero(in_range)
    v = x[idx] // 10_000  # DDMMYY
    dd = v // 10_000
    mm = (v // 100) % 100
    ok = (dd >= 1) & (dd <= _MONTH_DAYS_NP[mm]) & ~((mm == 2) & (dd == 29) & (v % 4 != 0))
    out[idx] = ~ok
    return out


def _reason_chunk(x: np.ndarray, chi: bool, lens: np.ndarray | None = None) -> np.ndarray:
    out = np.zeros(x.shape, dtype=np.uint8)
    if lens is not None:  # text: the length is the number of digits written
        in_len = (lens == 10) | ((lens == 9) if chi else False)
        neg = np.zeros(x.shape, dtype=bool)
    else:
        neg = x < 0
        in_len = (x >= _LOW) & (x < _HIGH)
        if chi:
            in_len |= (x >= _CHI_LOW) & (x < _LOW)
    # later assignments win: the earlier check in ``parse`` order is written last
    out[_bad_chi_dates(x)] = Reason.BAD_CHI_DATE
    out[~_checksum_ok(x)] = Reason.BAD_CHECK_DIGIT
    out[~in_len] = Reason.WRONG_LENGTH
    out[neg] = Reason.NOT_DIGITS
    return out


def _reasons(x: np.ndarray, chi: bool, lens: np.ndarray | None = None) -> np.ndarray:
    """``_reason_chunk`` over cache-sized chunks (whole-array temporaries are ~4x slower)."""
    out = np.empty(x.shape, dtype=np.uint8)
    for start in range(0, x.shape[0], _CHUNK):
        part = slice(start, start + _CHUNK)
        out[part] = _reason_chunk(x[part], chi, None if lens is None else lens[part])
    return out


def validate_int_array(values: np.ndarray, *, chi: bool = False) -> np.ndarray:
    """Reason codes (uint8, 0 = valid) for an integer array. ~tens of millions of values/s/core."""
    return _reasons(np.asarray(values, dtype=np.int64), chi)


def _np(array: pa.Array) -> np.ndarray:
    """An Arrow array of booleans or fixed-width numbers as NumPy (nulls as False or 0), read from
    its buffers.

    PyArrow's own conversions (``to_numpy``, ``fill_null``, ``pa.array``) import pandas whenever
    pandas is installed (about 0.3 s, once per process), for nothing these arrays need."""
    n, offset = len(array), array.offset
    validity, data = array.buffers()[:2]

    def bits(buf: Any) -> np.ndarray:
        return np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")[offset : offset + n]

    if pa.types.is_boolean(array.type):
        out = bits(data).astype(bool) if n and data is not None else np.zeros(n, dtype=bool)
    else:
        dtype = _NP_TYPES.get(str(array.type))
        if dtype is None or data is None:  # pragma: no cover - types the callers never pass
            return np.asarray(array.to_numpy(zero_copy_only=False))
        out = np.frombuffer(data, dtype=dtype)[offset : offset + n]
    if array.null_count and validity is not None:
        out = np.where(bits(validity).astype(bool), out, out.dtype.type(0))
    return out


def _pa(x: np.ndarray) -> pa.Array:
    """A NumPy bool mask or int64 index array as Arrow, from its buffer (``pa.array`` imports
    pandas when it is installed)."""
    if x.dtype == bool:
        bits = np.packbits(x, bitorder="little")
        return pa.BooleanArray.from_buffers(pa.bool_(), x.size, [None, pa.py_buffer(bits)])
    ints = np.ascontiguousarray(x, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), ints.size, [None, pa.py_buffer(ints)])


_NP_TYPES = {
    **{f"int{b}": np.dtype(f"int{b}") for b in (8, 16, 32, 64)},
    **{f"uint{b}": np.dtype(f"uint{b}") for b in (8, 16, 32, 64)},
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
}


def parse_array(
    array: pa.Array | pa.ChunkedArray | np.ndarray | Iterable[Any], *, chi: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise and validate a whole column.

    Returns ``(values, reasons)``: int64 normalised numbers (0 where invalid) and uint8 reason
    codes (``Reason``). Integer columns are validated fully vectorised; string columns are
    cleaned with Arrow compute and only the rare odd spellings (Excel notation) go through the
    scalar parser, so both paths give exactly the answers of ``parse``.
    """
    if isinstance(array, np.ndarray) and array.dtype.kind in "iu":
        vals = _as_int64(array)
        reasons = validate_int_array(vals, chi=chi)
        return np.where(reasons == 0, vals, 0), reasons
    if not isinstance(array, (pa.Array, pa.ChunkedArray)):
        array = pa.array(list(array) if not isinstance(array, np.ndarray) else array)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    t = array.type
    n = len(array)
    if pa.types.is_integer(t):
        nulls = _np(array.is_null())
        vals = _as_int64(_np(array))
        reasons = validate_int_array(vals, chi=chi)
        reasons[nulls] = Reason.MISSING
        return np.where(reasons == 0, vals, 0), reasons
    if pa.types.is_floating(t):
        f = _np(array.cast(pa.float64())) if array.null_count == 0 else _floats(array)
        nan = np.isnan(f)
        whole = np.isfinite(f) & (np.floor(f) == f)
        small = whole & (np.abs(f) < 1e18)  # beyond int64: out of range either way
        safe = np.where(small, f, 0).astype(np.int64)
        reasons = validate_int_array(safe, chi=chi)
        reasons[whole & ~small] = Reason.WRONG_LENGTH
        reasons[whole & ~small & (f < 0)] = Reason.NOT_DIGITS
        reasons[~whole] = Reason.NOT_INTEGER
        reasons[nan] = Reason.MISSING
        return np.where(reasons == 0, safe, 0), reasons
    if pa.types.is_dictionary(t):
        array = array.cast(t.value_type)
        t = array.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        array = array.cast(pa.string())
    import pyarrow.compute as pc  # text only: its import (0.035 s) is not on every command's path

    if n and array.null_count == 0:
        # the usual column: every value is already 9-10 plain ASCII digits, nothing to clean
        blen = _np(pc.binary_length(array))
        if ((blen == 10) | (blen == 9)).all() and pc.all(pc.ascii_is_decimal(array)).as_py():
            ints = _np(array.cast(pa.int64()))
            reasons = _reasons(ints, chi, blen)
            return np.where(reasons == 0, ints, 0), reasons
    trimmed = pc.utf8_trim(array, characters=_WS)
    spaced = pc.match_substring_regex(trimmed, "^" + _SPACED.pattern + "$")  # null: no match (_np)
    compact = pc.replace_substring_regex(trimmed, r"[ \-]", "")
    ten = pc.match_substring_regex(compact, r"^[0-9]{9,10}$")
    plain = _np(pc.and_(spaced, ten))
    empty = _np(pc.utf8_length(trimmed)) == 0  # a null's length reads as 0 (_np): missing too
    vals = np.zeros(n, dtype=np.int64)
    reasons = np.full(n, Reason.NOT_DIGITS, dtype=np.uint8)
    if plain.any():
        digits = pc.filter(compact, _pa(plain))
        lens = _np(pc.utf8_length(digits))
        ints = _np(digits.cast(pa.int64()))
        r = _reasons(ints, chi, lens)
        vals[plain] = np.where(r == 0, ints, 0)
        reasons[plain] = r
    reasons[empty] = Reason.MISSING
    odd = ~plain & ~empty
    if odd.any():
        idx = np.flatnonzero(odd)
        originals = array.take(_pa(idx)).to_pylist()
        for i, v in zip(idx, originals, strict=True):
            p = parse(v, chi=chi)
            reasons[i] = p.reason
            vals[i] = p.value or 0
    return vals, reasons


def _floats(array: pa.Array) -> np.ndarray:
    """A float column with nulls as NumPy float64, nulls as NaN (as PyArrow converts them)."""
    return np.where(_np(array.is_null()), np.nan, _np(array.cast(pa.float64())))


def _as_int64(x: np.ndarray) -> np.ndarray:
    """int64 view of an integer array; unsigned values beyond int64 become "too long" (not negative)."""
    if x.dtype.kind == "u" and x.dtype.itemsize >= 8:
        x = np.minimum(x, np.uint64(_HIGH))
    return x.astype(np.int64, copy=False)


def range_codes(values: np.ndarray) -> np.ndarray:
    """``Range`` codes (uint8) for an array of valid numbers."""
    x = np.asarray(values, dtype=np.int64)
    prefix = x // 10_000_000
    out = np.full(x.shape, Range.UNALLOCATED, dtype=np.uint8)
    out[(prefix >= 400) & (prefix <= 499) | (prefix >= 600) & (prefix <= 799)] = Range.ENGLAND_WALES_IOM
    out[(prefix >= 320) & (prefix <= 399)] = Range.NORTHERN_IRELAND
    out[(x >= _CHI_FIRST) & (x <= _CHI_LAST)] = Range.SCOTLAND_CHI
    out[prefix >= 900] = Range.TEST
    return out


# --------------------------------------------------------------------------- synthetic numbers


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct int64 values: sort + neighbour mask (NumPy 2's ``np.unique`` hashes, which
    is several times slower on tens of millions of NHS numbers)."""
    x = np.sort(np.asarray(values, dtype=np.int64), kind="stable")
    if x.shape[0] < 2:
        return x
    keep = np.empty(x.shape[0], dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def synthetic(n: int, *, seed: int = 0, low: int = 900_000_000, high: int = 999_999_999) -> np.ndarray:
    """``n`` distinct valid NHS numbers (int64) whose first nine digits lie in [low, high].

    Default: the 9xx range, never issued to patients, so synthetic data can never be mistaken
    for (or collide with) a real person's number. Numbers in the CHI range begin with real dates.
    """
    rng = np.random.default_rng(seed)
    out = np.empty(0, dtype=np.int64)
    span = high - low + 1
    if n > span * 0.9:
        raise ValueError("range too small for that many distinct numbers")
    while out.shape[0] < n:
        need = int((n - out.shape[0]) * 1.15) + 16
        nine = rng.integers(low, high + 1, size=need, dtype=np.int64)
        s = np.zeros(need, dtype=np.int64)
        q = nine.copy()
        for w in range(2, 11):
            nq = q // 10
            s += (q - nq * 10) * w
            q = nq
        c = 11 - s % 11
        c[c == 11] = 0
        keep = c != 10
        cand = nine[keep] * 10 + c[keep]
        cand = cand[~_bad_chi_dates(cand)]
        out = sorted_unique(np.concatenate([out, cand]))
    return rng.permutation(out)[:n]


# --------------------------------------------------------------------------- SQL (DuckDB)


def sql_check(x: str) -> str:
    """SQL boolean: BIGINT expression ``x`` (0 <= x < 10**10) passes Modulus 11 (only: the CHI
    date is ``sql_check_reason``'s)."""
    terms = " + ".join(f"(({x} // {10 ** (10 - i)}) % 10) * {w}" for i, w in enumerate(_WEIGHTS, start=1))
    return f"(((11 - (({terms}) % 11)) % 11) = ({x} % 10))"


def _sql_chi_date_reason(x: str) -> str:
    """SQL: bad CHI date when BIGINT ``x`` is in the CHI range and its DDMMYY is not a real date,
    else 0.

    A CASE branch runs only for the rows it selects, so numbers outside the range cost one
    BETWEEN. In the range DD is 01-31; the month's days are 0 for months 00 and 13-99 (never a
    date)."""
    mm = f"(({x} // 1000000) % 100)"
    days = (
        f"CASE WHEN {mm} = 2 THEN (CASE WHEN ({x} // 10000) % 4 = 0 THEN 29 ELSE 28 END) "
        f"WHEN {mm} IN (4, 6, 9, 11) THEN 30 WHEN {mm} BETWEEN 1 AND 12 THEN 31 ELSE 0 END"
    )
    return (
        f"(CASE WHEN {x} BETWEEN {_CHI_FIRST} AND {_CHI_LAST} THEN "
        f"(CASE WHEN ({x} // 100000000) > ({days}) THEN {int(Reason.BAD_CHI_DATE)} ELSE 0 END) ELSE 0 END)"
    )


def sql_check_reason(x: str) -> str:
    """SQL ``Reason`` code for a BIGINT expression ``x`` of the right form (0 <= x < 10**10):
    0, bad check digit (Modulus 11, checked first) or bad CHI date. A plain expression (no
    lambdas); NULL gives bad check digit."""
    return f"(CASE WHEN {sql_check(x)} THEN {_sql_chi_date_reason(x)} ELSE {int(Reason.BAD_CHECK_DIGIT)} END)"


def _is_text(sql_type: str) -> bool:
    t = sql_type.upper()
    return not any(k in t for k in ("INT", "DOUBLE", "FLOAT", "REAL", "DECIMAL"))


def _sql_int(expr: str, sql_type: str, chi: bool) -> tuple[str, str]:
    """Numeric columns: (BIGINT candidate expression, SQL reason code before the checksum)."""
    t = sql_type.upper()
    low = _CHI_LOW if chi else _LOW
    if any(k in t for k in ("INT", "HUGEINT")):
        cand = f"CAST({expr} AS BIGINT)"
        reason = (
            f"CASE WHEN {expr} IS NULL THEN {int(Reason.MISSING)} "
            f"WHEN {expr} < 0 THEN {int(Reason.NOT_DIGITS)} "
            f"WHEN {expr} < {low} OR {expr} >= {_HIGH} THEN {int(Reason.WRONG_LENGTH)} ELSE 0 END"
        )
        return cand, reason
    cand = f"TRY_CAST({expr} AS BIGINT)"
    reason = (
        f"CASE WHEN {expr} IS NULL OR isnan({expr}) THEN {int(Reason.MISSING)} "
        f"WHEN NOT isfinite({expr}) OR {expr} <> floor({expr}) THEN {int(Reason.NOT_INTEGER)} "
        f"WHEN {expr} < 0 THEN {int(Reason.NOT_DIGITS)} "
        f"WHEN {expr} < {low} OR {expr} >= {_HIGH} THEN {int(Reason.WRONG_LENGTH)} ELSE 0 END"
    )
    return cand, reason


# Text columns. DuckDB has no variables inside an expression, so values computed once are bound
# with one-element lambdas: ``list_transform([value], lambda v: ...)[1]``. Without that, the
# trimmed text would be recomputed for each of the ten digits of the checksum (20x slower).
_T, _C = "__optout_t", "__optout_c"  # lambda parameter names (must not clash with columns)


def _bind(value: str, name: str, body: str) -> str:
    return f"list_transform([{value}], lambda {name}: {body})[1]"


def _sql_checked(cand: str) -> str:
    """Reason for a BIGINT candidate of the right form: 0, bad check digit or bad CHI date."""
    return _bind(cand, _C, sql_check_reason(_C))


def _text_parts(chi: bool) -> tuple[str, str]:
    """(reason, candidate) as expressions of the trimmed text bound to ``_T``.

    The same rules as ``parse``: separators (space, hyphen) only between digits; spreadsheet
    notation decided exactly on its digits, never through a DOUBLE that would round. The common
    case (9-10 plain digits) is tested first, so the rest only runs for the odd values.
    """
    t = _T
    lens = "(9, 10)" if chi else "(10)"
    plain = f"regexp_full_match({t}, '[0-9]{{{9 if chi else 10},10}}')"
    spaced = f"regexp_full_match({t}, '{_SPACED.pattern}')"
    c = f"regexp_replace({t}, '[ \\-]', '', 'g')"
    excel = f"regexp_full_match({t}, '{_EXCEL_RE}')"
    # value = I.F x 10^X; S = its digits without leading zeros, S2 also without trailing zeros
    i_part = f"regexp_extract({t}, '{_EXCEL_RE}', 1)"
    f_part = f"regexp_extract({t}, '{_EXCEL_RE}', 3)"
    x_part = f"regexp_extract({t}, '{_EXCEL_RE}', 5)"
    sig = f"ltrim({i_part} || {f_part}, '0')"
    sig2 = f"rtrim({sig}, '0')"
    exp = (
        f"(CASE WHEN {x_part} = '' THEN 0::DOUBLE ELSE coalesce(TRY_CAST({x_part} AS DOUBLE), 0::DOUBLE) END)"
    )
    k = f"({exp} - length({f_part}) + (length({sig}) - length({sig2})))"  # S2's power of ten
    ndig = f"(length({sig2}) + {k})"
    # where the reason is 0 the value is a whole number of at most 10 digits, which a DOUBLE holds
    # exactly, so the (correctly rounded) text-to-DOUBLE conversion is exact there
    cand = (
        f"CASE WHEN {plain} THEN CAST({t} AS BIGINT) WHEN {spaced} THEN TRY_CAST({c} AS BIGINT) "
        f"ELSE TRY_CAST(TRY_CAST({t} AS DOUBLE) AS BIGINT) END"
    )
    pre = (
        f"CASE WHEN {spaced} THEN "
        f"(CASE WHEN length({c}) IN {lens} THEN 0 ELSE {int(Reason.WRONG_LENGTH)} END) "
        f"WHEN NOT {excel} THEN {int(Reason.NOT_DIGITS)} "
        f"WHEN {sig2} = '' THEN {int(Reason.WRONG_LENGTH)} "
        f"WHEN {k} < 0 THEN {int(Reason.NOT_INTEGER)} "
        f"WHEN {ndig} IN {lens} THEN 0 "
        f"ELSE {int(Reason.WRONG_LENGTH)} END"
    )
    p = "__optout_p"
    odd = _bind(pre, p, f"CASE WHEN {p} <> 0 THEN {p} ELSE {_sql_checked(cand)} END")
    reason = (
        f"CASE WHEN {t} IS NULL OR {t} = '' THEN {int(Reason.MISSING)} "
        f"WHEN {plain} THEN {_sql_checked(f'CAST({t} AS BIGINT)')} ELSE {odd} END"
    )
    return reason, cand


def _trimmed(expr: str) -> str:
    return f"trim(CAST({expr} AS VARCHAR), '{_WS}')"


def sql_reason(expr: str, sql_type: str, *, chi: bool = False) -> str:
    """DuckDB expression giving the ``Reason`` code (0 = valid) of column expression ``expr``."""
    if _is_text(sql_type):
        reason, _cand = _text_parts(chi)
        return f"({_bind(_trimmed(expr), _T, reason)})"
    cand, pre = _sql_int(expr, sql_type, chi)
    # Numeric columns: the candidate is a cheap cast, so the CHI date is checked outside the
    # lambda (DuckDB builds a lambda body's state for every chunk, even for branches no row
    # takes; outside a lambda a CASE branch costs only for the rows it selects).
    mod11 = _bind(cand, _C, f"CASE WHEN {sql_check(_C)} THEN 0 ELSE {int(Reason.BAD_CHECK_DIGIT)} END")
    return (
        f"(CASE WHEN ({pre}) <> 0 THEN ({pre}) WHEN {mod11} <> 0 THEN {int(Reason.BAD_CHECK_DIGIT)} "
        f"ELSE {_sql_chi_date_reason(cand)} END)"
    )


def sql_normalised(expr: str, sql_type: str, *, chi: bool = False) -> str:
    """DuckDB expression giving the normalised BIGINT for valid values, NULL otherwise."""
    if _is_text(sql_type):
        reason, cand = _text_parts(chi)
        return f"({_bind(_trimmed(expr), _T, f'CASE WHEN ({reason}) = 0 THEN {cand} END')})"
    cand, _pre = _sql_int(expr, sql_type, chi)
    return f"(CASE WHEN {sql_reason(expr, sql_type, chi=chi)} = 0 THEN {cand} END)"

"""Fast paths the MESH benchmark added, checked against the slow, obvious forms.

- ``encode_dat`` (table look-ups) writes the service's format: ``DDDDDDDDDD,`` + LF per number,
  leading zeros kept (CHI numbers);
- ``parse_array`` on a text column of plain 9-10 digit values skips the cleaning regexes and
  still gives exactly the answers of the scalar ``parse``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from optout.check.request import dat_bytes
from optout.dat import encode_dat, read_dat_bytes
from optout.nhs_number import parse, parse_array, synthetic
from optout.service import format_dat


@given(st.lists(st.integers(min_value=0, max_value=10**10 - 1), max_size=300))
def test_encode_dat_is_ten_digits_comma_lf(values: list[int]) -> None:
    x = np.asarray(values, dtype=np.int64)
    expected = b"".join(b"%010d,\n" % v for v in values)
    assert encode_dat(x) == expected
    assert dat_bytes(x) == expected
    assert format_dat(x) == (expected or b"\n")  # MESH refuses an empty message


def test_edges_and_round_trip() -> None:
    x = np.asarray([0, 9, 99, 100, 9999, 10_000, 999_999, 1_000_000, 101_000_000, 9_999_999_999])
    assert encode_dat(x).splitlines()[0] == b"0000000000,"
    assert encode_dat(x).splitlines()[-1] == b"9999999999,"
    valid = synthetic(500, seed=3)
    assert np.array_equal(read_dat_bytes(encode_dat(valid), source_name="t"), np.sort(valid))


@given(
    st.lists(st.text(alphabet="0123456789", min_size=9, max_size=10), min_size=1, max_size=200),
    st.booleans(),
)
def test_plain_digit_columns_take_the_fast_path_with_the_same_answers(values: list[str], chi: bool) -> None:
    """A text column of only 9-10 ASCII digits skips the cleaning regexes: same answers as ``parse``."""
    import pyarrow as pa

    vals, reasons = parse_array(pa.array(values, type=pa.string()), chi=chi)
    for v, got_value, got_reason in zip(values, vals.tolist(), reasons.tolist(), strict=True):
        p = parse(v, chi=chi)
        assert got_reason == p.reason
        assert got_value == (p.value or 0)


def test_fast_path_falls_back_for_anything_else() -> None:
    import pyarrow as pa

    valid = str(synthetic(1, seed=1)[0])
    for odd in (f" {valid}", "943 476 5919", "", None, "٩٤٣٤٧٦٥٩١٩", "94347659190"):
        vals, reasons = parse_array(pa.array([valid, odd], type=pa.string()))
        p = parse(odd)
        assert reasons.tolist() == [0, p.reason] and vals.tolist() == [int(valid), p.value or 0]

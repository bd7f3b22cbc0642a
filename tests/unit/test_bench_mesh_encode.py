"""``encode_dat`` (the table-look-up .dat writer the MESH benchmark made faster) writes what the
service's format says: ``DDDDDDDDDD,`` + LF per number, leading zeros kept (CHI numbers)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from optout.check.request import dat_bytes
from optout.cleaned_list import encode_dat, read_dat_bytes
from optout.nhs_number import synthetic
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

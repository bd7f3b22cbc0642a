"""The .dat format keeps Scottish CHI numbers' leading zero both ways (ARCHITECTURE: "Scottish CHI
numbers keep their leading zero")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optout.dat import encode_dat, read_dat_bytes, read_number_file
from optout.nhs_number import Reason, validate_int_array


def _chi_with_leading_zero() -> int:
    # 01 01 80 xxxx: a real date (1 January 1980), digits completed to pass Modulus 11
    for tail in range(1000):
        digits = f"010180{tail:03d}"  # the first nine digits
        total = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check == 10:
            continue
        value = int(digits) * 10 + check  # as an int the leading zero is gone
        if validate_int_array(np.array([value]), chi=True)[0] == Reason.VALID:
            return value
    raise AssertionError("no CHI number found")


def test_a_chi_number_with_its_leading_zero_reads_back(tmp_path: Path) -> None:
    chi = _chi_with_leading_zero()
    body = encode_dat(np.array([chi], dtype=np.int64))
    assert body.startswith(b"0") and body.endswith(b",\n")
    assert read_dat_bytes(body, source_name="reply.dat").tolist() == [chi]
    (tmp_path / "reply.dat").write_bytes(body.replace(b"\n", b"\r\n"))
    numbers, _sha = read_number_file(tmp_path / "reply.dat")
    assert numbers.tolist() == [chi]


# --------------------------------------------------------------------------- the fast parse

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from optout.dat import _fast_dat, _slow_dat  # noqa: E402

# ten digits a line: English and test numbers, CHI numbers (leading zero, date range), bad check
# digits, and the edges of the ranges the full rules look at
_LINES = st.one_of(
    st.integers(0, 9_999_999_999),
    st.integers(100_000_000, 3_200_000_000),  # around the CHI range
    st.integers(3_999_999_990, 4_000_000_010),  # where the fast rule starts
    st.integers(0, 999_999_999),  # a leading zero
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINES, min_size=1, max_size=60))
@example([4_000_000_004, 3_112_999_999, 101_000_000, 9_434_765_919, 9_434_765_910, 0])
def test_the_fast_parse_gives_the_full_rules_reasons(values: list[int]) -> None:
    """The columnar parse (numbers and check digits from the same digits; the full rules only for
    a first digit under 4) says exactly what parsing line by line and ``validate_int_array`` say."""
    body = b"".join(b"%010d,\n" % v for v in values)
    parsed = _fast_dat(body)
    assert parsed is not None
    got, reasons = parsed
    want = _slow_dat(body, "x.dat")
    assert got.tolist() == want.tolist() == values
    assert reasons.tolist() == validate_int_array(want, chi=True).tolist()


def test_the_fast_parse_leaves_other_layouts_to_the_slow_one() -> None:
    assert _fast_dat(b"943476591,\n") is None  # nine digits
    assert _fast_dat(b"94347659x9,\n") is None
    assert _fast_dat(b"9434765919;\n") is None


# --------------------------------------------------------------------------- read early

import os  # noqa: E402

import pytest  # noqa: E402

from optout import dat  # noqa: E402
from optout.errors import InputError  # noqa: E402


@pytest.fixture
def fresh_early(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A fresh registry, counting the reads its thread makes."""
    reads: list[Path] = []

    def counted(p: Path) -> tuple[np.ndarray, str]:
        reads.append(p)
        return dat._read_number_file(p)

    monkeypatch.setattr(dat, "_EARLY", dat.Early(counted, "t"))
    return reads


def test_a_list_read_early_is_handed_over_once(
    tmp_path: Path, fresh_early: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "cleaned.dat"
    f.write_bytes(b"9434765919,\n4010232137,\n")
    sha = dat._read_number_file(f)[1]
    dat.read_early(f)
    assert dat._EARLY.get(f) is not None  # done (and kept)

    def not_again(p: Path) -> tuple[np.ndarray, str]:
        raise AssertionError("read again")

    with monkeypatch.context() as m:
        m.setattr(dat, "_read_number_file", not_again)
        got = read_number_file(f)
    assert fresh_early == [f.resolve()]  # read once, on the thread
    assert got[0].tolist() == [4010232137, 9434765919] and got[1] == sha
    again = read_number_file(f)  # handed over once: read again, the same
    assert again[0].tolist() == got[0].tolist() and again[1] == sha


def test_a_list_changed_after_it_was_read_early_is_read_again(
    tmp_path: Path, fresh_early: list[Path]
) -> None:
    f = tmp_path / "cleaned.dat"
    f.write_bytes(b"9434765919,\n")
    dat.read_early(f)
    dat._EARLY.get(f)  # the early read is done
    f.write_bytes(b"9434765919,\n4010232137,\n")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert read_number_file(f)[0].tolist() == [4010232137, 9434765919]


def test_a_bad_list_read_early_is_reported_as_if_read_late(tmp_path: Path, fresh_early: list[Path]) -> None:
    f = tmp_path / "cleaned.dat"
    f.write_bytes(b"9434765919,\n9434765918,\n")  # line 2: a bad check digit
    dat.read_early(f)
    dat.read_early(tmp_path / "missing.dat")  # not a file: nothing started
    with pytest.raises(InputError) as exc:
        read_number_file(f)
    assert exc.value.where is not None and exc.value.where.line == 2
    assert "9434765918" not in exc.value.render()
    assert fresh_early == [f.resolve()]

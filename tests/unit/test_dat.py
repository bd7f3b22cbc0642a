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

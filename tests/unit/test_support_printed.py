"""The check every CLI test makes on printed text finds NHS numbers and only them."""

from __future__ import annotations

from tests.support.printed import nhs_numbers_in

from optout.nhs_number import synthetic

VALID = str(synthetic(1, seed=3)[0])


def test_a_number_printed_is_found_whatever_surrounds_it() -> None:
    assert VALID and len(VALID) == 10
    for text in (VALID, f"row 3: {VALID}\n", f"nhs={VALID};", f"[{VALID}]", f"x{VALID}y"):
        assert nhs_numbers_in(text) == [VALID], text


def test_ten_digits_inside_a_hash_are_not_a_number() -> None:
    # a SHA-256 that happens to hold a valid number's digits (seen once in a demo run)
    digest = "b8f7a" + VALID + "e927fbb0b1e0f727edbc80c95d11d0dba1649ed7053b0d5e49"
    assert nhs_numbers_in(f"audit head {digest}") == []
    assert nhs_numbers_in(f"id 9a{VALID}c9 and {VALID}") == [VALID]

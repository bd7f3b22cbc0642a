"""What tests look for in printed text: NHS numbers, never to be there.

A run of ten digits that passes the NHS-number rules, outside a hash: a SHA-256 or other long
hexadecimal token (which a report or the demo prints on purpose) can hold a run of ten digits that
happens to pass Modulus 11 about once in a few hundred runs, and is not a number anybody was given.
"""

from __future__ import annotations

import re

from optout.nhs_number import parse

# a hexadecimal token of 12 characters or more with at least one letter: a hash or an id
_HEX = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{12,}(?![0-9A-Za-z])")
_TEN = re.compile(r"(?<!\d)\d{10}(?!\d)")


def nhs_numbers_in(text: str) -> list[str]:
    """Every run of exactly ten digits in ``text`` that is a valid NHS number, hashes left out."""
    return [m for m in _TEN.findall(_HEX.sub(" ", text)) if parse(m).ok]

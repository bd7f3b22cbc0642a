"""The policy texts the quotes in the app's data must come from (``../shared/policy/`` beside the
repository, as the policy README describes), read once; whitespace and quote marks normalised."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from optout.policy.sources import POLICY_FILES

POLICY_DIR = Path(__file__).resolve().parents[3] / "shared" / "policy"


def _norm(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip().lower()


@cache
def policy_text(number: str) -> str | None:
    """The normalised text of policy ``number`` ("000".."003"), or None when not on this machine."""
    path = POLICY_DIR / POLICY_FILES[number]
    return _norm(path.read_text(encoding="utf-8")) if path.is_file() else None


def assert_quoted(quote: str, clause: str) -> None:
    """``quote`` is word for word in the policy text ``clause`` names (when that text is here)."""
    number = clause.split()[0]
    assert number in POLICY_FILES, f"{clause!r} does not name one of the policy texts"
    assert quote.strip(), "an empty quote"
    text = policy_text(number)
    if text is not None:
        assert _norm(quote) in text, f"not found word for word in {POLICY_FILES[number]}: {quote!r}"

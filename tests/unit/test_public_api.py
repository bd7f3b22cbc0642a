"""The public API is explicit: everything in ``optout.__all__`` exists, and nothing else is promised."""

from __future__ import annotations

import optout


def test_all_names_exist() -> None:
    missing = [name for name in optout.__all__ if not hasattr(optout, name)]
    assert missing == []


def test_all_is_sorted_and_unique() -> None:
    assert len(set(optout.__all__)) == len(optout.__all__)
    assert sorted(optout.__all__, key=str.lower) == sorted(optout.__all__, key=str.lower)


def test_core_api_is_public() -> None:
    for name in ("apply_opt_outs", "assess", "NHSNumber", "AllowList", "read_cleaned_list", "OptoutError"):
        assert name in optout.__all__, name

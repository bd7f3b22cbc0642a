"""The README documents the flow file format completely: every key, every allowed value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from optout.policy import FACTS, exemptions, vocabulary

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def section(name: str) -> str:
    match = re.search(rf"<!-- section:{name} -->(.*?)<!-- /section:{name} -->", README, re.S)
    assert match, name
    return match.group(1)


POLICY = section("policy")


@pytest.mark.parametrize("spec", FACTS, ids=lambda s: s.path)
def test_every_key_and_value_is_documented(spec) -> None:
    assert f"`{spec.path}`" in POLICY
    for value in spec.values:
        assert f"`{value}`" in POLICY, f"{spec.path}: {value}"


def test_every_purpose_has_an_example_row() -> None:
    for purpose in vocabulary()["purposes"]:
        assert re.search(rf"^\| `{re.escape(purpose)}` \|", POLICY, re.M), purpose


def test_every_approval_reference_is_named() -> None:
    for ex in exemptions():
        if ex.approval and "/" in ex.approval:
            assert ex.approval in POLICY, ex.approval


def test_assess_section_documents_the_exit_codes() -> None:
    text = section("cli-assess")
    assert "optout assess" in text
    for code in ("**0**", "**3**", "**10**"):
        assert code in text

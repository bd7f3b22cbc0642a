"""The docs document the flow file format completely: every key, every allowed value.

The format is in docs/reference/flow-files.md; `optout assess` (with its exit codes) in the
IG lead / DPO guide.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from optout.policy import FACTS, exemptions, vocabulary

DOCS = Path(__file__).resolve().parents[2] / "docs"
FLOW_FILES = (DOCS / "reference" / "flow-files.md").read_text(encoding="utf-8")
IG_LEAD = (DOCS / "guides" / "ig-lead.md").read_text(encoding="utf-8")


def section(text: str, anchor: str) -> str:
    """The part of a page under the heading ``{#anchor}``, up to the next heading of its level or above."""
    lines = text.splitlines()
    in_fence = False
    start = level = None
    for i, line in enumerate(lines):
        if line.startswith("```"):
            in_fence = not in_fence
        if in_fence or not line.startswith("#"):
            continue
        depth = len(line) - len(line.lstrip("#"))
        if start is None and line.rstrip().endswith(f"{{#{anchor}}}"):
            start, level = i, depth
        elif start is not None and level is not None and depth <= level:
            return "\n".join(lines[start:i])
    assert start is not None, anchor
    return "\n".join(lines[start:])


EVERY_KEY = section(FLOW_FILES, "every-key")


def _key_row(path: str) -> str:
    match = re.search(rf"^\| `{re.escape(path)}`( \(one, or a list\))? \|.*$", EVERY_KEY, re.M)
    assert match, f"no row for `{path}` in the 'Every key' table"
    return match.group(0)


@pytest.mark.parametrize("spec", FACTS, ids=lambda s: s.path)
def test_every_key_and_value_is_documented(spec) -> None:
    row = _key_row(spec.path)
    for value in spec.values:
        assert f"`{value}`" in row, f"{spec.path}: {value}"


def test_every_purpose_has_an_example_row() -> None:
    purposes = section(FLOW_FILES, "purposes")
    for purpose in vocabulary()["purposes"]:
        assert re.search(rf"^\| `{re.escape(purpose)}` \|", purposes, re.M), purpose


def test_every_legal_basis_is_explained() -> None:
    bases = section(FLOW_FILES, "legal-bases")
    for basis in vocabulary()["legal_bases"]:
        assert re.search(rf"^\| [^|]*`{re.escape(basis)}`", bases, re.M), basis


def test_every_approval_reference_is_named() -> None:
    for ex in exemptions():
        if ex.approval and "/" in ex.approval:
            assert ex.approval in FLOW_FILES, ex.approval


def test_assess_section_documents_the_exit_codes() -> None:
    text = section(IG_LEAD, "does-the-opt-out-apply")
    assert "optout assess" in text
    for code in ("**0**", "**3**", "**10**"):
        assert code in text


def test_section_finds_only_its_own_part() -> None:
    page = "# T\n## A {#a}\nin a\n```\n# not a heading\n```\n### A1\nin a1\n## B {#b}\nin b\n"
    assert "in a1" in section(page, "a") and "in b" not in section(page, "a")
    assert section(page, "b").strip() == "## B {#b}\nin b"
    with pytest.raises(AssertionError):
        section(page, "missing")

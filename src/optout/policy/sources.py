"""Where each rule comes from, and which version of the rules decided.

Every reason in a decision cites a clause: a section of one of the four policy texts (``"002 NOTED
EXCLUSIONS"``, ``"001 §8.3"``) or of a public page named in ``guidance.yaml`` (``"OPG §7.1"``, the
operational policy guidance; ``"NDRS notice"``). :func:`source_for` finds the source a clause is in
(the source whose id is the longest prefix of the clause), so a decision can say which documents it
used and where to read them.

:func:`rules_version` names the rules a decision was made under: the human version
(:data:`RULES_VERSION`, bumped when a rule changes on purpose) and a hash of the data files the
rules are made of, so that a register can tell a decision made under other rules even when
someone edited the data and forgot to bump the number.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

# Bump when a rule changes on purpose (the data hash changes by itself).
# 1: the four policy texts. 2: chapters 4-7 of the operational policy guidance, successor bodies.
RULES_VERSION = "2"

# The files the rules are made of; their bytes make the hash in rules_version().
DATA_FILES = ("vocabulary.yaml", "exemptions.yaml", "guidance.yaml", "bodies.yaml")

# The policy texts, by their number (see the project's policy README).
POLICY_FILES: dict[str, str] = {
    "000": "000_b71a30e2ff51a76a.txt",
    "001": "001_2c2d26ccf4e1db65.txt",
    "002": "002_fb9d29bc94a7281f.txt",
    "003": "003_613be37144f6911b.txt",
}
_POLICY_TITLES = {
    "000": "CRANE cleft registry: complying with the national data opt-out (2022)",
    "001": "NHS Digital national data opt-out operational policy, section 8 (excerpt)",
    "002": "A GP practice / PCN protocol for the national data opt-out (2019)",
    "003": "Digital Social Care: the opt-out for adult social care providers (2021)",
}

FOUND, PARTIAL, NOT_FOUND = "found", "partial", "not-read"


@dataclass(frozen=True)
class Source:
    """A document rules are quoted from: one of the policy texts, or a public page."""

    id: str  # the prefix clauses use: "002", "OPG §7", "NDRS notice"
    title: str
    file: str | None = None  # a policy text in ../shared/policy/
    url: str | None = None  # a public page
    status: str = FOUND  # found | partial | secondary | not-read
    found: str = ""  # for a partial copy: which sections were read
    found_at: str | None = None  # where a mirror of url was read
    note: str = ""

    @property
    def location(self) -> str:
        """The policy text's file name, or the page's address."""
        return self.file or self.url or ""

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "title": self.title, "location": self.location, "status": self.status}
        if self.found:
            out["found"] = self.found
        return out


def _data(name: str) -> Any:
    text = resources.files("optout.policy").joinpath(name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


@cache
def guidance_data() -> dict[str, Any]:
    """guidance.yaml, loaded once."""
    data: dict[str, Any] = _data("guidance.yaml")
    return data


@cache
def sources() -> tuple[Source, ...]:
    """The policy texts 000-003 and the public pages of guidance.yaml."""
    out = [Source(n, _POLICY_TITLES[n], file=f, status="project-text") for n, f in POLICY_FILES.items()]
    for item in guidance_data()["sources"]:
        out.append(
            Source(
                id=str(item["id"]),
                title=str(item["title"]),
                url=item.get("url"),
                status=str(item.get("status", FOUND)),
                found=" ".join(str(item.get("found") or "").split()),
                found_at=item.get("found_at"),
                note=" ".join(str(item.get("note") or "").split()),
            )
        )
    return tuple(out)


def source_for(clause: str) -> Source | None:
    """The source a clause such as ``"OPG §7.1"`` or ``"002 NOTED EXCLUSIONS"`` is in."""
    best: Source | None = None
    for src in sources():
        if (clause == src.id or clause.startswith(src.id)) and (best is None or len(src.id) > len(best.id)):
            best = src
    return best


def clause_location(clause: str) -> str:
    """The file or address where a clause can be read ('' when no source is known)."""
    src = source_for(clause)
    return src.location if src is not None else ""


@cache
def rules_version() -> str:
    """The version of the rules: ``RULES_VERSION`` plus 12 hex digits of the data files' SHA-256."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        data = resources.files("optout.policy").joinpath(name).read_bytes()
        digest.update(name.encode("utf-8") + b"\0" + data + b"\0")
    return f"{RULES_VERSION}+{digest.hexdigest()[:12]}"

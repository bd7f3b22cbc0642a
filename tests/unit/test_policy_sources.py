"""Where each rule comes from (sources.py, provenance.py) and who holds it over time (bodies.py)."""

from __future__ import annotations

from datetime import date

import pytest

from optout.policy import bodies
from optout.policy.provenance import page
from optout.policy.rules import all_rules, exemptions, guidance_rules
from optout.policy.sources import clause_location, guidance_data, rules_version, source_for, sources


def _clauses() -> list[str]:
    out = []
    for rule in all_rules():
        out.append(rule.clause)
        out += [c for c, _w in rule.guidance]
        out += [c for c in rule.see_also if not c.startswith("002 ") and c != "003"]
    for body in bodies.bodies().values():
        if body.source:
            out.append(body.source)
    for fn in bodies.functions().values():
        out += [t.source for t in fn.tenures if t.source]
    return out


@pytest.mark.parametrize("clause", sorted(set(_clauses())))
def test_every_clause_the_data_names_has_a_source(clause: str) -> None:
    src = source_for(clause)
    assert src is not None, clause
    assert clause_location(clause).endswith(".txt") or clause_location(clause).startswith("http")


def _id(clause: str) -> str | None:
    src = source_for(clause)
    return src.id if src is not None else None


def test_a_clause_finds_the_longest_source_id() -> None:
    assert _id("OPG §7.1") == "OPG §7"
    assert _id("NDRS notice 2021") == "NDRS notice 2021"
    assert _id("NDRS notice") == "NDRS notice"
    assert clause_location("002 NOTED EXCLUSIONS") == "002_fb9d29bc94a7281f.txt"
    assert _id("999 nowhere") is None and clause_location("999 nowhere") == ""


def test_every_guidance_source_says_what_was_read() -> None:
    for src in sources():
        assert src.status in ("project-text", "found", "partial", "secondary", "not-read"), src
        if src.status == "partial":
            assert src.found, src.id
    assert {"OPG §4", "OPG §5", "OPG §6", "OPG §7"} <= {s.id for s in sources()}
    assert guidance_data()["not_found"], "the sections not yet read are listed"


def test_rules_version_is_human_plus_data_hash() -> None:
    version = rules_version()
    human, digest = version.split("+")
    assert human == "2" and len(digest) == 12 and int(digest, 16) >= 0


def test_the_holder_of_the_cancer_register_over_time() -> None:
    fn = bodies.function("national-disease-registration")
    assert fn.holders_ever == ("public-health-england", "nhs-digital", "nhs-england")
    on = {
        d: fn.holder_on(d)
        for d in (date(2021, 9, 30), date(2021, 10, 1), date(2023, 1, 31), date(2023, 2, 1))
    }
    assert [t.body if t else None for t in on.values()] == [
        "public-health-england",
        "nhs-digital",
        "nhs-digital",
        "nhs-england",
    ]
    h = bodies.holder(
        fn.id, named="public-health-england", disclosure_date=date(2020, 1, 1), today=date(2026, 1, 1)
    )
    assert (h.now, h.since, h.at_disclosure) == ("nhs-england", date(2023, 2, 1), "public-health-england")
    assert "The flow names Public Health England (PHE), an earlier holder" in h.explain()


@pytest.mark.parametrize(
    ("body", "on", "gone"),
    [
        ("public-health-england", date(2021, 9, 30), False),
        ("public-health-england", date(2021, 10, 1), True),
        ("nhs-digital", date(2023, 2, 1), True),
        ("clinical-commissioning-group", date(2022, 7, 1), True),
        ("integrated-care-board", date(2030, 1, 1), False),
        ("university", date(2030, 1, 1), False),
        (None, date(2030, 1, 1), False),
    ],
)
def test_a_body_that_no_longer_existed(body: str | None, on: date, gone: bool) -> None:
    assert (bodies.gone(body, on) is not None) is gone


def test_successions_follow_each_other_without_gaps() -> None:
    for fn in bodies.functions().values():
        for a, b in zip(fn.tenures, fn.tenures[1:], strict=False):
            assert a.end is not None and b.start is not None and (b.start - a.end).days == 1, fn.id
        for t in fn.tenures:
            assert t.body in bodies.bodies(), t.body


def test_the_page_names_every_rule_source_and_missing_section() -> None:
    text = page()
    for rule in (*exemptions(), *guidance_rules()):
        assert f"`{rule.id}`" in text
    for src in sources():
        assert src.location in text
    for item in guidance_data()["not_found"]:
        assert item["section"] in text
    assert "NHS England since 1 February 2023" in text

"""Reading flow files: every mistake is an InputError naming the file, line and fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optout.errors import InputError
from optout.policy import Flow, assess, load_flow, parse_flow_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"

GOOD = """\
name: Research extract
origin:
  sector: health
  country: england
  funding: public
data:
  confidentiality: confidential
purpose: research
legal_basis: s251
recipient:
  type: university
  role: third-party
"""


def error_of(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_flow_text(text, source="flow.yaml")
    return info.value


def test_a_good_flow_reads_and_decides() -> None:
    flow = parse_flow_text(GOOD, source="flow.yaml")
    assert flow.name == "Research extract"
    assert flow.purposes == ("research",)
    assert flow.get("recipient.role") == "third-party"
    assert assess(flow).outcome == "applies"


@pytest.mark.parametrize(
    ("text", "message", "hint", "line"),
    [
        (
            GOOD.replace("purpose: research", "purpose: reserch"),
            "'reserch' is not a valid value",
            "did you mean 'research'",
            8,
        ),
        (
            GOOD.replace("purpose: research", "purpse: research"),
            "Unknown key 'purpse'",
            "did you mean 'purpose'",
            8,
        ),
        (
            GOOD.replace("  role: third-party", "  rol: third-party"),
            "Unknown key 'recipient.rol'",
            "did you mean 'role'",
            12,
        ),
        (GOOD + "role: internal\n", "Unknown key 'role'", "belongs at 'recipient.role'", 13),
        (
            GOOD.replace("country: england", "country: englnd"),
            "not a valid value for 'origin.country'",
            "did you mean 'england'",
            4,
        ),
        (
            GOOD.replace("legal_basis: s251", "legal_basis: consnet"),
            "not a valid value for 'legal_basis'",
            "explicit-consent",
            9,
        ),
        (
            GOOD + "reasonably_expected: maybe\n",
            "must be true, false or unknown",
            "true, false or unknown",
            13,
        ),
        (GOOD + "review_date: next year\n", "must be a date", "YYYY-MM-DD", 13),
        (GOOD + "origin: england\n", "must be a group of keys", "sector", None),
        (
            GOOD.replace("  sector: health", "  sector: [health, adult-social-care]"),
            "takes one value",
            "health",
            3,
        ),
        ("name: [unclosed\n", "not valid YAML", "key: value", None),
        ("", "empty", "example", None),
        ("- just\n- a list\n", "must be a mapping", "example", None),
        ("format: optout-flow/9\n" + GOOD, "does not read", "optout-flow/1", 1),
    ],
)
def test_mistakes_are_input_errors_with_a_fix(text: str, message: str, hint: str, line: int | None) -> None:
    err = error_of(text)
    assert message in err.message
    assert err.hint and hint in err.hint
    assert err.exit_code == 3
    assert err.where is not None and err.where.file == "flow.yaml"
    if line is not None:
        assert err.where.line == line


def test_valid_values_are_listed_when_nothing_is_close() -> None:
    err = error_of(GOOD.replace("purpose: research", "purpose: zzzzzz"))
    assert "research" in (err.hint or "") and "local-case-finding" in (err.hint or "")


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (
            {"data": {"confidentiality": "anonymised", "identifiers": ["nhs-number"]}},
            ("data.confidentiality", "data.identifiers", "001 §8.1"),
        ),
        (
            {"data": {"confidentiality": "anonymised", "nhs_number": "present"}},
            ("data.confidentiality", "data.nhs_number"),
        ),
        (
            {
                "purpose": "direct-care",
                "recipient": {"role": "third-party", "legitimate_relationship": False},
            },
            ("purpose", "legitimate_relationship", "002 DIRECT CARE"),
        ),
        ({"recipient": {"role": "internal"}, "across_organisations": True}, ("recipient.role", "across")),
        ({"recipient": {"role": "third-party"}, "across_organisations": False}, ("recipient.role", "across")),
        ({"legal_basis": ["none", "s251"]}, ("legal_basis",)),
        ({"legal_basis": "s259-direction", "recipient": {"type": "university"}}, ("recipient.type", "S.259")),
    ],
)
def test_contradictory_facts_are_refused_naming_both(change: dict, names: tuple[str, ...]) -> None:
    facts: dict = {"name": "x", "purpose": "research", "recipient": {"type": "university"}}
    for key, value in change.items():
        if isinstance(value, dict):
            facts.setdefault(key, {}).update(value)
        else:
            facts[key] = value
    with pytest.raises(InputError) as info:
        assess(facts)
    text = info.value.render()
    assert "Contradictory facts" in text
    for name in names:
        assert name in text
    assert info.value.hint


def test_aliases_and_case_are_normalised() -> None:
    flow = Flow.from_mapping(
        {
            "purpose": "Population Health Management",
            "legal_basis": "Section 251",
            "recipient": {"type": "PHE", "role": "controller"},
            "data": {"confidentiality": "anonymized"},
        }
    )
    assert flow.purposes == ("population-health-management",)
    assert flow.legal_bases == ("s251",)
    assert flow.get("recipient.type") == "public-health-england"
    assert flow.get("recipient.role") == "third-party"
    assert flow.get("data.confidentiality") == "anonymised"


def test_unknown_is_the_same_as_leaving_a_fact_out() -> None:
    a = Flow.from_mapping(
        {"purpose": "research", "reasonably_expected": "unknown", "origin": {"country": None}}
    )
    b = Flow.from_mapping({"purpose": "research"})
    assert a.facts == b.facts
    assert a.facts_sha256 == b.facts_sha256


def test_to_dict_round_trips_and_the_hash_follows_the_facts() -> None:
    flow = parse_flow_text(GOOD)
    again = Flow.from_mapping(flow.to_dict())
    assert again.facts == flow.facts
    assert again.facts_sha256 == flow.facts_sha256
    changed = Flow.from_mapping({**flow.to_dict(), "legal_basis": "explicit-consent"})
    assert changed.facts_sha256 != flow.facts_sha256
    json.dumps(flow.to_dict())  # JSON-safe, for the register


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_flow(tmp_path / "nope.yaml")
    assert info.value.exit_code == 3


def test_yes_no_read_as_booleans_for_yes_no_questions() -> None:
    flow = Flow.from_mapping({"reasonably_expected": "unknown", "professional_oversight": True})
    assert flow.get("reasonably_expected") is None
    flow = parse_flow_text("reasonably_expected: yes\nacross_organisations: no\n")
    assert flow.get("reasonably_expected") is True
    assert flow.get("across_organisations") is False


# Each example flow file, with the answer it is there to show.
EXAMPLE_OUTCOMES = {
    "anonymised-statistics.yaml": ("does-not-apply", "anonymised", None),
    "cancer-registry-phe.yaml": ("does-not-apply", "exempt", "phe-national-cancer-register"),
    "cancer-registry-ndrs.yaml": ("does-not-apply", "exempt", "phe-national-cancer-register"),
    "invoice-validation-non-contracted.yaml": (
        "does-not-apply",
        "exempt",
        "non-contracted-invoice-validation",
    ),
    "nhs-england-s259.yaml": ("does-not-apply", "exempt", "nhs-digital-s259"),
    "prescription-charges-nhsbsa.yaml": ("does-not-apply", "exempt", "nhsbsa-prescription-charges"),
    "research-s251-cag-exception.yaml": ("does-not-apply", "exempt", "cag-advised-opt-out-does-not-apply"),
    "covid-public-health.yaml": ("does-not-apply", "exempt", "communicable-disease"),
    "direct-care-referral.yaml": ("does-not-apply", "direct-care", "direct-care"),
    "local-audit-pcn.yaml": ("applies", "opt-out-applied", None),
    "local-audit-practice.yaml": ("does-not-apply", "direct-care", "direct-care"),
    "nhs-digital-s259.yaml": ("does-not-apply", "exempt", "nhs-digital-s259"),
    "ons-official-statistics.yaml": ("does-not-apply", "exempt", "ons-official-statistics"),
    "planning-icb.yaml": ("applies", "opt-out-applied", None),
    "planning-processor.yaml": ("does-not-apply", "not-a-disclosure", None),
    "public-protection-dvla.yaml": ("does-not-apply", "exempt", "overriding-public-interest"),
    "registry-crane.yaml": ("applies", "opt-out-applied", None),
    "research-consent.yaml": ("does-not-apply", "consent", "explicit-consent"),
    "research-s251.yaml": ("applies", "opt-out-applied", None),
    "screening-bowel.yaml": ("does-not-apply", "exempt", "screening-uk-nsc"),
    "service-evaluation-internal.yaml": ("does-not-apply", "reasonably-expected", None),
    "social-care-research.yaml": ("applies", "opt-out-applied", None),
}


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXAMPLE_OUTCOMES)


@pytest.mark.parametrize("name", sorted(EXAMPLE_OUTCOMES))
def test_examples_give_the_answer_they_show(name: str) -> None:
    decision = assess(load_flow(EXAMPLES / name))
    assert (decision.outcome, decision.compliance, decision.exemption) == EXAMPLE_OUTCOMES[name]

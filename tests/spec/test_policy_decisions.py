"""The spec table: does the national data opt-out apply to this flow?

Each case is a flow described by its facts, the answer the policy texts give, the clause that
gives it (which the decision must cite) and the words of that clause. Flows are written as a
change to BASE (a research extract under s251 to a university: the plain "applies" case); a key
set to None is removed from BASE (the fact becomes unknown).

Policy texts: 000 CRANE registry guidance; 001 NHS Digital operational policy §8; 002 GP practice /
PCN protocol (SCOPE, DIRECT CARE, NOT DIRECT CARE, DISCLOSURES TO PROVIDERS / SUPPLIERS, INTERNAL
ACTIVITIES, NOTED EXCLUSIONS); 003 Digital Social Care guidance for adult social care.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from optout.policy import APPLIES, CANNOT_DECIDE, DOES_NOT_APPLY, assess, exemptions
from optout.policy.flow import vocabulary

A, N, C = APPLIES, DOES_NOT_APPLY, CANNOT_DECIDE

BASE: dict[str, Any] = {
    "name": "base research extract",
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential", "identifiers": ["nhs-number", "date-of-birth"]},
    "purpose": "research",
    "legal_basis": "s251",
    "recipient": {"name": "A university", "type": "university", "role": "third-party"},
}

DIRECT = {"recipient": {"legitimate_relationship": True}, "professional_oversight": True}


def merge(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def case(
    cid: str,
    change: dict[str, Any],
    outcome: str,
    clause: str,
    quote: str,
    *,
    exemption: str | None = None,
    compliance: str | None = None,
    missing: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Any:
    change = dict(change)
    if change.pop("_direct", False):  # done by professionals with a legitimate relationship
        extra = merge(DIRECT, extra or {})
    facts = merge(BASE, change)
    if extra:
        facts = merge(facts, extra)
    return pytest.param(facts, outcome, clause, quote, exemption, compliance, missing, id=cid)


CASES = [
    # --- 002 SCOPE / 003: where the data originates ------------------------------------------------
    case(
        "base-s251-research-applies",
        {},
        A,
        "002 NOT DIRECT CARE",
        "Planning or research activities that are not direct care purposes are in scope for NDO",
        compliance="opt-out-applied",
    ),
    case(
        "scotland-origin",
        {"origin": {"country": "scotland"}},
        N,
        "002 SCOPE",
        "The national data opt-out applies to data that originates within the health and adult "
        "social care system in England.",
        compliance="out-of-scope",
    ),
    case(
        "wales-origin",
        {"origin": {"country": "wales"}},
        N,
        "002 SCOPE",
        "originates within the health and adult social care system in England",
        compliance="out-of-scope",
    ),
    case(
        "not-health-or-adult-social-care",
        {"origin": {"sector": "other"}},
        N,
        "002 SCOPE",
        "originates within the health and adult social care system in England",
        compliance="out-of-scope",
    ),
    case(
        "private-provider-not-publicly-funded",
        {"origin": {"funding": "private"}},
        N,
        "002 SCOPE",
        "private providers ... which are funded or under contract with a public body",
        compliance="out-of-scope",
    ),
    case(
        "social-care-provider-not-publicly-funded",
        {"origin": {"sector": "adult-social-care", "funding": "private"}},
        N,
        "002 SCOPE",
        "everyone who uses publicly-funded health and/or care services can stop ... (003)",
        compliance="out-of-scope",
    ),
    case(
        "social-care-provider-under-la-contract",
        {"origin": {"sector": "adult-social-care", "funding": "publicly-contracted"}},
        A,
        "003",
        "From March 2022, all regulated social care providers in England will need to comply",
    ),
    case(
        "aqp-under-nhs-contract",
        {"origin": {"funding": "publicly-contracted"}},
        A,
        "002 SCOPE",
        "This includes private providers including Any Qualified Providers (AQPs) ... funded or under "
        "contract with a public body",
    ),
    case(
        "mixed-funding",
        {"origin": {"funding": "mixed"}},
        A,
        "002 SCOPE",
        "funded or under contract with a public body",
    ),
    case(
        "country-unknown",
        {"origin": {"country": None}},
        C,
        "002 SCOPE",
        "originates within the health and adult social care system in England",
        missing=["origin.country"],
    ),
    case(
        "scotland-beats-unknown-purpose",
        {"origin": {"country": "scotland"}, "purpose": None},
        N,
        "002 SCOPE",
        "originates within the health and adult social care system in England",
    ),
    # --- confidential patient information (002 SCOPE, 001 §8.1, ICO code) --------------------------
    case(
        "anonymised-ico",
        {"data": {"confidentiality": "anonymised", "identifiers": ["age-band"]}},
        N,
        "002 NOT DIRECT CARE",
        "If confidential data is involved, it can be anonymised",
        compliance="anonymised",
    ),
    case(
        "anonymised-beats-everything-unknown",
        {
            "data": {"confidentiality": "anonymised", "identifiers": None},
            "origin": None,
            "legal_basis": None,
            "recipient": None,
        },
        N,
        "002 NOT DIRECT CARE",
        "it can be anonymised",
        compliance="anonymised",
    ),
    case(
        "pseudonymised-is-still-confidential",
        {"data": {"confidentiality": "pseudonymised", "identifiers": ["pseudonym"]}},
        A,
        "001 §8.1",
        "It is not permitted to simply remove identifiers or otherwise de-identify part of the record",
    ),
    case(
        "not-confidential",
        {"data": {"confidentiality": "not-confidential"}},
        N,
        "002 SCOPE",
        "confidential patient information",
        compliance="not-confidential",
    ),
    case(
        "confidentiality-unknown",
        {"data": {"confidentiality": None}},
        C,
        "002 SCOPE",
        "confidential patient information",
        missing=["data.confidentiality"],
    ),
    # --- 002 DIRECT CARE ----------------------------------------------------------------------------
    case(
        "direct-care-referral",
        {
            "purpose": "direct-care",
            "legal_basis": "implied-consent",
            "recipient": {"type": "nhs-trust"},
            "_direct": True,
        },
        N,
        "002 DIRECT CARE",
        "Activities performed for direct care purposes are not in scope for NDO",
        exemption="direct-care",
        compliance="direct-care",
    ),
    case(
        "local-audit-in-practice",
        {
            "purpose": "local-audit",
            "legal_basis": "implied-consent",
            "recipient": {"role": "internal"},
            "across_organisations": False,
            "_direct": True,
        },
        N,
        "002 DIRECT CARE",
        "It includes the assurance of safe and high-quality care and treatment through local audit",
        exemption="direct-care",
        compliance="direct-care",
    ),
    case(
        "local-audit-across-pcn",
        {
            "purpose": "local-audit",
            "legal_basis": "implied-consent",
            "recipient": {"type": "pcn", "role": "third-party"},
            "across_organisations": True,
            "_direct": True,
        },
        A,
        "002 DIRECT CARE",
        "If the above audits were happening across organisations (i.e. across the PCN) the data would "
        "need to be anonymised, consent obtained or the NDO opt outs applied before disclosure.",
    ),
    case(
        "local-audit-third-party-implies-across",
        {"purpose": "local-audit", "legal_basis": "implied-consent", "recipient": {"type": "pcn"}, **DIRECT},
        A,
        "002 DIRECT CARE",
        "across organisations (i.e. across the PCN)",
    ),
    case(
        "local-audit-by-processor-needs-no-more-facts",
        {"purpose": "local-audit", "recipient": {"role": "processor", "type": "commercial-company"}},
        N,
        "002 DISCLOSURES TO PROVIDERS / SUPPLIERS",
        "As long as these companies are engaged as \u201cProcessors\u201d, this does not count as a "
        "disclosure to a third party.",
        compliance="not-a-disclosure",
    ),
    case(
        "incident-management",
        {
            "purpose": "incident-management",
            "legal_basis": "implied-consent",
            "recipient": {"role": "internal"},
            "_direct": True,
        },
        N,
        "002 DIRECT CARE",
        "Incident Management",
        exemption="direct-care",
    ),
    case(
        "outcome-measurement-without-professional-oversight",
        {
            "purpose": "outcome-measurement",
            "recipient": {"legitimate_relationship": True},
            "professional_oversight": False,
        },
        A,
        "002 DIRECT CARE",
        "As long as the activities are undertaken by, or under the oversight of, one or more registered "
        "and regulated health or social care professionals",
    ),
    case(
        "outcome-measurement-relationship-unknown",
        {"purpose": "outcome-measurement", "professional_oversight": True},
        C,
        "002 DIRECT CARE",
        "with whom the patient has a legitimate relationship",
        missing=["recipient.legitimate_relationship"],
    ),
    case(
        "local-audit-without-legitimate-relationship",
        {
            "purpose": "local-audit",
            "recipient": {"legitimate_relationship": False},
            "professional_oversight": True,
        },
        A,
        "002 DIRECT CARE",
        "with whom the patient has a legitimate relationship",
    ),
    # --- 002 DISCLOSURES TO PROVIDERS / SUPPLIERS and INTERNAL ACTIVITIES ---------------------------
    case(
        "processor-plans-capacity",
        {"purpose": "planning", "recipient": {"role": "processor", "type": "commercial-company"}},
        N,
        "002 DISCLOSURES TO PROVIDERS / SUPPLIERS",
        "If you are using a Processor to undertake local non care activities, you would not need to "
        "consider the NDO prior to disclosure.",
        compliance="not-a-disclosure",
    ),
    case(
        "same-company-as-controller",
        {"purpose": "planning", "recipient": {"role": "third-party", "type": "commercial-company"}},
        A,
        "002 DISCLOSURES TO PROVIDERS / SUPPLIERS",
        "The opt outs must be applied before it leaves the organisation\u2019s "
        "\u2018controller boundary\u2019.",
    ),
    case(
        "internal-research-not-expected",
        {
            "legal_basis": "none",
            "recipient": {"role": "internal", "type": None},
            "reasonably_expected": False,
        },
        A,
        "002 INTERNAL ACTIVITIES",
        "Not something the individual would reasonably expect or know about",
    ),
    case(
        "internal-service-evaluation-expected",
        {
            "purpose": "service-evaluation",
            "legal_basis": "none",
            "recipient": {"role": "internal", "type": None},
            "reasonably_expected": True,
        },
        N,
        "002 INTERNAL ACTIVITIES",
        "Patients generally expect routine internal evaluations of the safety and efficacy of care",
        compliance="reasonably-expected",
    ),
    case(
        "internal-expectation-unknown",
        {"recipient": {"role": "internal"}},
        C,
        "002 INTERNAL ACTIVITIES",
        "Not something the individual would reasonably expect or know about",
        missing=["reasonably_expected"],
    ),
    case(
        "role-unknown",
        {"recipient": {"role": None}},
        C,
        "002 DISCLOSURES TO PROVIDERS / SUPPLIERS",
        "Before data is disclosed to outside organisations, the NDO must be considered.",
        missing=["recipient.role"],
    ),
    # --- 002 NOTED EXCLUSIONS -----------------------------------------------------------------------
    case(
        "explicit-consent-research",
        {"legal_basis": "explicit-consent"},
        N,
        "002 NOTED EXCLUSIONS",
        "does not apply where explicit consent has been obtained",
        exemption="explicit-consent",
        compliance="consent",
    ),
    case(
        "s251-research-applies",
        {"approvals": ["21/CAG/0001"]},
        A,
        "002 NOTED EXCLUSIONS",
        "NHS Act 2006 s 251 (the opt-out applies unless 002 names the approval)",
    ),
    case(
        "implied-consent-is-not-explicit",
        {
            "legal_basis": "implied-consent",
            "recipient": {"role": "internal", "type": None},
            "reasonably_expected": False,
        },
        A,
        "002 NOTED EXCLUSIONS",
        "does not apply where explicit consent has been obtained",
    ),
    case(
        "legal-basis-unknown",
        {"legal_basis": None},
        C,
        "002 NOTED EXCLUSIONS",
        "does not apply where explicit consent has been obtained",
        missing=["legal_basis"],
    ),
    case(
        "communicable-disease-covid",
        {"purpose": "communicable-disease-control", "recipient": {"type": "other"}},
        N,
        "002 NOTED EXCLUSIONS",
        "monitoring and control of communicable disease and other risks to public health (i.e. COVID-19 "
        "disclosures)",
        exemption="communicable-disease",
        compliance="exempt",
    ),
    case(
        "overriding-public-interest-dvla",
        {
            "purpose": "public-protection",
            "legal_basis": "overriding-public-interest",
            "recipient": {"type": "dvla"},
        },
        N,
        "002 NOTED EXCLUSIONS",
        "where there is an overriding public interest in the disclosure (DVLA, guns etc)",
        exemption="overriding-public-interest",
    ),
    case(
        "public-protection-without-public-interest-basis",
        {"purpose": "public-protection", "recipient": {"type": "police"}},
        A,
        "002 NOTED EXCLUSIONS",
        "where there is an overriding public interest in the disclosure",
    ),
    case(
        "court-order",
        {"purpose": "legal-proceedings", "legal_basis": "court-order", "recipient": {"type": "court"}},
        N,
        "002 NOTED EXCLUSIONS",
        "where the information is required by law or a court order.",
        exemption="required-by-law",
    ),
    case(
        "required-by-law",
        {"purpose": "planning", "legal_basis": "legal-requirement", "recipient": {"type": "cqc"}},
        N,
        "002 NOTED EXCLUSIONS",
        "required by law or a court order",
        exemption="required-by-law",
    ),
    case(
        "local-case-finding",
        {"purpose": "local-case-finding", "recipient": {"type": "gp-practice"}},
        N,
        "002 NOTED EXCLUSIONS",
        "does not apply to local case finding",
        exemption="local-case-finding",
    ),
    case(
        "risk-stratification-is-not-case-finding",
        {"purpose": "risk-stratification", "recipient": {"type": "integrated-care-board"}},
        A,
        "002 NOT DIRECT CARE",
        "Risk Stratification",
    ),
    case(
        "phe-cancer-register-piag",
        {
            "purpose": "cancer-registration",
            "approvals": ["PIAG 03(a)/2001"],
            "recipient": {"type": "public-health-england"},
        },
        N,
        "002 NOTED EXCLUSIONS",
        "flowing to Public Health England (PHE) under the following approvals: i. National Cancer "
        "Register (PIAG 03(a)/2001)",
        exemption="phe-national-cancer-register",
        compliance="exempt",
    ),
    case(
        "cancer-registry-to-phe-without-piag",
        {"purpose": "cancer-registration", "approvals": [], "recipient": {"type": "public-health-england"}},
        A,
        "002 NOTED EXCLUSIONS",
        "under the following approvals: i. National Cancer Register (PIAG 03(a)/2001)",
    ),
    case(
        "piag-approval-but-not-to-phe",
        {
            "purpose": "cancer-registration",
            "approvals": ["PIAG 03(a)/2001"],
            "recipient": {"type": "university"},
        },
        A,
        "002 NOTED EXCLUSIONS",
        "flowing to Public Health England (PHE)",
    ),
    case(
        "phe-congenital-anomaly-register-spaced-reference",
        {
            "purpose": "congenital-anomaly-registration",
            "approvals": ["CAG 10- 02(d)/2015"],
            "recipient": {"type": "public-health-england"},
        },
        N,
        "002 NOTED EXCLUSIONS",
        "ii. National Congenital Anomaly and Rare Diseases Register (CAG 10- 02(d)/2015)",
        exemption="phe-congenital-anomaly-register",
    ),
    case(
        "ons-solely-official-statistics",
        {"purpose": "official-statistics", "recipient": {"type": "ons"}},
        N,
        "002 NOTED EXCLUSIONS",
        "data flowing into the Office for National Statistics (ONS) solely for the production of "
        "official statistics",
        exemption="ons-official-statistics",
    ),
    case(
        "ons-but-not-solely-official-statistics",
        {"purpose": ["official-statistics", "research"], "recipient": {"type": "ons"}},
        A,
        "002 NOTED EXCLUSIONS",
        "solely for the production of official statistics",
    ),
    case(
        "official-statistics-not-into-ons",
        {"purpose": "official-statistics", "recipient": {"type": "nhs-england"}},
        A,
        "002 NOTED EXCLUSIONS",
        "data flowing into the Office for National Statistics (ONS)",
    ),
    case(
        "screening-uk-nsc-endorsed",
        {"purpose": "screening", "screening": {"nsc_endorsed": True}, "recipient": {"type": "nhs-trust"}},
        N,
        "002 NOTED EXCLUSIONS",
        "participation in National Screening Programmes endorsed by the UK National Screening Committee",
        exemption="screening-uk-nsc",
    ),
    case(
        "screening-not-endorsed-by-uk-nsc",
        {
            "purpose": "screening",
            "screening": {"nsc_endorsed": False},
            "recipient": {"type": "commercial-company"},
        },
        A,
        "002 NOTED EXCLUSIONS",
        "endorsed by the UK National Screening Committee",
    ),
    case(
        "screening-endorsement-unknown",
        {"purpose": "screening", "recipient": {"type": "nhs-trust"}},
        C,
        "002 NOTED EXCLUSIONS",
        "endorsed by the UK National Screening Committee",
        missing=["screening.nsc_endorsed"],
    ),
    case(
        "screening-breast-bowel-cervical-approval",
        {"purpose": "screening", "approvals": ["15/CAG/0207"], "recipient": {"type": "nhs-trust"}},
        N,
        "002 NOTED EXCLUSIONS",
        "NHS Breast, Bowel and Cervical Cancer Screening Programmes (15/CAG/0207)",
        exemption="screening-breast-bowel-cervical",
    ),
    case(
        "screening-aaa-approval",
        {"purpose": "screening", "approvals": ["ECC 3-04(o)/2011"], "recipient": {"type": "nhs-trust"}},
        N,
        "002 NOTED EXCLUSIONS",
        "NHS Abdominal Aortic Aneurysm Screening Programme (ECC 3-04(o)/2011)",
        exemption="screening-aaa",
    ),
    case(
        "assuring-transformation",
        {
            "purpose": "assuring-transformation",
            "approvals": ["CAG 8-02 (a-c)/2014"],
            "recipient": {"type": "nhs-digital"},
        },
        N,
        "002 NOTED EXCLUSIONS",
        "Assuring Transformation: Enhanced Quality Assurance Process Data flow (CAG 8-02 (a-c)/2014)",
        exemption="assuring-transformation",
    ),
    case(
        "assuring-transformation-without-approval",
        {"purpose": "assuring-transformation", "recipient": {"type": "nhs-england"}},
        A,
        "002 NOTED EXCLUSIONS",
        "which is disclosed under the following approval",
    ),
    case(
        "cpes",
        {"purpose": "patient-survey", "survey": "cpes", "recipient": {"type": "other"}},
        N,
        "002 NOTED EXCLUSIONS",
        "does not apply to the National Cancer Patient Experience Survey (CPES)",
        exemption="cpes",
    ),
    case(
        "cqc-patient-survey-programme",
        {
            "purpose": "patient-survey",
            "survey": "cqc-nhs-patient-survey-programme",
            "recipient": {"type": "cqc"},
        },
        N,
        "002 NOTED EXCLUSIONS",
        "CQC NHS Patient Survey Programme",
        exemption="cqc-nhs-patient-survey-programme",
    ),
    case(
        "local-patient-survey",
        {"purpose": "patient-survey", "survey": "other", "recipient": {"type": "commercial-company"}},
        A,
        "002 NOTED EXCLUSIONS",
        "CPES and CQC NHS Patient Survey Programme",
    ),
    case(
        "nhs-digital-s259-direction",
        {
            "purpose": "national-data-collection",
            "legal_basis": "s259-direction",
            "recipient": {"type": "nhs-digital"},
        },
        N,
        "002 NOTED EXCLUSIONS",
        "required under S.259 of the Health and Social Care Act 2012 following a Direction from "
        "Secretary of State or NHS England",
        exemption="nhs-digital-s259",
    ),
    case(
        "nhs-digital-mandatory-request",
        {
            "purpose": "national-data-collection",
            "legal_basis": "mandatory-request",
            "recipient": {"type": "nhs-digital"},
        },
        N,
        "002 NOTED EXCLUSIONS",
        "or a mandatory request",
        exemption="nhs-digital-s259",
    ),
    case(
        "nhs-digital-under-s251-not-s259",
        {"recipient": {"type": "nhs-digital"}},
        A,
        "002 NOTED EXCLUSIONS",
        "where these are required under S.259",
    ),
    case(
        "another-purpose-beyond-care",
        {"purpose": "other"},
        A,
        "001 §8.3",
        "A national data opt-out is applied to confidential patient information at the point it is "
        "disclosed for purposes beyond individual care.",
    ),
    case(
        "purpose-unknown",
        {"purpose": None},
        C,
        "002 DIRECT CARE",
        "Activities performed for direct care purposes are not in scope for NDO",
        missing=["purpose"],
    ),
    # --- 000: registries ----------------------------------------------------------------------------
    case(
        "crane-registry-s251-plus-consented-audit",
        {
            "purpose": ["registry", "national-clinical-audit"],
            "legal_basis": ["s251", "explicit-consent"],
            "recipient": {"type": "national-registry"},
        },
        A,
        "000",
        "none of the child's data should be recorded in CRANE \u2013 this includes both registry and "
        "audit data",
    ),
    case(
        "registry-consent-only",
        {
            "purpose": "national-clinical-audit",
            "legal_basis": "explicit-consent",
            "recipient": {"type": "national-registry"},
        },
        N,
        "002 NOTED EXCLUSIONS",
        "does not apply where explicit consent has been obtained",
        exemption="explicit-consent",
    ),
    case(
        "registry-s251-only",
        {"purpose": "registry", "recipient": {"type": "national-registry"}},
        A,
        "000",
        "registry information is collected with Section 251 approval",
    ),
    case(
        "two-exempt-bases",
        {"legal_basis": ["legal-requirement", "explicit-consent"]},
        N,
        "001 §8.1",
        "the entire record ... must be fully removed (every part is exempt here)",
    ),
    # --- 001 §8.3: onward sharing -------------------------------------------------------------------
    case(
        "s251-onward-sharing-covered",
        {"onward_sharing": {"planned": True, "covered_by_approval": True}},
        A,
        "001 §8.3",
        "Where the terms of the use of the data (i.e. the specific S.251 approval) covers onward sharing, "
        "data controllers should apply the most up to date national data opt-out at this point.",
    ),
    case(
        "this-flow-is-the-onward-disclosure",
        {
            "recipient": {"type": "nhs-digital"},
            "onward_sharing": {"is_onward": True, "covered_by_approval": True},
        },
        A,
        "001 §8.3",
        "it should also be applied at the point of disclosure to NHS Digital",
    ),
    # --- 001 §8.2: NHS number -----------------------------------------------------------------------
    case(
        "nhs-number-missing-disproportionate",
        {"data": {"nhs_number": "partly-missing", "tracing_effort": "disproportionate"}},
        A,
        "001 §8.2",
        "The effort in obtaining the NHS number ... is disproportionate",
    ),
    case(
        "identifiers-removed-by-law",
        {"data": {"nhs_number": "removed-by-law", "identifiers": ["year-of-birth"]}},
        A,
        "001 §8.2",
        "no attempt should be made to re-identify the individual",
    ),
]


@pytest.mark.parametrize(("facts", "outcome", "clause", "quote", "exemption", "compliance", "missing"), CASES)
def test_decision(
    facts: dict[str, Any],
    outcome: str,
    clause: str,
    quote: str,
    exemption: str | None,
    compliance: str | None,
    missing: list[str] | None,
) -> None:
    decision = assess(facts)
    cited = [r.clause for r in decision.reasons]
    assert decision.outcome == outcome, [(r.clause, r.text) for r in decision.reasons]
    assert clause in cited, f"the decision does not cite {clause}: {cited}"
    assert quote  # every case quotes the clause it comes from
    if exemption is not None:
        assert decision.exemption == exemption
    if outcome == APPLIES:
        assert decision.compliance == "opt-out-applied"
        assert decision.exemption is None
    if compliance is not None:
        assert decision.compliance == compliance
    if outcome == CANNOT_DECIDE:
        assert decision.compliance is None
        assert decision.missing, "cannot-decide must name the missing facts"
    else:
        assert decision.missing == []
    if missing is not None:
        assert decision.missing == missing
    for reason in decision.reasons:
        assert reason.file.endswith(".txt"), reason  # every reason points at a policy text


def test_the_table_covers_every_exemption() -> None:
    covered = {p.values[4] for p in CASES}
    assert {ex.id for ex in exemptions()} <= covered


def test_the_table_covers_every_purpose_family_and_outcome() -> None:
    purposes = vocabulary()["purposes"]
    families: set[str] = set()
    for p in CASES:
        value = p.values[0].get("purpose")
        for purpose in [value] if isinstance(value, str) else value or []:
            families.add(purposes[purpose]["family"])
    assert families == {entry["family"] for entry in purposes.values()}
    assert {p.values[1] for p in CASES} == {A, N, C}
    assert len(CASES) >= 35


def test_crane_says_why_consent_does_not_keep_audit_data() -> None:
    facts = merge(
        BASE,
        {"purpose": ["registry", "national-clinical-audit"], "legal_basis": ["s251", "explicit-consent"]},
    )
    decision = assess(facts)
    texts = " ".join(r.text for r in decision.reasons if r.clause == "000")
    assert "audit data" in texts
    assert any(r.kind == "near-miss" and "explicit-consent" in r.text for r in decision.reasons)


def test_near_miss_names_the_missing_approval() -> None:
    facts = merge(
        BASE,
        {"purpose": "cancer-registration", "approvals": [], "recipient": {"type": "public-health-england"}},
    )
    near = [r.text for r in assess(facts).reasons if r.kind == "near-miss"]
    assert any("PIAG 03(a)/2001" in t for t in near), near


def test_ons_not_solely_explains_the_part_that_applies() -> None:
    facts = merge(BASE, {"purpose": ["official-statistics", "research"], "recipient": {"type": "ons"}})
    decision = assess(facts)
    assert any("exemption ons-official-statistics" in r.text for r in decision.reasons)
    assert any("research under s251: the opt-out applies" in r.text for r in decision.reasons)


def test_onward_sharing_is_flagged_for_a_fresh_check() -> None:
    facts = merge(BASE, {"onward_sharing": {"planned": True, "covered_by_approval": True}})
    onward = [r for r in assess(facts).reasons if r.clause == "001 §8.3"]
    assert onward and "applied again" in onward[0].text

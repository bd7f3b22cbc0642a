"""Does the national data opt-out apply to this flow? The rules, in the order the policy gives them.

A flow passes through five tests. Each test either *lifts* the opt-out (it does not apply, for a
reason the policy gives), *holds* it (the flow stays in scope), or cannot tell because a fact is
unknown:

    1. scope            002 SCOPE, 003        health / adult social care, England, publicly funded
    2. confidentiality  002 SCOPE, 001 §8.1   confidential patient information, not anonymised (ICO)
    3. direct care      002 DIRECT CARE       direct care, incl. local audit (not across organisations)
    4. disclosure       002 DISCLOSURES TO PROVIDERS / SUPPLIERS, 002 INTERNAL ACTIVITIES
    5. exemptions       002 NOTED EXCLUSIONS  (exemptions.yaml: data, not code), and what the
                        operational policy guidance adds today, OPG §5-7 (guidance.yaml)

Clauses name the policy texts (``"002 NOTED EXCLUSIONS"``) or today's public sources
(``"OPG §7.1"``, the operational policy guidance; see :mod:`optout.policy.sources`). An exemption
that goes with a function rather than a name (PHE's cancer register, NHS Digital's s.259
collections) matches its holder then and now (:mod:`optout.policy.bodies`), and the decision says
who holds it today and since when.

The opt-out **applies** when every test holds; it **does not apply** as soon as one test lifts it
(whatever the other facts are, so an unknown fact elsewhere does not matter); otherwise the answer
is **cannot decide**, naming the facts that are missing. Nothing is guessed.

A flow with several purposes or several legal bases (one per part of the record, e.g. a registry
minimum dataset under s251 plus audit data collected with consent) is assessed part by part; the
opt-out removes the *whole* record (001 §8.1), so it applies to the flow when it applies to any
part (000: "none of the child's data should be recorded ... both registry and audit data").
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

import yaml

from optout.policy import bodies
from optout.policy.flow import (
    FACT_SPECS,
    FACTS,
    Flow,
    direct_identifiers,
    normalise_approval,
    policy_file,
    vocabulary,
)
from optout.policy.sources import RULES_VERSION as RULES_VERSION  # re-exported (optout.policy)
from optout.policy.sources import guidance_data, rules_version, source_for

APPLIES = "applies"
DOES_NOT_APPLY = "does-not-apply"
CANNOT_DECIDE = "cannot-decide"
OUTCOMES = (APPLIES, DOES_NOT_APPLY, CANNOT_DECIDE)

LIFTS, HOLDS, UNKNOWN = "lifts", "holds", "unknown"


@dataclass(frozen=True)
class Reason:
    """One step of the explanation, citing the clause it comes from."""

    text: str
    clause: str  # file number and heading, e.g. "002 NOTED EXCLUSIONS", "001 §8.3"
    kind: str = "rule"  # rule | exemption | near-miss | missing | note

    @property
    def file(self) -> str:
        """The policy text (``002_....txt``) or the public page the clause is in."""
        return policy_file(self.clause)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "clause": self.clause, "file": self.file, "text": self.text}


@dataclass
class Decision:
    """The answer for one flow: applies / does-not-apply / cannot-decide, and why."""

    outcome: str
    reasons: list[Reason]
    missing: list[str] = field(default_factory=list)  # fact paths needed (cannot-decide only)
    exemption: str | None = None  # exemptions.yaml id when one lifts the opt-out
    compliance: str | None = None  # how the flow complies (see COMPLIANCE)
    alternatives: list[str] = field(default_factory=list)  # other ways to comply, when it applies
    flow: str | None = None  # the flow's name
    facts_sha256: str | None = None
    rules_version: str = field(default_factory=rules_version)  # which rules decided (sources.py)
    holder: bodies.Holder | None = None  # who holds the lifting exemption's function, now and then

    @property
    def sources(self) -> list[dict[str, Any]]:
        """The documents this decision used: each source cited by a reason, once, in order."""
        seen: dict[str, dict[str, Any]] = {}
        for r in self.reasons:
            src = source_for(r.clause)
            if src is not None and src.id not in seen:
                seen[src.id] = src.to_dict()
        return list(seen.values())

    @property
    def applies(self) -> bool:
        return self.outcome == APPLIES

    @property
    def questions(self) -> dict[str, str]:
        """For each missing fact, the question that answers it."""
        return {path: FACT_SPECS[path].question for path in self.missing if path in FACT_SPECS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "outcome": self.outcome,
            "compliance": self.compliance,
            "exemption": self.exemption,
            "alternatives": list(self.alternatives),
            "missing": [{"fact": p, "question": q} for p, q in self.questions.items()],
            "reasons": [r.to_dict() for r in self.reasons],
            "facts_sha256": self.facts_sha256,
            "rules_version": self.rules_version,
            "sources": self.sources,
            "holder": self.holder.to_dict() if self.holder is not None else None,
        }


# How a flow complies (002 PREPARING FOR COMPLIANCE: "identify, against each activity, how it
# complies (i.e. consent, anonymisation, NDO applied)").
COMPLIANCE: dict[str, str] = {
    "opt-out-applied": "check the cohort and remove opted-out people's whole records before disclosure",
    "consent": "explicit consent (002 NOTED EXCLUSIONS)",
    "anonymised": "the data is anonymised in line with the ICO code",
    "exempt": "an exemption lifts the opt-out (002 NOTED EXCLUSIONS, or the operational policy guidance)",
    "direct-care": "direct care is out of scope (002 DIRECT CARE)",
    "not-a-disclosure": "a processor acting on the controller's instructions is not a disclosure",
    "reasonably-expected": "an internal use patients would reasonably expect (002 INTERNAL ACTIVITIES)",
    "not-confidential": "the data is not confidential patient information",
    "out-of-scope": "the data does not originate in publicly funded health or adult social care in England",
}


# When the opt-out applies, the flow may instead use anonymised data or ask for explicit consent
# (002 NOT DIRECT CARE: "it can be anonymised, consent obtained or the NDO out outs applied").
ALTERNATIVES = ("anonymised", "consent")


@dataclass(frozen=True)
class Exemption:
    """A rule as data: one of 002's NOTED EXCLUSIONS (exemptions.yaml) or of the operational policy
    guidance as published today (guidance.yaml): its words, where they come from, and the facts
    under which it lifts the opt-out (``kind`` exemption) or adds a note (``kind`` note). Rules of
    ``kind`` rule are applied by the code of this module and cited by id."""

    id: str
    wording: str
    clause: str
    approval: str | None
    compliance: str
    identified_by: tuple[Mapping[str, Any], ...]
    lifts_when: tuple[Mapping[str, Any], ...]
    decided_by: str | None = None
    note: str | None = None
    see_also: tuple[str, ...] = ()
    kind: str = "exemption"  # exemption | rule | note
    guidance: tuple[tuple[str, str], ...] = ()  # (clause, words) in today's sources
    held_by: str | None = None  # a function in bodies.yaml
    when: tuple[Mapping[str, Any], ...] = ()  # notes: added when one alternative holds
    text: str | None = None  # notes: what the note says

    @property
    def source(self) -> str:
        """Where the rule's words are: the policy text or the public page."""
        return policy_file(self.clause)


def _words(value: Any) -> str | None:
    return " ".join(str(value).split()) if value else None


def _rule(item: Mapping[str, Any]) -> Exemption:
    return Exemption(
        id=item["id"],
        wording=" ".join(str(item["wording"]).split()),
        clause=item["clause"],
        approval=item.get("approval"),
        compliance=item.get("compliance") or "exempt",
        identified_by=tuple(item.get("identified_by") or ()),
        lifts_when=tuple(item.get("lifts_when") or ()),
        decided_by=item.get("decided_by"),
        note=_words(item.get("note")),
        see_also=tuple(item.get("see_also") or ()),
        kind=item.get("kind", "exemption"),
        guidance=tuple(
            (g["clause"], " ".join(str(g["wording"]).split())) for g in item.get("guidance") or ()
        ),
        held_by=item.get("held_by"),
        when=tuple(item.get("when") or ()),
        text=_words(item.get("text")),
    )


@cache
def exemptions() -> tuple[Exemption, ...]:
    """The 002 NOTED EXCLUSIONS, loaded from exemptions.yaml."""
    text = resources.files("optout.policy").joinpath("exemptions.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return tuple(_rule(item) for item in data["exemptions"])


@cache
def guidance_rules() -> tuple[Exemption, ...]:
    """What the operational policy guidance (chapters 4-7) and today's public pages add (guidance.yaml)."""
    return tuple(_rule(item) for item in guidance_data()["rules"])


def all_rules() -> tuple[Exemption, ...]:
    """Every rule as data: 002's exemptions first (a registered flow keeps its exemption id), then
    the guidance's."""
    return exemptions() + guidance_rules()


def exemption(exemption_id: str) -> Exemption:
    """A rule by id (002's exemptions and the guidance's rules)."""
    for ex in all_rules():
        if ex.id == exemption_id:
            return ex
    raise KeyError(exemption_id)


def _quote(words: str) -> str:
    """Quoted words: '...', or "..." when they hold a single quote themselves."""
    return f'"{words}"' if "'" in words else f"'{words}'"


def _cite(rule_id: str, text: str | None = None, kind: str = "rule") -> Reason:
    """A reason quoting a rule of guidance.yaml / exemptions.yaml by id."""
    r = exemption(rule_id)
    return Reason(text or _quote(r.wording), r.clause, kind=kind)


# --- one part of a flow: a single purpose and a single legal basis --------------------------------


@dataclass(frozen=True)
class _Part:
    flow: Flow
    purpose: str | None
    basis: str | None
    today: date | None = None  # for naming today's holder of an exemption (never for the answer)

    def get(self, path: str) -> Any:
        if path == "purpose":
            return self.purpose
        if path == "legal_basis":
            return self.basis
        if path == "approvals":  # none listed = none (documented); compared without spaces/case
            return tuple(normalise_approval(a) for a in self.flow.approvals)
        value = self.flow.get(path)
        if value is None:  # what the policy says not knowing means, where it says so (FactSpec.absent)
            return FACT_SPECS[path].absent
        return value


@dataclass
class _Test:
    status: str
    reasons: list[Reason]
    missing: list[str] = field(default_factory=list)
    exemption: str | None = None
    compliance: str | None = None
    holder: bodies.Holder | None = None


def _label(section: str, value: str) -> str:
    entry = vocabulary()[section].get(value) or {}
    return str(entry.get("label", value))


def _match(part: _Part, path: str, expected: Any) -> bool | None:
    actual = part.get(path)
    if actual is None:
        return None
    if isinstance(expected, Mapping) and "held_by" in expected:  # any holder, then or now
        return bodies.held_by_any(actual, str(expected["held_by"]))
    if isinstance(expected, Mapping) and ("after" in expected or "before" in expected):
        after, before = expected.get("after"), expected.get("before")
        return (after is None or actual > after) and (before is None or actual < before)
    options = expected["any_of"] if isinstance(expected, Mapping) else [expected]
    if path == "approvals":
        options = [normalise_approval(str(o)) for o in options]
    if isinstance(actual, tuple):
        return any(o in actual for o in options)
    return actual in options


def _all(part: _Part, conditions: Mapping[str, Any]) -> tuple[bool | None, list[str], list[str]]:
    """AND of conditions: (True/False/None, unknown facts, failed facts)."""
    unknown, failed = [], []
    for path, expected in conditions.items():
        result = _match(part, path, expected)
        if result is None:
            unknown.append(path)
        elif result is False:
            failed.append(path)
    if failed:
        return False, unknown, failed
    if unknown:
        return None, unknown, failed
    return True, [], []


def _describe_failure(part: _Part, conditions: Mapping[str, Any], failed: list[str]) -> str:
    bits = []
    for path in failed:
        expected = conditions[path]
        if isinstance(expected, Mapping) and "held_by" in expected:
            fn = bodies.function(str(expected["held_by"]))
            bits.append(
                f"{path} is {part.get(path)}, it needs the body that runs {fn.label} "
                f"({bodies.history(fn)}; either name will do)"
            )
            continue
        want = " or ".join(map(str, expected["any_of"])) if isinstance(expected, Mapping) else str(expected)
        if path == "approvals":
            bits.append(f"the approvals listed do not include {want}")
        elif isinstance(expected, bool):
            bits.append(f"{path} is {str(part.get(path)).lower()}, it needs {str(expected).lower()}")
        else:
            bits.append(f"{path} is {part.get(path)}, it needs {want}")
    return "; ".join(bits)


def _unknown(missing: list[str], clause: str, what: str) -> _Test:
    text = f"Cannot tell {what} without {', '.join(missing)}."
    return _Test(UNKNOWN, [Reason(text, clause, kind="missing")], missing=missing)


# --- the five tests ----------------------------------------------------------------------------


def _scope(part: _Part) -> _Test:
    country = part.get("origin.country")
    sector = part.get("origin.sector")
    funding = part.get("origin.funding")
    if country is not None and country != "england":
        return _Test(
            LIFTS,
            [
                Reason(
                    f"The data originates in {_label('countries', country)}, not England: the national data "
                    "opt-out applies to data that originates within the health and adult social care "
                    "system in England.",
                    "002 SCOPE",
                ),
                _cite("health-and-adult-social-care-system"),
            ],
            compliance="out-of-scope",
        )
    if sector == "other":
        return _Test(
            LIFTS,
            [
                Reason(
                    "The data does not originate in health or adult social care: the opt-out applies to "
                    "data that originates within the health and adult social care system in England.",
                    "002 SCOPE",
                ),
                _cite("childrens-social-care-not-covered"),
            ],
            compliance="out-of-scope",
        )
    if funding == "private":
        return _Test(
            LIFTS,
            [
                Reason(
                    "The care is privately funded and not under contract with a public body: private "
                    "providers are in scope only for services 'funded or under contract with a public "
                    "body', and the opt-out covers people who use publicly-funded health and/or care "
                    "services (003).",
                    "002 SCOPE",
                ),
                _cite(
                    "private-patients-at-private-providers",
                    "Out of scope: '" + exemption("private-patients-at-private-providers").wording + "'. A "
                    "private patient treated in an NHS organisation is in scope (origin.funding: "
                    "private-in-nhs-setting).",
                ),
            ],
            compliance="out-of-scope",
        )
    missing = [
        p
        for p, v in (("origin.sector", sector), ("origin.country", country), ("origin.funding", funding))
        if v is None
    ]
    if missing:
        return _unknown(missing, "002 SCOPE", "whether the data is in scope")
    funded = {
        "public": "funded by a public body",
        "private-in-nhs-setting": "private care given in an NHS organisation or setting",
    }.get(funding, "funded by or under contract with a public body")
    reasons = [
        Reason(
            f"The data originates in {_label('sectors', sector).lower()} in England, {funded}"
            ": in scope of the national data opt-out.",
            "002 SCOPE",
        ),
        _cite("health-and-adult-social-care-system"),
    ]
    if funding == "private-in-nhs-setting":
        reasons.append(
            _cite(
                "private-patients-in-nhs-organisations",
                "In scope: '" + exemption("private-patients-in-nhs-organisations").wording + "'; the "
                "opt-out covers 'private care given in NHS settings' (Understanding the national data "
                "opt-out). 002 counted only publicly funded care.",
            )
        )
    elif funding == "publicly-contracted":
        reasons.append(_cite("publicly-arranged-care-at-private-providers", kind="note"))
    if sector == "adult-social-care":
        reasons.append(
            Reason("Regulated adult social care providers in England must comply with the opt-out.", "003")
        )
    if funding == "mixed":
        reasons.append(
            Reason(
                "Only part of the care is publicly funded: the opt-out applies to the records of people "
                "whose care is publicly funded or under contract with a public body.",
                "002 SCOPE",
                kind="note",
            )
        )
    return _Test(HOLDS, reasons)


def _confidentiality(part: _Part) -> _Test:
    conf = part.get("data.confidentiality")
    linkage = Reason(
        "If this is one of several files released without the opt-out upheld, make sure no common "
        "identifier lets records be re-identified across them (optout release linkcheck).",
        "001 §8.1",
        kind="note",
    )
    if conf is None:
        return _unknown(
            ["data.confidentiality"], "002 SCOPE", "whether the data is confidential patient information"
        )
    if conf == "anonymised":
        return _Test(
            LIFTS,
            [
                Reason(
                    "The data is anonymised in line with the ICO Code of Practice, so it is not "
                    "confidential patient information: the opt-out does not apply ('it can be anonymised').",
                    "002 NOT DIRECT CARE",
                ),
                linkage,
            ],
            compliance="anonymised",
        )
    if conf == "not-confidential":
        return _Test(
            LIFTS,
            [
                Reason(
                    "The data is not confidential patient information (information about someone's health "
                    "or care that can identify them): the opt-out applies only to confidential patient "
                    "information.",
                    "002 SCOPE",
                ),
                linkage,
            ],
            compliance="not-confidential",
        )
    reasons = [
        Reason(
            "The data is confidential patient information: information about someone's health or care "
            "that can identify them.",
            "002 SCOPE",
        )
    ]
    if conf == "pseudonymised":
        reasons.append(
            Reason(
                "Removing identifiers or de-identifying part of the record does not anonymise it in line "
                "with the ICO Code of Practice: it stays confidential, and an opted-out person's entire "
                "record must be removed.",
                "001 §8.1",
            )
        )
    return _Test(HOLDS, reasons)


def _direct_care(part: _Part) -> _Test:
    purpose = part.purpose
    if purpose is None:
        return _unknown(["purpose"], "002 DIRECT CARE", "whether the flow is for direct care")
    entry = vocabulary()["purposes"][purpose]
    family, label = entry["family"], entry["label"]
    if family != "direct-care":
        if family in ("research", "planning"):
            text = (
                f"{label} is not direct care: planning and research activities are in scope and must "
                "have the opt-outs applied."
            )
            clause = "002 NOT DIRECT CARE"
        elif family == "registry":
            text = (
                f"{label} is not the child's or patient's immediate clinical care: the opt-out covers "
                "confidential patient information used for purposes other than immediate clinical care."
            )
            clause = "000"
        elif family == "named":
            text = (
                f"{label} is not direct care; an exemption (002 NOTED EXCLUSIONS, the operational "
                "policy guidance) may still lift the opt-out (below)."
            )
            clause = "002 NOT DIRECT CARE"
        else:
            text = (
                f"{label}: the opt-out is applied when confidential patient information is disclosed for "
                "purposes beyond individual care."
            )
            clause = "001 §8.3"
        return _Test(HOLDS, [Reason(text, clause)])

    legit = part.get("recipient.legitimate_relationship")
    oversight = part.get("professional_oversight")
    role = part.get("recipient.role")
    across = part.get("across_organisations")
    if across is None and role in ("internal", "third-party"):
        across = role == "third-party"
    if purpose == "local-audit" and across is True:
        return _Test(
            HOLDS,
            [
                Reason(
                    "A local audit run across organisations (e.g. across the PCN) is not direct care: "
                    "'the data would need to be anonymised, consent obtained or the NDO opt outs applied "
                    "before disclosure'.",
                    "002 DIRECT CARE",
                )
            ],
        )
    if legit is False:
        return _Test(
            HOLDS,
            [
                Reason(
                    f"{label} counts as direct care only when done by professionals with whom the patient "
                    "has a legitimate relationship; here they have none, so it is in scope.",
                    "002 DIRECT CARE",
                )
            ],
        )
    if oversight is False:
        return _Test(
            HOLDS,
            [
                Reason(
                    f"{label} counts as direct care only when undertaken by, or under the oversight of, "
                    "registered and regulated health or social care professionals; here it is not, so it "
                    "is in scope.",
                    "002 DIRECT CARE",
                )
            ],
        )
    missing = []
    if legit is None:
        missing.append("recipient.legitimate_relationship")
    if oversight is None:
        missing.append("professional_oversight")
    if purpose == "local-audit" and across is None:
        missing.append("across_organisations")
    if missing:
        return _unknown(missing, "002 DIRECT CARE", f"whether {label.lower()} counts as direct care")
    ex = exemption("direct-care")
    reasons = [
        Reason(
            f"{label} is direct care, undertaken by or under the oversight of registered and regulated "
            "professionals with whom the patient has a legitimate relationship"
            + (" (a local audit within the organisation)" if purpose == "local-audit" else "")
            + ": not in scope of the opt-out.",
            "002 DIRECT CARE",
        ),
        Reason(f"'{ex.wording}'", ex.clause, kind="exemption"),
    ]
    return _Test(LIFTS, reasons, exemption=ex.id, compliance="direct-care")


def _disclosure(part: _Part) -> _Test:
    role = part.get("recipient.role")
    if role is None:
        return _unknown(
            ["recipient.role"], "002 DISCLOSURES TO PROVIDERS / SUPPLIERS", "whether the flow is a disclosure"
        )
    if role == "processor":
        return _Test(
            LIFTS,
            [
                Reason(
                    "The recipient is engaged as a processor, acting only on the controller's narrow "
                    "instructions: this does not count as a disclosure to a third party, and the opt-out "
                    "need not be considered before it (a company acting as controller is a third party).",
                    "002 DISCLOSURES TO PROVIDERS / SUPPLIERS",
                ),
                Reason(
                    "The processor's work is your own use of the data: passing its results to anyone else "
                    "is a separate flow to assess.",
                    "002 DISCLOSURES TO PROVIDERS / SUPPLIERS",
                    kind="note",
                ),
            ],
            compliance="not-a-disclosure",
        )
    if role == "third-party":
        return _Test(
            HOLDS,
            [
                Reason(
                    "The data leaves the organisation's controller boundary to a third party: the opt-out "
                    "must be applied before it leaves.",
                    "002 DISCLOSURES TO PROVIDERS / SUPPLIERS",
                )
            ],
        )
    expected = part.get("reasonably_expected")
    if expected is None:
        return _unknown(
            ["reasonably_expected"],
            "002 INTERNAL ACTIVITIES",
            "whether this internal use must consider the opt-out",
        )
    if expected:
        return _Test(
            LIFTS,
            [
                Reason(
                    "An internal use that patients would know about or reasonably expect: the opt-out "
                    "must be considered internally only where the activity is not direct care, not based "
                    "on consent and not something the individual would reasonably expect.",
                    "002 INTERNAL ACTIVITIES",
                )
            ],
            compliance="reasonably-expected",
        )
    return _Test(
        HOLDS,
        [
            Reason(
                "An internal use that patients would not reasonably expect: the opt-out must be considered "
                "even though the data stays inside the organisation.",
                "002 INTERNAL ACTIVITIES",
            )
        ],
    )


def _exemptions(part: _Part) -> _Test:
    near: list[Reason] = []
    lifting: list[Exemption] = []
    unknown: list[tuple[Exemption, list[str]]] = []
    for ex in all_rules():
        if ex.kind != "exemption" or ex.decided_by == "rule":
            continue
        best_unknown: list[str] | None = None
        lifted = False
        failures: list[tuple[Mapping[str, Any], list[str]]] = []
        for conditions in ex.lifts_when:
            result, unk, failed = _all(part, conditions)
            if result is True:
                lifted = True
                break
            if result is None:
                # ask first for the fact the others hang on (schema order: purpose, legal basis, ...)
                best_unknown = _in_schema_order(unk)[:1] if best_unknown is None else best_unknown
            else:
                failures.append((conditions, failed))
        if lifted:
            lifting.append(ex)
            continue
        if best_unknown is not None:
            unknown.append((ex, best_unknown))
            continue
        identified = any(_all(part, c)[0] is True for c in ex.identified_by)
        if identified and failures:
            conditions, failed = failures[0]
            text = f"Exemption {ex.id} does not lift it: {_describe_failure(part, conditions, failed)}."
            if ex.note:
                text += f" {ex.note}"
            near.append(Reason(text, ex.clause, kind="near-miss"))
    if lifting:
        first, *others = lifting
        approval = f" (approval {first.approval})" if first.approval else ""
        reasons = [
            Reason(f"Exemption {first.id}{approval}: '{first.wording}'", first.clause, kind="exemption")
        ]
        reasons.extend(Reason(_quote(words), clause, kind="exemption") for clause, words in first.guidance)
        holder = None
        if first.held_by:
            holder = bodies.holder(
                first.held_by,
                named=part.get("recipient.type"),
                disclosure_date=part.get("disclosure_date"),
                today=part.today,
            )
            reasons.append(Reason(holder.explain(), holder.source or first.clause))
        reasons.extend(
            Reason(f"Exemption {ex.id} would also lift it.", ex.clause, kind="note") for ex in others
        )
        return _Test(LIFTS, reasons, exemption=first.id, compliance=first.compliance, holder=holder)
    if unknown:
        missing: list[str] = []
        reasons = []
        for ex, facts in unknown:
            missing.extend(f for f in facts if f not in missing)
            reasons.append(
                Reason(
                    f"Exemption {ex.id} could lift the opt-out; it depends on {', '.join(facts)}.",
                    ex.clause,
                    kind="missing",
                )
            )
        return _Test(UNKNOWN, near + reasons, missing=missing)
    reasons = [*near]
    basis = part.basis
    if basis == "s251":
        reasons.append(
            Reason(
                "Section 251 support sets aside the duty of confidentiality but does not by itself lift "
                "the opt-out: only the approvals named in 002 NOTED EXCLUSIONS do, or CAG's advice for "
                "this flow (below).",
                "002 NOTED EXCLUSIONS",
            )
        )
        reasons.append(
            _cite(
                "s251-standard-condition",
                f"{_quote(exemption('s251-standard-condition').wording)} (that patients' wishes are "
                "respected): the opt-out applies unless the s251 approval letter or CAG's published "
                "minutes say it does not apply to this flow (s251.opt_out_exception: true, once you have "
                "seen it in writing).",
            )
        )
    elif basis == "implied-consent":
        reasons.append(
            Reason(
                "Implied consent is not explicit consent: only explicit consent lifts the opt-out.",
                "002 NOTED EXCLUSIONS",
            )
        )
    reasons.append(
        Reason(
            "No exemption covers this flow (002 NOTED EXCLUSIONS; the operational policy guidance, "
            "chapters 5-7).",
            "002 NOTED EXCLUSIONS",
        )
    )
    return _Test(HOLDS, reasons)


TESTS = (_scope, _confidentiality, _direct_care, _disclosure, _exemptions)


# --- notes that go with an "applies" -------------------------------------------------------------


def _applies_notes(flow: Flow) -> list[Reason]:
    notes = [
        Reason(
            "Remove the entire record of everyone with an opt-out from the extract; removing identifiers "
            "alone is not allowed.",
            "001 §8.1",
            kind="note",
        ),
        Reason(
            "Apply the most up-to-date opt-outs at the point of disclosure: disclose within 20 days of a "
            "check with the service, or 13 days when a temporary cache (refreshed at least every 7 days) "
            "is used.",
            "001 §8.4",
            kind="note",
        ),
    ]
    fams = {vocabulary()["purposes"][p]["family"] for p in flow.purposes}
    if "registry" in fams:
        notes.append(
            Reason(
                "A registry or national audit: if the opt-out is set, none of the person's data is "
                "recorded: the registry minimum dataset (s251) and the audit data (even when collected "
                "with consent) alike. `optout collect` applies this at collection.",
                "000",
            )
        )
    if "none" in flow.legal_bases:
        notes.append(
            Reason(
                "The flow has no legal basis for disclosing confidential patient information beyond "
                "individual care: applying the opt-out is not a legal basis; the flow needs one (or "
                "consent, or anonymised data) before it can go ahead.",
                "001 §8 Summary",
                kind="note",
            )
        )
    nhs = flow.get("data.nhs_number")
    idents = flow.get("data.identifiers")
    if nhs == "partly-missing":
        effort = flow.get("data.tracing_effort")
        if effort == "disproportionate":
            text = (
                "Records without a (valid) NHS number, where obtaining it is disproportionate and good "
                "tracing practice was followed, are not subject to the opt-out; all others are."
            )
        elif effort == "proportionate":
            text = (
                "Obtain the missing NHS numbers (it is not disproportionate) and apply the opt-out to "
                "every record."
            )
        else:
            text = (
                "Some NHS numbers are missing: the opt-out still applies to those records unless obtaining "
                "the NHS number is disproportionate and good tracing practice was followed "
                "(state data.tracing_effort)."
            )
        notes.append(Reason(text, "001 §8.2", kind="note"))
    elif nhs == "removed-by-law":
        notes.append(
            Reason(
                "Identifiers were intentionally removed (legally restricted condition or consent model): "
                "make no attempt to re-identify anyone in order to apply the opt-out.",
                "001 §8.2",
                kind="note",
            )
        )
    elif idents is not None and "nhs-number" not in idents and direct_identifiers(idents):
        notes.append(
            Reason(
                "The NHS number is the single identifier for applying the opt-out: do not remove or omit "
                "it to prevent the opt-out being applied; trace it where that is not disproportionate.",
                "001 §8.2",
                kind="note",
            )
        )
    notes.extend(_onward_notes(flow))
    return notes


def _onward_notes(flow: Flow) -> list[Reason]:
    notes = []
    covered = flow.get("onward_sharing.covered_by_approval")
    agreement = flow.get("onward_sharing.agreement_requires_reapply")
    if flow.get("onward_sharing.is_onward"):
        if covered or agreement:
            notes.append(
                Reason(
                    "This is an onward disclosure of data received earlier: apply the most up-to-date "
                    "opt-out again now (a fresh check, a new release).",
                    "001 §8.3",
                )
            )
        else:
            notes.append(
                Reason(
                    "This is an onward disclosure: there is no specific requirement to remove records from "
                    "data already received, unless the S.251 approval or data sharing agreement requires "
                    "it (state onward_sharing.covered_by_approval / agreement_requires_reapply).",
                    "001 §8.3",
                    kind="note",
                )
            )
    if flow.get("onward_sharing.planned"):
        if covered or agreement:
            notes.append(
                Reason(
                    "The recipient will share the data onward under terms that cover it: the most "
                    "up-to-date opt-out must be applied again at that point (register it as its own flow; "
                    "release it with a fresh check).",
                    "001 §8.3",
                )
            )
        else:
            notes.append(
                Reason(
                    "Onward sharing is planned: follow the data sharing agreement; where the S.251 approval "
                    "covers onward sharing the opt-out is applied again at that point.",
                    "001 §8.3",
                    kind="note",
                )
            )
    return notes


# --- putting it together -------------------------------------------------------------------------


def _assess_part(part: _Part) -> Decision:
    results = [test(part) for test in TESTS]
    for result in results:
        if result.status == LIFTS:
            chain: list[Reason] = []
            for r in results:  # the chain up to and including the test that lifts it
                chain.extend(x for x in r.reasons if x.kind != "missing")
                if r is result:
                    break
            return Decision(
                DOES_NOT_APPLY,
                chain,
                exemption=result.exemption,
                compliance=result.compliance,
                holder=result.holder,
            )
    reasons = [x for r in results for x in r.reasons]
    missing = [m for r in results for m in r.missing]
    if missing:
        return Decision(CANNOT_DECIDE, reasons, missing=_in_schema_order(missing))
    return Decision(APPLIES, reasons, compliance="opt-out-applied", alternatives=list(ALTERNATIVES))


def _in_schema_order(paths: list[str]) -> list[str]:
    order = {spec.path: i for i, spec in enumerate(FACTS)}
    return sorted(dict.fromkeys(paths), key=lambda p: order.get(p, len(order)))


def _part_label(purpose: str | None, basis: str | None) -> str:
    return f"{purpose or 'purpose unknown'} under {basis or 'an unknown legal basis'}"


def assess(flow: Flow | Mapping[str, Any], *, today: date | None = None) -> Decision:
    """Decide whether the national data opt-out applies to a flow, citing each clause.

    ``today`` (default: the date today) only names who holds an exemption now; it never changes
    the answer. The decision records the rules version and the sources its reasons cite.
    """
    if not isinstance(flow, Flow):
        flow = Flow.from_mapping(flow)
    purposes: tuple[str | None, ...] = flow.purposes or (None,)
    bases: tuple[str | None, ...] = flow.legal_bases or (None,)
    parts = [_Part(flow, p, b, today) for p, b in itertools.product(purposes, bases)]
    subs = [(part, _assess_part(part)) for part in parts]
    decision = subs[0][1] if len(subs) == 1 else _combine(subs)
    if decision.outcome == APPLIES:
        seen = {(r.clause, r.text) for r in decision.reasons}
        decision.reasons.extend(r for r in _applies_notes(flow) if (r.clause, r.text) not in seen)
    elif decision.outcome == DOES_NOT_APPLY:
        decision.reasons.extend(r for r in _onward_notes(flow) if r.kind != "note")
    seen = {(r.clause, r.text) for r in decision.reasons}
    decision.reasons.extend(r for r in _guidance_notes(parts, decision) if (r.clause, r.text) not in seen)
    decision.flow = flow.name
    decision.facts_sha256 = flow.facts_sha256
    return decision


def _guidance_notes(parts: list[_Part], decision: Decision) -> list[Reason]:
    """Notes of guidance.yaml whose facts hold for some part, and a recipient named by a body that
    no longer existed at the disclosure date (or today)."""
    notes = []
    for rule in all_rules():
        if rule.kind != "note":
            continue
        if any(_all(part, cond)[0] is True for part in parts for cond in rule.when):
            notes.append(Reason(f"{rule.text} {_quote(rule.wording)}", rule.clause, kind="note"))
    part = parts[0]
    named = part.get("recipient.type")
    on = part.get("disclosure_date") or part.today or date.today()
    body = bodies.gone(named, on)
    explained = decision.holder is not None and decision.holder.named == named
    if body is not None and body.end is not None and not explained:
        when = "did not exist on the disclosure date" if part.get("disclosure_date") else "no longer exists"
        moved = f"; {body.moved}" if body.moved else ""
        text = (
            f"The flow names {body.name}, which {when}: it ended on {bodies.long_date(body.end)}{moved}. "
            "Name the body that receives the data now (a rule tied to a function gives the same answer "
            "under either name)."
        )
        notes.append(Reason(text, body.source or "002 NOTED EXCLUSIONS", kind="note"))
    return notes


def _combine(subs: list[tuple[_Part, Decision]]) -> Decision:
    applying = [(p, d) for p, d in subs if d.outcome == APPLIES]
    undecided = [(p, d) for p, d in subs if d.outcome == CANNOT_DECIDE]
    lifted = [(p, d) for p, d in subs if d.outcome == DOES_NOT_APPLY]
    head = Reason(
        f"The flow has {len(subs)} parts (each purpose under each legal basis). An opted-out person's "
        "entire record is removed, so the opt-out applies to the flow if it applies to any part.",
        "001 §8.1",
    )
    reasons = [head]
    if applying:
        seen = {(r.clause, r.text) for r in reasons}
        for part, d in applying:
            label = _part_label(part.purpose, part.basis)
            reasons.append(Reason(f"For {label}: the opt-out applies.", "001 §8.1"))
            for r in d.reasons:
                if (r.clause, r.text) not in seen:
                    seen.add((r.clause, r.text))
                    reasons.append(r)
        groups: dict[str, list[str]] = {}
        for part, d in lifted:
            why = f"exemption {d.exemption}" if d.exemption else (d.compliance or "")
            groups.setdefault(why, []).append(_part_label(part.purpose, part.basis))
        for why, labels in groups.items():
            reasons.append(
                Reason(
                    f"For {'; '.join(labels)} alone the opt-out would not apply ({why}), but the same "
                    "records are also disclosed for the part(s) above, so an opted-out person's whole "
                    "record is removed.",
                    "001 §8.1",
                    kind="near-miss",
                )
            )
        registry = any(
            p.purpose and vocabulary()["purposes"][p.purpose]["family"] == "registry" for p, _ in subs
        )
        if registry and any(d.compliance == "consent" for _, d in lifted):
            reasons.append(
                Reason(
                    "Consent to the audit function does not keep an opted-out person's audit data: 'none "
                    "of the child's data should be recorded in CRANE - this includes both registry and "
                    "audit data'.",
                    "000",
                )
            )
        return Decision(APPLIES, reasons, compliance="opt-out-applied", alternatives=list(ALTERNATIVES))
    if undecided:
        missing: list[str] = []
        seen = {(r.clause, r.text) for r in reasons}
        for part, d in undecided:
            reasons.append(
                Reason(
                    f"For {_part_label(part.purpose, part.basis)}: cannot decide yet.",
                    "001 §8.1",
                    kind="missing",
                )
            )
            for r in d.reasons:
                if (r.clause, r.text) not in seen:
                    seen.add((r.clause, r.text))
                    reasons.append(r)
            missing.extend(m for m in d.missing if m not in missing)
        return Decision(CANNOT_DECIDE, reasons, missing=_in_schema_order(missing))
    seen = {(r.clause, r.text) for r in reasons}
    for part, d in lifted:
        reasons.append(
            Reason(f"For {_part_label(part.purpose, part.basis)}: the opt-out does not apply.", "001 §8.1")
        )
        for r in d.reasons:
            if (r.clause, r.text) not in seen:
                seen.add((r.clause, r.text))
                reasons.append(r)
    first = lifted[0][1]
    compliances = list(dict.fromkeys(d.compliance for _, d in lifted if d.compliance))
    return Decision(
        DOES_NOT_APPLY,
        reasons,
        exemption=first.exemption,
        compliance=compliances[0] if len(compliances) == 1 else "+".join(compliances),
        holder=next((d.holder for _, d in lifted if d.holder is not None), None),
    )

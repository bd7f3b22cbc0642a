"""Does the national data opt-out apply to this flow?

    flow = load_flow("examples/flows/research-s251.yaml")   # the facts (InputError when wrong)
    decision = assess(flow)                                  # or assess({...}) with a mapping
    decision.outcome     # "applies" | "does-not-apply" | "cannot-decide"
    decision.reasons     # the chain of reasons, each citing its clause ("002 DIRECT CARE", "001 §8.3")
    decision.missing     # the facts needed, when it cannot decide (never a guess)
    decision.exemption   # the exemptions.yaml id that lifts it, if any
    decision.compliance  # how the flow complies: opt-out-applied | consent | anonymised | exempt | ...

The rules follow the policy texts: 002 (scope, direct care, processors, internal activities,
NOTED EXCLUSIONS), 003 (adult social care), 001 §8 (whole-record removal, NHS number, timing,
onward sharing) and 000 (registries); and the policy as published today: chapters 4-7 of the
operational policy guidance and the pages beside it (``guidance.yaml``, each rule with its page and
section), with the bodies that hold an exemption over time (``bodies.yaml``: PHE, NHS Digital and
CCGs and their successors). The exemptions are data (``exemptions.yaml``), as are the words a flow
file may use (``vocabulary.yaml``). ``decision.rules_version`` and ``decision.sources`` say which
rules and documents decided; :func:`optout.policy.register.reassess_all` lists registered flows
the current rules would answer differently.
"""

from __future__ import annotations

from optout.policy.flow import FACT_SPECS, FACTS, Flow, load_flow, parse_flow_text, vocabulary
from optout.policy.rules import (
    APPLIES,
    CANNOT_DECIDE,
    COMPLIANCE,
    DOES_NOT_APPLY,
    OUTCOMES,
    RULES_VERSION,
    Decision,
    Exemption,
    Reason,
    assess,
    exemptions,
    guidance_rules,
)
from optout.policy.sources import rules_version

__all__ = [
    "APPLIES",
    "CANNOT_DECIDE",
    "COMPLIANCE",
    "DOES_NOT_APPLY",
    "FACTS",
    "FACT_SPECS",
    "OUTCOMES",
    "RULES_VERSION",
    "Decision",
    "Exemption",
    "Flow",
    "Reason",
    "assess",
    "exemptions",
    "guidance_rules",
    "load_flow",
    "parse_flow_text",
    "rules_version",
    "vocabulary",
]

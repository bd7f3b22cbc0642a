"""A data flow described by its facts (not by its answer), read from a small YAML file.

A flow file says where the data comes from, what it is, why it goes, on what legal basis and to
whom. :func:`load_flow` reads one and :meth:`Flow.from_mapping` checks any mapping the same way:
unknown keys and misspelt values are an :class:`~optout.errors.InputError` naming the file and
line, with a "did you mean" and the list of valid values; contradictory facts are an InputError
naming both facts and the clause that makes them contradictory. A fact that is left out, or
written ``unknown``, is *unknown*: the decision then says which facts it needs instead of guessing.

The words a flow may use live in ``vocabulary.yaml`` beside this module (data, not code).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from optout.errors import InputError, Location
from optout.policy import bodies
from optout.policy.sources import clause_location
from optout.text import guard_free_text

FLOW_FORMAT = "optout-flow/1"


def policy_file(clause: str) -> str:
    """Where a clause is: the policy text (``"002 NOTED EXCLUSIONS"`` -> ``002_....txt``) or the page
    of the operational policy guidance or another public source (``"OPG §7.1"`` -> its address)."""
    return clause_location(clause)


@cache
def vocabulary() -> dict[str, Any]:
    """The allowed words (``vocabulary.yaml``), loaded once."""
    text = resources.files("optout.policy").joinpath("vocabulary.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


# --- the schema of a flow file --------------------------------------------------------------------


@dataclass(frozen=True)
class FactSpec:
    """One key of a flow file: its kind, allowed values and the question it answers."""

    path: str
    kind: str  # text | date | bool | enum | enum-list (one value or a list) | text-list
    question: str
    values_from: str | None = None  # section of vocabulary.yaml holding the allowed values
    example: str = ""
    # What the rules read when the fact is left out (None: it is unknown, and a rule that needs it
    # cannot decide). Set only where the policy says what not knowing means, e.g. an s251 letter
    # exempting the flow must have been seen: not having seen one is "no" (OPG §5.1).
    absent: Any = None

    @property
    def values(self) -> tuple[str, ...]:
        if self.values_from is None:
            return ()
        return tuple(vocabulary()[self.values_from])


GROUPS = ("origin", "data", "recipient", "s251", "screening", "invoice_validation", "onward_sharing")

FACTS: tuple[FactSpec, ...] = (
    FactSpec("format", "text", f'the flow file format; "{FLOW_FORMAT}" (optional)'),
    FactSpec("name", "text", "a short name for the flow", example="Diabetes audit across the PCN"),
    FactSpec("description", "text", "what the flow is, in a sentence or two"),
    FactSpec("owner", "text", "who is accountable for the flow (a role or a person)"),
    FactSpec("review_date", "date", "when the decision should be reviewed (YYYY-MM-DD)"),
    FactSpec(
        "disclosure_date",
        "date",
        "When is (or was) the data disclosed? For a regular flow, the next disclosure (YYYY-MM-DD). "
        "It names the body that held an exemption at that date; it never changes the answer.",
        example="2026-04-01",
    ),
    FactSpec(
        "origin.sector",
        "enum",
        "Does the data come from health care or adult social care? (002 SCOPE; 003)",
        "sectors",
    ),
    FactSpec(
        "origin.country",
        "enum",
        "In which country does the data originate? (002 SCOPE: England only)",
        "countries",
    ),
    FactSpec(
        "origin.funding",
        "enum",
        "Is the care publicly funded or under contract with a public body? (002 SCOPE; 003)",
        "funding",
    ),
    FactSpec("origin.organisation", "text", "the organisation the data comes from"),
    FactSpec(
        "data.confidentiality",
        "enum",
        "Is the data confidential patient information, or anonymised in line with the ICO code? "
        "(002 SCOPE; 001 §8.1)",
        "confidentiality",
    ),
    FactSpec(
        "data.identifiers",
        "enum-list",
        "Which identifiers does the data carry? (used to check an 'anonymised' claim; 001 §8.1, §8.2)",
        "identifiers",
    ),
    FactSpec(
        "data.nhs_number",
        "enum",
        "Does every record carry its NHS number? (001 §8.2)",
        "nhs_number",
    ),
    FactSpec(
        "data.tracing_effort",
        "enum",
        "If NHS numbers are missing: is obtaining them disproportionate? (001 §8.2)",
        "tracing_effort",
    ),
    FactSpec(
        "purpose",
        "enum-list",
        "What is the data used for? List every purpose. "
        "(002 DIRECT CARE / NOT DIRECT CARE / NOTED EXCLUSIONS)",
        "purposes",
    ),
    FactSpec(
        "legal_basis",
        "enum-list",
        "On what legal basis is the data shared? List one per part of the record. (002 NOTED EXCLUSIONS)",
        "legal_bases",
    ),
    FactSpec(
        "approvals",
        "text-list",
        "Which approval references does the flow run under (CAG/PIAG/ECC numbers)? Leave out when none.",
        example="PIAG 03(a)/2001",
    ),
    FactSpec(
        "s251.opt_out_exception",
        "bool",
        "Does the flow's s251 approval letter, or CAG's published minutes, clearly say that the "
        "national data opt-out does not apply to this flow? Answer true only if you have seen it in "
        "writing; left out, it counts as no. (OPG §5.1)",
        absent=False,
    ),
    FactSpec("recipient.name", "text", "who receives the data"),
    FactSpec(
        "recipient.type",
        "enum",
        "What kind of organisation receives the data? Today's name or the one it had: PHE and NHS Digital "
        "(002 NOTED EXCLUSIONS) are now UKHSA and NHS England, CCGs are ICBs.",
        "recipient_types",
    ),
    FactSpec(
        "recipient.role",
        "enum",
        "Is the use internal, by a processor acting on your instructions, or a disclosure to a third "
        "party? (002 DISCLOSURES TO PROVIDERS / SUPPLIERS; INTERNAL ACTIVITIES)",
        "recipient_roles",
    ),
    FactSpec(
        "recipient.legitimate_relationship",
        "bool",
        "Do the people using the data have a legitimate (care) relationship with the patients? "
        "(002 DIRECT CARE)",
    ),
    FactSpec(
        "professional_oversight",
        "bool",
        "Is the activity done by, or under the oversight of, registered and regulated health or social "
        "care professionals? (002 DIRECT CARE)",
    ),
    FactSpec(
        "across_organisations",
        "bool",
        "Does the activity run across organisations (e.g. across the PCN)? (002 DIRECT CARE, Local Audit)",
    ),
    FactSpec(
        "reasonably_expected",
        "bool",
        "Would patients know about or reasonably expect this internal use? Patients generally expect "
        "routine internal evaluations of the safety and efficacy of care. (002 INTERNAL ACTIVITIES)",
    ),
    FactSpec(
        "screening.nsc_endorsed",
        "bool",
        "Is the screening programme endorsed by the UK National Screening Committee? (002 NOTED EXCLUSIONS)",
    ),
    FactSpec("screening.programme", "text", "the screening programme's name"),
    FactSpec(
        "survey",
        "enum",
        "Which patient survey is it? (002 NOTED EXCLUSIONS: CPES, CQC NHS Patient Survey Programme)",
        "surveys",
    ),
    FactSpec(
        "invoice_validation.contracted",
        "bool",
        "Is the invoiced activity covered by a contract agreed with the patient's responsible "
        "commissioner? Non-contracted activity is care given without one, e.g. treatment outside the "
        "area of the ICB where the patient is registered. (OPG §7.1)",
    ),
    FactSpec(
        "onward_sharing.planned",
        "bool",
        "Will the recipient share the data onward (e.g. for linkage with HES)? (001 §8.3)",
    ),
    FactSpec(
        "onward_sharing.is_onward",
        "bool",
        "Is this flow itself an onward disclosure of data received earlier? (001 §8.3)",
    ),
    FactSpec(
        "onward_sharing.covered_by_approval",
        "bool",
        "Does the specific S.251 approval cover the onward sharing? (001 §8.3)",
    ),
    FactSpec(
        "onward_sharing.agreement_requires_reapply",
        "bool",
        "Does the data sharing agreement require the up-to-date opt-out before onward sharing? (001 §8.3)",
    ),
)

FACT_SPECS: dict[str, FactSpec] = {spec.path: spec for spec in FACTS}
LIST_FACTS = frozenset(spec.path for spec in FACTS if spec.kind in ("enum-list", "text-list"))
UNKNOWN_WORDS = frozenset({"unknown", "not known", "?", "tbc", "don't know"})

# Common ways of writing a value that mean one of ours (checked after normalising).
ALIASES: dict[str, dict[str, str]] = {
    "legal_basis": {
        "section-251": "s251",
        "s.251": "s251",
        "s-251": "s251",
        "cag": "s251",
        "cag-approval": "s251",
        "consent": "explicit-consent",  # only explicit consent is a basis beyond direct care
        "public-interest": "overriding-public-interest",
        "law": "legal-requirement",
        "required-by-law": "legal-requirement",
        "statutory": "legal-requirement",
        "s259": "s259-direction",
        "s.259": "s259-direction",
        "direction": "s259-direction",
        "regulation-3": "copi-regulation-3",
        "reg-3": "copi-regulation-3",
        "copi-reg-3": "copi-regulation-3",
        "reg-18a": "regulation-18a",
        "18a": "regulation-18a",
    },
    "recipient.type": {
        "office-for-national-statistics": "ons",
        "phe": "public-health-england",
        "nhsd": "nhs-digital",
        "hscic": "nhs-digital",
        "dscro": "nhs-digital",
        "nhse": "nhs-england",
        "ndrs": "nhs-england",
        "ukhsa": "uk-health-security-agency",
        "nhsbsa": "nhs-business-services-authority",
        "nhs-bsa": "nhs-business-services-authority",
        "icb": "integrated-care-board",
        "ccg": "clinical-commissioning-group",
        "la": "local-authority",
        "council": "local-authority",
    },
    "origin.country": {"uk-england": "england", "eng": "england"},
    "origin.sector": {"social-care": "adult-social-care", "asc": "adult-social-care", "nhs": "health"},
    "recipient.role": {"controller": "third-party", "data-processor": "processor"},
    "data.confidentiality": {
        "anonymized": "anonymised",
        "pseudonymized": "pseudonymised",
        "identifiable": "confidential",
    },
    "purpose": {
        "direct": "direct-care",
        "audit": "local-audit",
        "phm": "population-health-management",
        "iv": "invoice-validation",
    },
}


def _norm(word: str) -> str:
    return re.sub(r"[\s_]+", "-", word.strip().lower())


def normalise_approval(ref: str) -> str:
    """Approval references compare without spaces or case: 002 writes 'CAG 10- 02(d)/2015'."""
    return re.sub(r"\s+", "", ref).upper()


# --- the flow -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """A data flow's facts. Unknown facts are absent (``get`` returns None).

    ``facts`` maps dotted paths (``"recipient.role"``) to values: ``str``, ``bool``, ``date``
    (review_date) or a tuple of ``str`` for list facts (``purpose``, ``legal_basis``,
    ``approvals``, ``data.identifiers``).
    """

    facts: Mapping[str, Any]
    source: str | None = field(default=None, compare=False)

    # -- construction
    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        source: str | Path | None = None,
        lines: Mapping[str, int] | None = None,
    ) -> Flow:
        """Validate a nested mapping (as read from YAML) into a Flow; InputError when it is wrong."""
        src = str(source) if source is not None else None
        if not isinstance(data, Mapping):
            raise InputError(
                "A flow must be a mapping of keys to facts",
                where=Location(file=src, value_class=type(data).__name__),
                hint="Start from an example flow file and fill in its keys (docs/reference/flow-files.md).",
            )
        flat: dict[str, Any] = {}
        _flatten(data, "", flat, src, lines or {})
        facts: dict[str, Any] = {}
        for path, value in flat.items():
            parsed = _parse_value(FACT_SPECS[path], value, src, (lines or {}).get(path))
            if parsed is not None:
                facts[path] = parsed
        fmt = facts.get("format")
        if fmt is not None and fmt != FLOW_FORMAT:
            raise InputError(
                f"This flow file is in format '{fmt}', which this version does not read",
                where=Location(file=src, line=(lines or {}).get("format"), column="format"),
                hint=f"Write format: {FLOW_FORMAT} (or leave the key out).",
            )
        if "name" not in facts and src is not None:  # Flow.name falls back on the file's name
            guard_free_text(
                "the flow's name (taken from the file name, as the file has no 'name')", Path(src).stem
            )
        flow = cls(facts=facts, source=src)
        _check_contradictions(flow, src, lines or {})
        return flow

    # -- access
    def get(self, path: str) -> Any:
        if path not in FACT_SPECS:
            raise KeyError(path)
        return self.facts.get(path)

    @property
    def name(self) -> str:
        return str(self.facts.get("name") or (Path(self.source).stem if self.source else "unnamed flow"))

    @property
    def purposes(self) -> tuple[str, ...]:
        return tuple(self.facts.get("purpose") or ())

    @property
    def legal_bases(self) -> tuple[str, ...]:
        return tuple(self.facts.get("legal_basis") or ())

    @property
    def approvals(self) -> tuple[str, ...]:
        return tuple(self.facts.get("approvals") or ())

    def to_dict(self) -> dict[str, Any]:
        """The facts as a nested mapping (JSON-safe), the shape of the flow file."""
        out: dict[str, Any] = {}
        for spec in FACTS:  # schema order, so the output is stable
            if spec.path not in self.facts:
                continue
            value = self.facts[spec.path]
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, date):
                value = value.isoformat()
            node = out
            *parents, leaf = spec.path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return out

    @property
    def facts_sha256(self) -> str:
        """SHA-256 of the canonical JSON of the facts: changes exactly when a fact changes."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_flow(path: str | Path) -> Flow:
    """Read and validate a flow file (YAML). InputError (exit 3) names the file, line and fix."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            "The flow file does not exist",
            where=Location(file=p),
            hint="Check the path; example flow files are in examples/flows/.",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"The flow file cannot be read ({exc.__class__.__name__})",
            where=Location(file=p),
            hint="Save the flow file as UTF-8 text and check its permissions.",
        ) from None
    return parse_flow_text(text, source=p)


def parse_flow_text(text: str, *, source: str | Path | None = None) -> Flow:
    """Validate the text of a flow file (YAML)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise InputError(
            f"The flow file is not valid YAML: {exc.problem}",
            where=Location(file=source, line=(mark.line + 1) if mark else None),
            hint="Write one 'key: value' per line, indent nested keys by two spaces, and quote values "
            "that contain ':' or '#'.",
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(
            f"The flow file is not valid YAML ({exc.__class__.__name__})",
            where=Location(file=source),
            hint="Write one 'key: value' per line, indent nested keys by two spaces.",
        ) from None
    if data is None:
        raise InputError(
            "The flow file is empty",
            where=Location(file=source),
            hint="Describe the flow's facts; start from an example in examples/flows/.",
        )
    lines: dict[str, int] = {}
    if node is not None:
        _key_lines(node, "", lines)
    return Flow.from_mapping(data, source=source, lines=lines)


# --- validation helpers --------------------------------------------------------------------------


def _key_lines(node: yaml.Node, prefix: str, out: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}{key}"
            out[path] = key_node.start_mark.line + 1
            _key_lines(value_node, f"{path}.", out)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=3, cutoff=0.6)
    if not close:  # also try matching on the normalised form and on word parts
        close = difflib.get_close_matches(_norm(word), choices, n=3, cutoff=0.5)
    if not close:
        close = [c for c in choices if _norm(word) and (_norm(word) in c or c in _norm(word))][:3]
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def _flatten(
    data: Mapping[str, Any], prefix: str, out: dict[str, Any], src: str | None, lines: Mapping[str, int]
) -> None:
    for raw_key, value in data.items():
        key = str(raw_key)
        path = f"{prefix}{key}"
        if not prefix and key in GROUPS:
            if value is None:
                continue
            if not isinstance(value, Mapping):
                children = sorted(p.split(".", 1)[1] for p in FACT_SPECS if p.startswith(f"{key}."))
                raise InputError(
                    f"'{key}' must be a group of keys, not a single value",
                    where=Location(file=src, line=lines.get(path), column=key),
                    hint=f"Write its keys indented under it: {', '.join(children)}.",
                )
            _flatten(value, f"{key}.", out, src, lines)
            continue
        if path not in FACT_SPECS:
            guard_free_text("a key of the flow file", path, where=Location(file=src, line=lines.get(path)))
            n = len(prefix)
            here = [p[n:] for p in FACT_SPECS if p.startswith(prefix) and "." not in p[n:]]
            if not prefix:
                here += list(GROUPS)
            # a key written at the wrong level ("role" at the top instead of under recipient)
            elsewhere = [p for p in FACT_SPECS if p.rsplit(".", 1)[-1] == key and p != path]
            hint = _did_you_mean(key, here)
            if elsewhere:
                group = elsewhere[0].split(".")[0]
                hint = f"'{key}' belongs at '{elsewhere[0]}' (indent it under '{group}'). "
            raise InputError(
                f"Unknown key '{path}' in the flow file",
                where=Location(file=src, line=lines.get(path), column=path),
                hint=f"{hint}Valid keys{' under ' + prefix[:-1] if prefix else ''}: "
                f"{', '.join(sorted(here))}.",
            )
        out[path] = value


def _is_unknown(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in UNKNOWN_WORDS)


def _parse_value(spec: FactSpec, value: Any, src: str | None, line: int | None) -> Any:
    where = Location(file=src, line=line, column=spec.path)
    if _is_unknown(value):
        return None
    if spec.kind == "text":
        if isinstance(value, (bool, list, dict)):
            raise InputError(
                f"'{spec.path}' must be text",
                where=where,
                hint=f"Write {spec.path}: followed by the text ({spec.question}).",
            )
        return guard_free_text(f"'{spec.path}'", str(value).strip(), where=where)
    if spec.kind == "date":
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            raise InputError(
                f"'{spec.path}' must be a date",
                where=Location(file=src, line=line, column=spec.path, value_class="not a YYYY-MM-DD date"),
                hint=f"Write it as YYYY-MM-DD, e.g. {spec.path}: 2027-03-31.",
            ) from None
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        raise InputError(
            f"'{spec.path}' must be true, false or unknown",
            where=Location(file=src, line=line, column=spec.path, value_class=type(value).__name__),
            hint=f"Answer the question with true, false or unknown: {spec.question}",
        )
    if spec.kind == "text-list":
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            if isinstance(item, (list, dict, bool)) or _is_unknown(item):
                raise InputError(
                    f"'{spec.path}' must be a list of references",
                    where=where,
                    hint=f'Write one reference per line, e.g.\n    {spec.path}:\n      - "{spec.example}"',
                )
            out.append(guard_free_text(f"'{spec.path}'", str(item).strip(), where=where))
        return tuple(out)
    # enum and enum-list
    items = value if isinstance(value, list) else [value]
    if spec.kind == "enum" and isinstance(value, list):
        raise InputError(
            f"'{spec.path}' takes one value, not a list",
            where=where,
            hint=f"Choose one of: {', '.join(spec.values)}.",
        )
    if not items:
        raise InputError(
            f"'{spec.path}' is an empty list",
            where=where,
            hint=f"List at least one of: {', '.join(spec.values)}; or leave the key out if it is unknown.",
        )
    values: list[str] = []
    for item in items:
        values.append(_enum_value(spec, item, where))
    if spec.kind == "enum":
        return values[0]
    return tuple(dict.fromkeys(values))  # keep order, drop repeats


def _enum_value(spec: FactSpec, item: Any, where: Location) -> str:
    allowed = spec.values
    if isinstance(item, bool):  # YAML 1.1 reads yes/no/on/off as booleans
        word = "yes" if item else "no"
    elif isinstance(item, (list, dict)) or item is None:
        raise InputError(
            f"'{spec.path}' has a value that is not a word",
            where=where,
            hint=f"Choose from: {', '.join(allowed)}.",
        )
    else:
        word = str(item)
    norm = _norm(word)
    if norm in allowed:
        return norm
    alias = ALIASES.get(spec.path, {}).get(norm)
    if alias is not None:
        return alias
    guard_free_text(f"'{spec.path}'", word, where=where)  # the error below quotes the word
    raise InputError(
        f"'{word}' is not a valid value for '{spec.path}'",
        where=where,
        hint=f"{_did_you_mean(norm, allowed)}Valid values: {', '.join(allowed)}.",
    )


def direct_identifiers(identifiers: Iterable[str]) -> list[str]:
    table = vocabulary()["identifiers"]
    return [i for i in identifiers if table.get(i, {}).get("direct")]


def _check_contradictions(flow: Flow, src: str | None, lines: Mapping[str, int]) -> None:
    """Facts that cannot all be true: refuse them, naming both and the clause (never guess which)."""

    def fail(a: str, b: str, message: str, hint: str) -> None:
        where = Location(file=src, line=lines.get(a) or lines.get(b), column=f"{a} / {b}")
        raise InputError(f"Contradictory facts: {message}", where=where, hint=hint)

    conf = flow.get("data.confidentiality")
    idents = flow.get("data.identifiers") or ()
    direct = direct_identifiers(idents)
    if conf == "anonymised" and direct:
        fail(
            "data.confidentiality",
            "data.identifiers",
            f"the data is said to be anonymised but carries {', '.join(direct)}; data with direct "
            "identifiers is not anonymised in line with the ICO code (001 §8.1)",
            "Remove those identifiers from the data (and from data.identifiers), or set "
            "data.confidentiality: confidential (or pseudonymised).",
        )
    role = flow.get("recipient.role")
    across = flow.get("across_organisations")
    if role == "internal" and across is True:
        fail(
            "recipient.role",
            "across_organisations",
            "an internal use cannot run across organisations; sharing with another organisation "
            "(e.g. across the PCN) is a disclosure (002 DISCLOSURES TO PROVIDERS / SUPPLIERS)",
            "Set recipient.role: third-party (or processor), or across_organisations: false.",
        )
    if role == "third-party" and across is False:
        fail(
            "recipient.role",
            "across_organisations",
            "a third party is another organisation, so the flow crosses organisations",
            "Set across_organisations: true, or recipient.role: internal / processor if that is what it is.",
        )
    purposes = flow.purposes
    if "direct-care" in purposes and flow.get("recipient.legitimate_relationship") is False:
        fail(
            "purpose",
            "recipient.legitimate_relationship",
            "direct care is care given by professionals with whom the patient has a legitimate "
            "relationship (002 DIRECT CARE); a recipient without one is not giving direct care",
            "Set purpose to what the recipient actually does with the data (e.g. research, planning), "
            "or correct recipient.legitimate_relationship.",
        )
    bases = flow.legal_bases
    if "none" in bases and len(bases) > 1:
        fail(
            "legal_basis",
            "legal_basis",
            "'none' is listed together with a legal basis",
            "List the legal bases the flow has, or only 'none'.",
        )
    s259 = [b for b in bases if b in ("s259-direction", "mandatory-request")]
    rtype = flow.get("recipient.type")
    collectors = bodies.function("national-data-collection")
    if s259 and rtype is not None and rtype not in collectors.holders_ever:
        now = collectors.tenures[-1]
        fail(
            "legal_basis",
            "recipient.type",
            f"{s259[0]} is a collection under S.259 of the Health and Social Care Act 2012 (002 NOTED "
            f"EXCLUSIONS), made by {bodies.history(collectors)}; but the recipient is {rtype}",
            f"Set recipient.type: {now.body} (or {', '.join(collectors.holders_ever[:-1])}, its "
            "earlier name) if it collects the data, or choose the legal basis the flow really has.",
        )
    if conf == "anonymised" and flow.get("data.nhs_number") in ("present", "partly-missing"):
        fail(
            "data.confidentiality",
            "data.nhs_number",
            "the data is said to be anonymised but its records carry NHS numbers (001 §8.1)",
            "Remove data.nhs_number (anonymised data has none), or set data.confidentiality: confidential.",
        )

"""The register of data flows: what the organisation shares, why, and how each flow complies.

002 "PREPARING FOR COMPLIANCE" asks the organisation to list its activities and record, against
each, how it complies ("consent, anonymisation, NDO applied"). Each flow in the register holds
the flow file's facts, the decision of :func:`optout.policy.assess` on them (applies / does not
apply / cannot decide), how it complies (``compliance``: opt-out-applied, consent, anonymised,
exempt — with ``exemption`` naming which — ...) and a review date.

Every change makes a new version (``flow_versions``: the facts, the decision, who and when) and
an audit entry (``flow.added`` / ``flow.edited``). Nothing is updated in place without a trace:
``flows`` holds the current version, ``flow_versions`` all of them.

Each decision records the rules it was made under (``rules_version``: the human version and a
hash of the policy data, see :mod:`optout.policy.sources`). When the rules change (a new version
of the operational policy guidance, a successor body), :func:`reassess_all` assesses every
registered flow's facts again and says which would now get a different answer, and why
(``optout flow list --reassess``; the web dashboard calls the same function). Nothing is changed
by it: ``optout flow edit ID --reassess`` records the new decision as a new version.

A release made for a flow records the flow's version; if the flow changes afterwards, the
release no longer describes what was assessed and ``optout release disclose`` refuses it (see
:mod:`optout.release.lifecycle`).

The flow file is the policy engine's format (see ``optout assess --help`` and
docs/reference/flow-files.md). The register stores the facts as the policy engine read them
(``Flow.to_dict()``: aliases resolved,
schema order), so an edit with ``--set key=value`` (dotted keys: ``recipient.role=processor``)
is the stored facts with one key changed, validated and assessed again by the policy engine.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from optout import audit
from optout.errors import Location, NotFoundError, OptoutError, PolicyRefusal, UsageError
from optout.store import Store, flow_versions, flows
from optout.text import contains_nhs_number, guard_free_text, guard_nested, mask, mask_nested

__all__ = [
    "DEFAULT_REVIEW_DAYS",
    "FlowRecord",
    "FlowVersion",
    "Reassessment",
    "add_flow",
    "assess_record",
    "changed_keys",
    "changed_under_current_rules",
    "describe_reassessment",
    "edit_flow",
    "flow_for_release",
    "get_flow",
    "history",
    "list_flows",
    "parse_assignments",
    "reassess_all",
]

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
DEFAULT_REVIEW_DAYS = 365  # when the flow file names no review date: one year after the change


# --- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowVersion:
    flow_id: str
    version: int
    facts: dict[str, Any]
    decision: str | None
    facts_sha256: str | None
    changed_at: str
    changed_by: str | None
    rules_version: str | None = None  # the rules the decision was made under


@dataclass(frozen=True)
class FlowRecord:
    id: str
    name: str
    owner: str | None
    recipient: str | None
    purpose: str | None
    legal_basis: str | None
    facts: dict[str, Any]
    decision: str | None
    compliance: str | None
    exemption: str | None
    review_date: str | None
    version: int
    facts_sha256: str | None
    created_at: str
    updated_at: str
    rules_version: str | None = None  # the rules the stored decision was made under ("1": before 0003)

    def review_overdue(self, now: datetime | None = None) -> bool:
        if not self.review_date:
            return False
        today = (now or datetime.now(UTC)).date()
        try:
            return date.fromisoformat(self.review_date) < today
        except ValueError:
            return True  # an unreadable review date is treated as overdue: someone must look

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["review_overdue"] = self.review_overdue(now)
        return d


# --- helpers -----------------------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise UsageError("now= must be timezone-aware", hint="pass datetime(..., tzinfo=UTC)")
    return now.astimezone(UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")


def _sha256(doc: Mapping[str, Any]) -> str:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _jsonable(obj: Any) -> Any:
    """YAML may give dates; the register stores JSON."""
    return json.loads(json.dumps(obj, default=str))


def _actor(actor: str | None) -> str:
    if actor:
        return guard_free_text("the actor name", actor, error=UsageError)
    from optout.config import load_settings

    return load_settings().actor


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        for key in ("name", "organisation", "organization", "id"):
            if value.get(key):
                return str(value[key])
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _slugify(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:64].rstrip("-")


def _check_slug(flow_id: str, *, where: Location | None = None) -> str:
    guard_free_text(
        "the flow id", flow_id, error=UsageError, hint="choose an id without the number (--id ID)"
    )
    if not SLUG.match(flow_id):
        raise UsageError(
            f"flow id {flow_id!r} is not a valid id",
            where=where,
            hint="use 1-64 lower-case letters, digits and hyphens, starting with a letter or digit "
            "(e.g. --id cancer-registry-2025)",
        )
    return flow_id


# --- reading a flow file through the policy engine ---------------------------------------------


def _policy() -> Any:
    from optout import policy

    return policy


def _flow_from_mapping(doc: Mapping[str, Any], source: str) -> Any:
    """Validate a nested mapping of facts with the policy engine (InputError when wrong)."""
    from optout.policy import Flow

    return Flow.from_mapping(dict(doc), source=source)


def _load(source: str | Path | Mapping[str, Any] | Any, label: str) -> Any:
    """A validated Flow from a flow file, a mapping of facts, or a Flow."""
    if isinstance(source, (str, Path)):
        return _policy().load_flow(Path(source))
    if isinstance(source, Mapping):
        return _flow_from_mapping(source, label)
    return source  # already a Flow


def _facts(flow: Any) -> dict[str, Any]:
    doc = _jsonable(flow.to_dict())
    # from_mapping guards each text fact; this also covers a Flow built by hand (and its name)
    guard_nested({**doc, "name": flow.name}, "facts")
    return doc


def assess_record(record: FlowRecord) -> Any:
    """The policy engine's decision on a registered flow's facts, as the policy stands today."""
    return _policy().assess(_flow_from_mapping(record.facts, f"flow {record.id}"))


# --- reading the register ----------------------------------------------------------------------


def _record(row: Any) -> FlowRecord:
    # text is guarded where it enters; rows stored before that guard existed are read masked
    return FlowRecord(
        id=row.id,
        name=mask(row.name),
        owner=None if row.owner is None else mask(row.owner),
        recipient=None if row.recipient is None else mask(row.recipient),
        purpose=row.purpose,
        legal_basis=row.legal_basis,
        facts=mask_nested(dict(row.facts or {})),
        decision=row.decision,
        compliance=row.compliance,
        exemption=row.exemption,
        review_date=row.review_date,
        version=row.version,
        facts_sha256=row.facts_sha256,
        created_at=row.created_at,
        updated_at=row.updated_at,
        rules_version=row.rules_version,
    )


def list_flows(store: Store) -> list[FlowRecord]:
    with store.begin() as conn:
        rows = conn.execute(sa.select(flows).order_by(flows.c.id)).all()
    return [_record(r) for r in rows]


def _stored_facts(store: Store, flow_id: str) -> dict[str, Any]:
    """The facts as stored, unmasked (only to compare with; never returned to a caller)."""
    with store.begin() as conn:
        facts = conn.execute(sa.select(flows.c.facts).where(flows.c.id == flow_id)).scalar()
    return dict(facts or {})


def get_flow(store: Store, flow_id: str) -> FlowRecord:
    with store.begin() as conn:
        row = conn.execute(sa.select(flows).where(flows.c.id == flow_id)).first()
        if row is None:
            known = [r[0] for r in conn.execute(sa.select(flows.c.id)).all()]
    if row is None:
        close = difflib.get_close_matches(flow_id, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise NotFoundError(
            f"no flow with id {flow_id!r} in the register",
            hint=hint + "list the registered flows with `optout flow list`; register one with "
            "`optout flow add FLOW.yaml`",
        )
    return _record(row)


def history(store: Store, flow_id: str) -> list[FlowVersion]:
    get_flow(store, flow_id)
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(flow_versions)
            .where(flow_versions.c.flow_id == flow_id)
            .order_by(flow_versions.c.version)
        ).all()
    return [
        FlowVersion(
            r.flow_id,
            r.version,
            mask_nested(dict(r.facts or {})),
            r.decision,
            r.facts_sha256,
            r.changed_at,
            None if r.changed_by is None else mask(r.changed_by),
            r.rules_version,
        )
        for r in rows
    ]


def get_version(store: Store, flow_id: str, version: int) -> FlowVersion | None:
    for v in history(store, flow_id):
        if v.version == version:
            return v
    return None


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose value differs between two flow documents (values never shown)."""
    out: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += changed_keys(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out


# --- writing the register ----------------------------------------------------------------------


def _columns(flow: Any, decision: Any, now: datetime) -> dict[str, Any]:
    review = flow.get("review_date")
    if review is None:
        review_text = (now.date() + timedelta(days=DEFAULT_REVIEW_DAYS)).isoformat()
    else:
        review_text = review.isoformat() if isinstance(review, date) else str(review)[:10]
    return {
        "name": flow.name,
        "owner": _text(flow.get("owner")),
        "recipient": _text(flow.get("recipient.name")),
        "purpose": (_text(list(flow.purposes)) or "")[:64] or None,
        "legal_basis": (_text(list(flow.legal_bases)) or "")[:64] or None,
        "decision": getattr(decision, "outcome", None),
        "compliance": getattr(decision, "compliance", None),
        "exemption": getattr(decision, "exemption", None),
        "review_date": review_text,
        "rules_version": getattr(decision, "rules_version", None),
    }


def _audit_details(
    version: int, cols: Mapping[str, Any], decision: Any, sha: str, **extra: Any
) -> dict[str, Any]:
    reasons = getattr(decision, "reasons", None) or []
    return {
        "version": version,
        "decision": cols["decision"],
        "compliance": cols["compliance"],
        "exemption": cols["exemption"],
        "missing": list(getattr(decision, "missing", None) or []),
        "clauses": sorted({str(getattr(r, "clause", "")) for r in reasons if getattr(r, "clause", None)}),
        "recipient": cols["recipient"],
        "review_date": cols["review_date"],
        "facts_sha256": sha,
        "rules_version": cols["rules_version"],
        "sources": [str(src.get("location")) for src in getattr(decision, "sources", None) or []],
        **extra,
    }


def add_flow(
    store: Store,
    source: str | Path | Mapping[str, Any] | Any,
    *,
    flow_id: str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> tuple[FlowRecord, Any]:
    """Register a new flow from a flow file (or a mapping of facts, or a ``policy.Flow``).

    The id is ``flow_id``, else made from the file's name (``research-s251.yaml`` ->
    ``research-s251``) or, for a mapping, from the flow's name. Returns (record, decision).
    """
    t = _now(now)
    path = Path(source) if isinstance(source, (str, Path)) else None
    flow = _load(source, "flow (mapping)")
    if flow_id is None:
        flow_id = _slugify(path.stem) if path is not None else _slugify(flow.name)
        if not flow_id:
            raise UsageError(
                "the flow has no id",
                where=Location(file=path) if path else None,
                hint="give --id ID",
            )
    _check_slug(flow_id, where=Location(file=path) if path else None)
    decision = _policy().assess(flow)
    doc = _facts(flow)
    cols = _columns(flow, decision, t)
    sha = _sha256(doc)
    who = _actor(actor)
    stamp = _iso(t)
    try:
        with store.begin() as conn:
            conn.execute(
                flows.insert().values(
                    id=flow_id,
                    facts=doc,
                    version=1,
                    facts_sha256=sha,
                    created_at=stamp,
                    updated_at=stamp,
                    **cols,
                )
            )
            conn.execute(
                flow_versions.insert().values(
                    flow_id=flow_id,
                    version=1,
                    facts=doc,
                    decision=cols["decision"],
                    facts_sha256=sha,
                    changed_at=stamp,
                    changed_by=who,
                    rules_version=cols["rules_version"],
                )
            )
    except sa.exc.IntegrityError:
        raise UsageError(
            f"a flow with id {flow_id!r} is already registered",
            hint=f"change it with `optout flow edit {flow_id} FLOW.yaml`, or choose another --id",
        ) from None
    audit.record(
        store,
        "flow.added",
        actor=who,
        subject=flow_id,
        at=stamp,
        details=_audit_details(1, cols, decision, sha),
    )
    return get_flow(store, flow_id), decision


def parse_assignments(assignments: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``key=value`` (dotted keys for nested facts; values read as YAML scalars or lists)."""
    out = []
    for a in assignments:
        key, sep, raw = a.partition("=")
        key = key.strip()
        guard_free_text(
            f"--set {key}" if sep and key and not contains_nhs_number(key) else "--set", a, error=UsageError
        )
        if not sep or not key or any(not part for part in key.split(".")):
            raise UsageError(
                f"--set {a!r} is not key=value",
                hint="write --set purpose=research, --set recipient.role=processor or "
                "--set review_date=2026-04-01",
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        out.append((key.split("."), _jsonable(value)))
    return out


def _apply_assignments(doc: dict[str, Any], assignments: Sequence[tuple[list[str], Any]]) -> dict[str, Any]:
    new = json.loads(json.dumps(doc))
    for parts, value in assignments:
        target = new
        for p in parts[:-1]:
            nxt = target.get(p)
            if not isinstance(nxt, dict):
                nxt = {}
                target[p] = nxt
            target = nxt
        if value is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return new


def edit_flow(
    store: Store,
    flow_id: str,
    source: str | Path | Mapping[str, Any] | Any | None = None,
    *,
    set_values: Sequence[str] = (),
    reassess: bool = False,
    actor: str | None = None,
    now: datetime | None = None,
) -> tuple[FlowRecord, Any, list[str]]:
    """Change a registered flow: a new flow file and/or ``key=value`` changes.

    Returns (record, decision, changed keys). When neither the facts nor the decision changed,
    the record is returned as it was and no version or audit entry is made; when only the
    decision changed (the policy's data changed), a new version records the re-assessment.
    """
    if source is None and not set_values and not reassess:
        raise UsageError(
            "nothing to change",
            hint=f"give a flow file (`optout flow edit {flow_id} FLOW.yaml`), --set key=value, or "
            "--reassess (record the decision of the policy as it stands today)",
        )
    t = _now(now)
    current = get_flow(store, flow_id)
    assignments = parse_assignments(set_values)
    if any(parts[0] == "id" for parts, _v in assignments):
        raise UsageError(
            "a flow's id cannot be changed",
            hint="register the flow again under the new id with `optout flow add`",
        )
    base = _load(source, f"flow {flow_id}") if source is not None else None
    doc = _facts(base) if base is not None else dict(current.facts)
    if assignments:
        doc = _apply_assignments(doc, assignments)
        flow = _flow_from_mapping(doc, f"flow {flow_id} with --set")
    else:
        flow = base if base is not None else _flow_from_mapping(doc, f"flow {flow_id}")
    doc = _facts(flow)
    decision = _policy().assess(flow)
    cols = _columns(flow, decision, t)
    keys = changed_keys(_stored_facts(store, flow_id), doc)  # a masked old value counts as changed
    sha = _sha256(doc)
    same_decision = (cols["decision"], cols["compliance"], cols["exemption"], cols["rules_version"]) == (
        current.decision,
        current.compliance,
        current.exemption,
        current.rules_version,
    )
    if sha == current.facts_sha256:
        if same_decision:
            return current, decision, []
        keys = ["(re-assessed)"]
    who = _actor(actor)
    stamp = _iso(t)
    version = current.version + 1
    with store.begin() as conn:
        res = conn.execute(
            flows.update()
            .where(flows.c.id == flow_id, flows.c.version == current.version)
            .values(facts=doc, version=version, facts_sha256=sha, updated_at=stamp, **cols)
        )
        if res.rowcount != 1:
            raise OptoutError(
                f"flow {flow_id!r} was changed by someone else at the same time",
                hint=f"look at `optout flow show {flow_id}` and make your change again",
            )
        conn.execute(
            flow_versions.insert().values(
                flow_id=flow_id,
                version=version,
                facts=doc,
                decision=cols["decision"],
                facts_sha256=sha,
                changed_at=stamp,
                changed_by=who,
                rules_version=cols["rules_version"],
            )
        )
    audit.record(
        store,
        "flow.edited",
        actor=who,
        subject=flow_id,
        at=stamp,
        details=_audit_details(version, cols, decision, sha, changed=keys, previous_version=current.version),
    )
    return get_flow(store, flow_id), decision, keys


# --- the register under the current rules ------------------------------------------------------


@dataclass(frozen=True)
class Reassessment:
    """A registered flow's stored decision beside the decision of the current rules on its facts."""

    flow_id: str
    name: str
    version: int
    stored_decision: str | None
    stored_compliance: str | None
    stored_exemption: str | None
    stored_rules_version: str | None  # None: recorded before rules were versioned ("1")
    decision: str | None  # None when the stored facts cannot be read under the current rules
    compliance: str | None
    exemption: str | None
    rules_version: str
    reason: str  # why the answer is what it is now (or why it could not be assessed), with the clause
    clauses: tuple[str, ...] = ()
    holder: dict[str, Any] | None = None  # who holds the lifting exemption's function today
    error: str | None = None

    @property
    def changed(self) -> bool:
        """Would the current rules give this flow a different answer?"""
        return self.error is not None or (self.decision, self.compliance, self.exemption) != (
            self.stored_decision,
            self.stored_compliance,
            self.stored_exemption,
        )

    @property
    def older_rules(self) -> bool:
        """Was the stored decision made under other rules than the current ones?"""
        return (self.stored_rules_version or "1") != self.rules_version

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["clauses"] = list(self.clauses)
        d["changed"] = self.changed
        d["older_rules"] = self.older_rules
        return d


def _answer(decision: str | None, compliance: str | None, exemption: str | None) -> str:
    text = decision or "no decision"
    if compliance and compliance != "opt-out-applied":
        text += f" ({compliance}" + (f": {exemption}" if exemption else "") + ")"
    return text


def _decisive(decision: Any) -> tuple[str, tuple[str, ...]]:
    """The reason(s) that decide: the exemption that lifts the opt-out and who holds it, the near
    miss of an exemption that does not, or the facts still needed."""
    reasons = list(getattr(decision, "reasons", None) or [])
    outcome = getattr(decision, "outcome", None)
    picked: list[Any] = []
    if outcome == "does-not-apply":
        picked = [r for r in reasons if r.kind == "exemption"][:1]
        holder = getattr(decision, "holder", None)
        if holder is not None:
            picked += [r for r in reasons if r.text == holder.explain()][:1]
        if not picked:
            picked = [r for r in reasons if r.kind == "rule"][-1:]
    elif outcome == "applies":
        picked = [r for r in reasons if r.kind == "near-miss"][:1] or [
            r for r in reasons if r.kind == "rule"
        ][-1:]
    elif outcome == "cannot-decide":
        missing = ", ".join(getattr(decision, "missing", None) or [])
        return f"facts needed: {missing}", tuple(
            dict.fromkeys(r.clause for r in reasons if r.kind == "missing")
        )
    text = " ".join(f"[{r.clause}] {r.text}" for r in picked)
    return text, tuple(dict.fromkeys(r.clause for r in picked))


def reassess_all(store: Store, *, today: date | None = None) -> list[Reassessment]:
    """Assess every registered flow's stored facts with the current rules (nothing is written).

    One :class:`Reassessment` per flow, in id order: the stored answer and rules version, today's
    answer and rules version, and the reason for today's answer. ``changed`` says whether the
    answer differs (or the facts no longer read under the current vocabulary: ``error``). The web
    dashboard and ``optout flow list --reassess`` both use this; record a new answer with
    ``optout flow edit ID --reassess``.
    """
    policy = _policy()
    version = policy.rules_version()
    out = []
    for rec in list_flows(store):
        try:
            flow = _flow_from_mapping(rec.facts, f"flow {rec.id}")
            decision = policy.assess(flow, today=today) if today is not None else policy.assess(flow)
        except OptoutError as exc:  # the stored facts use words the current vocabulary lacks
            out.append(
                Reassessment(
                    rec.id,
                    rec.name,
                    rec.version,
                    rec.decision,
                    rec.compliance,
                    rec.exemption,
                    rec.rules_version,
                    None,
                    None,
                    None,
                    version,
                    reason="the stored facts cannot be read under the current rules: "
                    + mask(exc.message)
                    + (f" ({mask(exc.hint)})" if exc.hint else ""),
                    error=mask(exc.message),
                )
            )
            continue
        reason, clauses = _decisive(decision)
        holder = decision.holder.to_dict() if decision.holder is not None else None
        out.append(
            Reassessment(
                rec.id,
                rec.name,
                rec.version,
                rec.decision,
                rec.compliance,
                rec.exemption,
                rec.rules_version,
                decision.outcome,
                decision.compliance,
                decision.exemption,
                decision.rules_version,
                reason=mask(reason),
                clauses=clauses,
                holder=holder,
            )
        )
    return out


def changed_under_current_rules(store: Store, *, today: date | None = None) -> list[Reassessment]:
    """The registered flows whose stored answer differs from the current rules' answer."""
    return [r for r in reassess_all(store, today=today) if r.changed]


def describe_reassessment(r: Reassessment) -> str:
    """One paragraph for a person: what was recorded, what the rules say now, and why."""
    was = _answer(r.stored_decision, r.stored_compliance, r.stored_exemption)
    now = _answer(r.decision, r.compliance, r.exemption) if r.error is None else "cannot be assessed"
    return (
        f"{r.flow_id} (v{r.version}, {r.name}): recorded {was} under rules {r.stored_rules_version or '1'}; "
        f"under rules {r.rules_version}: {now}. Why: {r.reason}"
    )


# --- releases tied to a flow -------------------------------------------------------------------


def flow_for_release(store: Store, flow_id: str) -> FlowRecord:
    """The flow a new opt-out release (``optout apply --flow ID``) is made for, or a refusal.

    - ``applies``: the release goes ahead; it needs a cleaned list or cache (apply always does).
    - ``does-not-apply``: refused — the opt-out does not apply, so no opt-out release is needed;
      disclose the data under the flow's own basis (consent, anonymised, exempt, direct care).
      Applying opt-outs anyway is possible without ``--flow``.
    - ``cannot-decide``: refused until the missing facts are added to the flow.
    """
    rec = get_flow(store, flow_id)
    if rec.decision == "applies":
        return rec
    if rec.decision == "does-not-apply":
        how = rec.compliance or "not in scope"
        if rec.exemption:
            how += f" ({rec.exemption})"
        raise PolicyRefusal(
            f"flow {flow_id!r}: the national data opt-out does not apply ({how}), so it needs no "
            "opt-out release",
            hint=f"see why with `optout flow show {flow_id}`; if the facts are wrong, correct them with "
            f"`optout flow edit {flow_id}`; to remove opt-outs anyway, run `optout apply` without --flow",
        )
    missing: list[str] = []
    with contextlib.suppress(OptoutError):
        missing = list(getattr(assess_record(rec), "missing", None) or [])
    raise PolicyRefusal(
        f"flow {flow_id!r}: cannot yet decide whether the opt-out applies"
        + (f" (missing: {', '.join(missing)})" if missing else ""),
        hint=f"add the missing facts with `optout flow edit {flow_id} --set KEY=VALUE`, then apply again",
    )

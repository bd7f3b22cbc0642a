"""Does the opt-out apply? One question per page, then check your answers, then the register.

Pages (everyone signed in may assess; saving to the register needs the IG lead role):

    GET  /assess                         start page, the user's assessments in progress
    POST /assess                         start a new assessment
    GET|POST /assess/{d}/name            what the flow is called
    GET|POST /assess/{d}/q/{fact}        one question (a fact of the flow file), "I don't know" allowed
    GET|POST /assess/{d}/details         who receives the data, who owns the flow, review date
    GET  /assess/{d}/check               check your answers, and the decision with its clauses
    POST /assess/{d}/save                register (or, for a registered flow, edit) -> confirmation
    POST /assess/{d}/cancel              throw the draft away
    GET  /flows                          the register of data flows
    GET  /flows/{id}                     a flow: decision now, facts, versions
    GET  /flows/{id}/saved               confirmation after saving
    POST /flows/{id}/edit                change the answers (a draft from the registered facts)
    POST /flows/{id}/reassess            record the decision under the current rules

Which question comes next is the rules' business (:func:`optout.policy.questions.next_question`):
only facts that could change the decision are asked. Saving calls the register
(:func:`optout.policy.register.add_flow` / ``edit_flow``), exactly as ``optout flow add`` does.

API (bearer token): ``POST /api/assess`` (facts -> decision and the next question),
``GET /api/assess/questions/{fact}``, ``GET /api/flows``, ``GET /api/flows/{id}``,
``POST /api/flows`` and ``PUT /api/flows/{id}`` (IG lead), ``POST /api/flows/{id}/reassess``.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from optout.errors import InputError, NotFoundError, OptoutError, UsageError
from optout.policy import FACT_SPECS, FACTS
from optout.policy import register as flows
from optout.policy.questions import (
    ASKED_KINDS,
    Question,
    answers_to_mapping,
    assess_answers,
    flow_from_answers,
    mapping_to_answers,
    next_question,
    parse_answer,
    question,
)
from optout.text import guard_free_text, mask
from optout.web.accounts import User
from optout.web.deps import audit_actor, current_user, get_store, render, require_role
from optout.web.drafts import Draft
from optout.web.journeys import decision_view, drafts, form_error

router = APIRouter()

DRAFT_AGE = timedelta(days=7)  # an assessment nobody touched for a week is cleared away
DETAIL_FIELDS = (
    ("recipient.name", "recipient-name"),
    ("owner", "owner"),
    ("review_date", "review-date"),
)
MAX_TEXT = 500


# --------------------------------------------------------------------------- the draft


def _drafts(request: Request) -> Any:
    return drafts(request, "assessment")


def _load(request: Request, draft_id: str, user: User) -> Draft:
    return _drafts(request).load(draft_id, user.username)  # type: ignore[no-any-return]


def _answers(draft: Draft) -> dict[str, Any]:
    return dict(draft.data.get("answers") or {})


def _unknown(draft: Draft) -> list[str]:
    return list(draft.data.get("unknown") or [])


def _base(draft: Draft) -> str:
    return f"/assess/{draft.id}"


def _next_url(draft: Draft) -> str:
    answers = _answers(draft)
    if not answers.get("name"):
        return f"{_base(draft)}/name"
    q = next_question(answers, unknown=_unknown(draft))
    if q is not None:
        return f"{_base(draft)}/q/{q.path}"
    if not draft.data.get("details_done"):
        return f"{_base(draft)}/details"
    return f"{_base(draft)}/check"


def _back_url(draft: Draft, path: str | None) -> str:
    """The page before this one: the previous question asked, else the name page."""
    order = list(draft.data.get("order") or [])
    if path in order:
        order = order[: order.index(path)]
    return f"{_base(draft)}/q/{order[-1]}" if order else f"{_base(draft)}/name"


def _asked(draft: Draft) -> list[Question]:
    """Questions answered (or answered "I don't know"), in the flow file's order."""
    answers, unknown = _answers(draft), set(_unknown(draft))
    return [
        question(s.path) for s in FACTS if s.kind in ASKED_KINDS and (s.path in answers or s.path in unknown)
    ]


def _form_value(q: Question, value: Any) -> Any:
    """An answer as the form shows it ("yes"/"no" for booleans, one item a line for lists)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if q.kind == "text-list":
        return "\n".join(value or [])
    return value


def _gone(request: Request) -> Response:
    return render(
        request,
        "errors/error.html",
        {
            "heading": "This assessment is no longer available",
            "lines": ["It was saved, thrown away, or cleared after a week without changes."],
            "back_href": "/assess",
            "back_text": "Start a new assessment",
        },
        status_code=404,
    )


# --------------------------------------------------------------------------- start


@router.get("/assess", include_in_schema=False)
def start_page(request: Request, user: User = Depends(current_user)) -> Response:
    store = _drafts(request)
    store.sweep(DRAFT_AGE)
    mine = [
        {"id": d.id, "name": d.data.get("answers", {}).get("name") or "Unnamed flow", "updated": d.updated_at}
        for d in store.mine(user.username)
    ]
    return render(request, "assess/start.html", {"drafts": mine, "can_save": user.has_role("ig_lead")})


@router.post("/assess", include_in_schema=False)
def start(request: Request, user: User = Depends(current_user)) -> Response:
    draft = _drafts(request).create(user.username, {"answers": {}, "unknown": [], "order": []})
    return RedirectResponse(f"{_base(draft)}/name", status_code=303)


@router.get("/assess/{draft_id}", include_in_schema=False)
def resume(request: Request, draft_id: str, user: User = Depends(current_user)) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    return RedirectResponse(_next_url(draft), status_code=303)


@router.post("/assess/{draft_id}/cancel", include_in_schema=False)
def cancel(request: Request, draft_id: str, user: User = Depends(current_user)) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    flow_id = draft.data.get("flow_id")
    _drafts(request).delete(draft)
    return RedirectResponse(f"/flows/{flow_id}" if flow_id else "/assess", status_code=303)


# --------------------------------------------------------------------------- name


@router.get("/assess/{draft_id}/name", include_in_schema=False)
def name_page(request: Request, draft_id: str, user: User = Depends(current_user)) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    answers = _answers(draft)
    return render(
        request,
        "assess/name.html",
        {"draft": draft, "name": answers.get("name", ""), "description": answers.get("description", "")},
    )


@router.post("/assess/{draft_id}/name", include_in_schema=False)
async def name_submit(request: Request, draft_id: str, user: User = Depends(current_user)) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    form = await request.form()
    name = str(form.get("name") or "").strip()
    description = str(form.get("description") or "").strip()
    errors = []
    if not name:
        errors.append({"text": "Enter a name for the data flow", "href": "#name"})
    elif len(name) > 200:
        errors.append({"text": "The name must be 200 characters or fewer", "href": "#name"})
    if len(description) > MAX_TEXT * 4:
        errors.append({"text": "The description must be 2000 characters or fewer", "href": "#description"})
    try:
        guard_free_text("The name", name, error=UsageError)
        guard_free_text("The description", description, error=UsageError)
    except UsageError as exc:
        errors.extend(form_error(exc, "#name"))
    if errors:
        ctx = {"draft": draft, "name": mask(name), "description": mask(description), "errors": errors}
        return render(request, "assess/name.html", ctx, status_code=400)
    answers = _answers(draft)
    answers["name"] = name
    if description:
        answers["description"] = description
    else:
        answers.pop("description", None)
    draft.data["answers"] = answers
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


# --------------------------------------------------------------------------- one question


def _question_context(draft: Draft, q: Question, value: Any, unknown: bool) -> dict[str, Any]:
    answered = _answers(draft)
    n = len([p for p in draft.data.get("order") or [] if p != q.path]) + 1
    return {
        "draft": draft,
        "q": q,
        "value": _form_value(q, value),
        "unknown": unknown,
        "back": _back_url(draft, q.path),
        "number": n,
        "flow_name": answered.get("name", ""),
    }


def _known_question(path: str) -> Question | None:
    spec = FACT_SPECS.get(path)
    if spec is None or spec.kind not in ASKED_KINDS:
        return None
    return question(path)


@router.get("/assess/{draft_id}/q/{path}", include_in_schema=False)
def question_page(request: Request, draft_id: str, path: str, user: User = Depends(current_user)) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    q = _known_question(path)
    if q is None:
        return _gone(request)
    answers = _answers(draft)
    ctx = _question_context(draft, q, answers.get(path), path in _unknown(draft))
    return render(request, "assess/question.html", ctx)


@router.post("/assess/{draft_id}/q/{path}", include_in_schema=False)
async def question_submit(
    request: Request, draft_id: str, path: str, user: User = Depends(current_user)
) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    q = _known_question(path)
    if q is None:
        return _gone(request)
    form = await request.form()
    raw: Any = form.getlist("answer") if q.multiple else (form.get("answer") or "")
    answers, unknown = _answers(draft), set(_unknown(draft))
    try:
        value = parse_answer(path, raw)  # text lists: blank is none; else blank is "select an answer"
        trial = dict(answers)
        if value is None:
            trial.pop(path, None)
        else:
            trial[path] = value
        flow_from_answers(trial)  # the schema checks the value and any contradiction with others
    except OptoutError as exc:
        shown = [mask(x) for x in raw] if isinstance(raw, list) else mask(raw)
        ctx = _question_context(draft, q, shown or None, False)
        ctx["errors"] = form_error(exc, "#answer")
        if exc.hint and isinstance(exc, InputError) and "Contradictory" in exc.message:
            ctx["error_hint"] = exc.hint
        return render(request, "assess/question.html", ctx, status_code=400)
    if value is None:
        answers.pop(path, None)
        unknown.add(path)
    else:
        answers[path] = value
        unknown.discard(path)
    order = [p for p in draft.data.get("order") or [] if p != path] + [path]
    draft.data.update(answers=answers, unknown=sorted(unknown), order=order)
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


# --------------------------------------------------------------------------- details


@router.get("/assess/{draft_id}/details", include_in_schema=False)
def details_page(request: Request, draft_id: str, user: User = Depends(current_user)) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    answers = _answers(draft)
    values = {key: answers.get(key, "") for key, _ in DETAIL_FIELDS}
    order = draft.data.get("order") or []
    back = f"{_base(draft)}/q/{order[-1]}" if order else f"{_base(draft)}/name"
    return render(request, "assess/details.html", {"draft": draft, "values": values, "back": back})


@router.post("/assess/{draft_id}/details", include_in_schema=False)
async def details_submit(request: Request, draft_id: str, user: User = Depends(current_user)) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    form = await request.form()
    values = {key: str(form.get(field) or "").strip() for key, field in DETAIL_FIELDS}
    errors: list[dict[str, str]] = []
    for key, field in DETAIL_FIELDS:
        if len(values[key]) > MAX_TEXT:
            errors.append({"text": f"This must be {MAX_TEXT} characters or fewer", "href": f"#{field}"})
        try:
            guard_free_text("This answer", values[key], error=UsageError)
        except UsageError as exc:
            errors.extend(form_error(exc, f"#{field}"))
    if values["review_date"]:
        try:
            date.fromisoformat(values["review_date"])
        except ValueError:
            errors.append(
                {
                    "text": "Enter the review date as YYYY-MM-DD, for example 2027-03-31",
                    "href": "#review-date",
                }
            )
    if errors:
        shown = {k: mask(v) for k, v in values.items()}  # never echo an NHS number back
        ctx = {"draft": draft, "values": shown, "errors": errors, "back": f"{_base(draft)}/check"}
        return render(request, "assess/details.html", ctx, status_code=400)
    answers = _answers(draft)
    for key, _field in DETAIL_FIELDS:
        if values[key]:
            answers[key] = values[key]
        else:
            answers.pop(key, None)
    draft.data.update(answers=answers, details_done=True)
    _drafts(request).save(draft)
    return RedirectResponse(_next_url(draft), status_code=303)


# --------------------------------------------------------------------------- check your answers


def _check_context(draft: Draft, user: User) -> dict[str, Any]:
    answers = _answers(draft)
    decision = assess_answers(answers)
    rows = []
    for q in _asked(draft):
        rows.append(
            {
                "key": q.title,
                "value": q.label_of(answers.get(q.path)),
                "href": f"{_base(draft)}/q/{q.path}",
                "hidden": q.title.rstrip("?").lower(),
            }
        )
    details = [
        {"key": "Who receives the data", "value": answers.get("recipient.name") or "Not given"},
        {"key": "Who is accountable for the flow", "value": answers.get("owner") or "Not given"},
        {"key": "Review the decision by", "value": answers.get("review_date") or "One year after saving"},
    ]
    return {
        "draft": draft,
        "answers": answers,
        "rows": rows,
        "details": details,
        "decision": decision_view(decision, change_href=f"{_base(draft)}/q"),
        "can_save": user.has_role("ig_lead"),
        "editing": draft.data.get("flow_id"),
    }


@router.get("/assess/{draft_id}/check", include_in_schema=False)
def check_page(request: Request, draft_id: str, user: User = Depends(current_user)) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    if not _answers(draft).get("name"):
        return RedirectResponse(f"{_base(draft)}/name", status_code=303)
    return render(request, "assess/check.html", _check_context(draft, user))


def _register(store: Any, mapping: dict[str, Any], actor: str) -> tuple[Any, Any]:
    """Add a new flow under an id made from its name (``-2``, ``-3``... if taken)."""
    base = flows._slugify(str(mapping.get("name") or "")) or "flow"
    base = base[:56].rstrip("-") or "flow"
    for n in range(1, 50):
        flow_id = base if n == 1 else f"{base}-{n}"
        try:
            return flows.add_flow(store, mapping, flow_id=flow_id, actor=actor)
        except UsageError as exc:
            if "already registered" not in exc.message:
                raise
    raise UsageError("could not find a free id for this flow", hint="give the flow a different name")


@router.post("/assess/{draft_id}/save", include_in_schema=False)
def save(request: Request, draft_id: str, user: User = Depends(require_role("ig_lead"))) -> Response:
    try:
        draft = _load(request, draft_id, user)
    except NotFoundError:
        return _gone(request)
    store = get_store(request)
    mapping = answers_to_mapping(_answers(draft))
    flow_id = draft.data.get("flow_id")
    try:
        if flow_id:
            rec, _decision, changed = flows.edit_flow(store, flow_id, mapping, actor=audit_actor(user))
            draft.data["changed"] = changed
        else:
            rec, _decision = _register(store, mapping, audit_actor(user))
    except OptoutError as exc:
        ctx = _check_context(draft, user)
        ctx["errors"] = form_error(exc, "#save")
        return render(request, "assess/check.html", ctx, status_code=400)
    _drafts(request).delete(draft)
    return RedirectResponse(f"/flows/{rec.id}/saved", status_code=303)


# --------------------------------------------------------------------------- the register


def _flow_rows(store: Any) -> list[dict[str, Any]]:
    out = []
    for rec in flows.list_flows(store):
        out.append(
            {
                "id": rec.id,
                "name": rec.name,
                "decision": rec.decision or "cannot-decide",
                "compliance": rec.compliance,
                "review_date": rec.review_date,
                "review_overdue": rec.review_overdue(),
                "version": rec.version,
                "recipient": rec.recipient,
            }
        )
    return out


@router.get("/flows", include_in_schema=False)
def register_page(request: Request, user: User = Depends(current_user)) -> Response:
    rows = _flow_rows(get_store(request))
    return render(request, "assess/flows.html", {"flows": rows, "can_save": user.has_role("ig_lead")})


def _flow_context(request: Request, flow_id: str, user: User) -> dict[str, Any]:
    store = get_store(request)
    rec = flows.get_flow(store, flow_id)
    now = flows.assess_record(rec)
    answers = mapping_to_answers(rec.facts)
    rows = []
    for spec in FACTS:
        if spec.path in answers and spec.path not in ("name", "format"):
            value = answers[spec.path]
            label = question(spec.path).label_of(value) if spec.kind in ASKED_KINDS else str(value)
            title = question(spec.path).title if spec.kind in ASKED_KINDS else spec.question.capitalize()
            rows.append({"key": title, "value": label})
    history = [
        {"version": v.version, "decision": v.decision, "at": v.changed_at, "by": v.changed_by}
        for v in flows.history(store, flow_id)
    ]
    stale = (now.outcome, now.compliance, now.exemption, now.rules_version) != (
        rec.decision,
        rec.compliance,
        rec.exemption,
        rec.rules_version,
    )
    return {
        "flow": rec,
        "decision": decision_view(now),
        "rows": rows,
        "history": history,
        "stale": stale,
        "can_save": user.has_role("ig_lead"),
        "can_release": user.has_role("analyst", "ig_lead") and rec.decision == "applies",
    }


@router.get("/flows/{flow_id}", include_in_schema=False)
def flow_page(request: Request, flow_id: str, user: User = Depends(current_user)) -> Response:
    return render(request, "assess/flow.html", _flow_context(request, flow_id, user))


@router.get("/flows/{flow_id}/saved", include_in_schema=False)
def saved_page(request: Request, flow_id: str, user: User = Depends(current_user)) -> Response:
    return render(request, "assess/saved.html", _flow_context(request, flow_id, user))


@router.post("/flows/{flow_id}/edit", include_in_schema=False)
def edit(request: Request, flow_id: str, user: User = Depends(require_role("ig_lead"))) -> Response:
    rec = flows.get_flow(get_store(request), flow_id)
    answers = mapping_to_answers(rec.facts)
    order = [s.path for s in FACTS if s.kind in ASKED_KINDS and s.path in answers]
    # facts the rules would ask about that the register does not hold were not known: only a
    # question a change makes newly relevant is asked
    unknown: list[str] = []
    while (q := next_question(answers, unknown=unknown)) is not None:
        unknown.append(q.path)
    draft = _drafts(request).create(
        user.username,
        {
            "answers": answers,
            "unknown": unknown,
            "order": order,
            "flow_id": rec.id,
            "flow_version": rec.version,
            "details_done": True,
        },
    )
    return RedirectResponse(f"{_base(draft)}/check", status_code=303)


@router.post("/flows/{flow_id}/reassess", include_in_schema=False)
def reassess(request: Request, flow_id: str, user: User = Depends(require_role("ig_lead"))) -> Response:
    flows.edit_flow(get_store(request), flow_id, reassess=True, actor=audit_actor(user))
    return RedirectResponse(f"/flows/{flow_id}/saved", status_code=303)


# --------------------------------------------------------------------------- JSON API


def _facts_from_body(body: dict[str, Any]) -> dict[str, Any]:
    facts = body.get("facts")
    if not isinstance(facts, dict):
        raise UsageError(
            "send the flow's facts as an object under 'facts'", hint='{"facts": {"purpose": "research"}}'
        )
    if any("." in k for k in facts):  # flat answers ("recipient.role": ...) are accepted too
        return answers_to_mapping(facts)
    return facts


@router.post("/api/assess", tags=["assess"])
def api_assess(body: dict[str, Any] = Body(...), user: User = Depends(current_user)) -> dict[str, Any]:
    """Assess a flow's facts: the decision (with its clauses and missing facts) and the next
    question worth asking. ``unknown`` lists facts answered "I don't know"."""
    mapping = _facts_from_body(body)
    unknown = body.get("unknown") or []
    if not isinstance(unknown, list):
        raise UsageError("'unknown' must be a list of fact names", hint='"unknown": ["origin.funding"]')
    answers = mapping_to_answers(mapping)
    decision = assess_answers(answers)
    q = next_question(answers, unknown=[str(u) for u in unknown])
    return {"decision": decision.to_dict(), "next_question": q.to_dict() if q else None}


@router.get("/api/assess/questions/{path}", tags=["assess"])
def api_question(path: str, user: User = Depends(current_user)) -> dict[str, Any]:
    """One question: its words, hint, clause and the allowed answers (from the vocabulary)."""
    q = _known_question(path)
    if q is None:
        raise NotFoundError(f"no question for {path!r}", hint="ask about a fact of the flow file schema")
    return q.to_dict()


@router.get("/api/flows", tags=["flows"])
def api_flows(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    """The register of data flows."""
    return [rec.to_dict() for rec in flows.list_flows(get_store(request))]


@router.get("/api/flows/{flow_id}", tags=["flows"])
def api_flow(request: Request, flow_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
    """A registered flow, its decision under today's rules, and its versions."""
    store = get_store(request)
    rec = flows.get_flow(store, flow_id)
    return {
        "flow": rec.to_dict(),
        "decision_now": flows.assess_record(rec).to_dict(),
        "versions": [
            {
                "version": v.version,
                "decision": v.decision,
                "changed_at": v.changed_at,
                "changed_by": v.changed_by,
            }
            for v in flows.history(store, flow_id)
        ],
    }


@router.post("/api/flows", tags=["flows"], status_code=201)
def api_add_flow(
    request: Request, body: dict[str, Any] = Body(...), user: User = Depends(require_role("ig_lead"))
) -> JSONResponse:
    """Register a flow from its facts (``id`` optional: made from the name)."""
    mapping = _facts_from_body(body)
    store = get_store(request)
    flow_id = body.get("id")
    if flow_id:
        rec, decision = flows.add_flow(store, mapping, flow_id=str(flow_id), actor=audit_actor(user))
    else:
        rec, decision = _register(store, mapping, audit_actor(user))
    return JSONResponse({"flow": rec.to_dict(), "decision": decision.to_dict()}, status_code=201)


@router.put("/api/flows/{flow_id}", tags=["flows"])
def api_edit_flow(
    request: Request,
    flow_id: str,
    body: dict[str, Any] = Body(...),
    user: User = Depends(require_role("ig_lead")),
) -> dict[str, Any]:
    """Replace a registered flow's facts: a new version, assessed again."""
    rec, decision, changed = flows.edit_flow(
        get_store(request), flow_id, _facts_from_body(body), actor=audit_actor(user)
    )
    return {"flow": rec.to_dict(), "decision": decision.to_dict(), "changed": changed}


@router.post("/api/flows/{flow_id}/reassess", tags=["flows"])
def api_reassess(
    request: Request, flow_id: str, user: User = Depends(require_role("ig_lead"))
) -> dict[str, Any]:
    """Record the decision the current rules give (a new version only if it changed)."""
    rec, decision, changed = flows.edit_flow(
        get_store(request), flow_id, reassess=True, actor=audit_actor(user)
    )
    return {"flow": rec.to_dict(), "decision": decision.to_dict(), "changed": changed}

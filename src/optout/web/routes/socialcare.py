"""Adult social care (003): when the opt-out applies to a care provider and when it does not,
the standard wording to copy, and the provider's audit checklist.

    GET  /social-care                         what 003 says, the worked examples with today's answers
    GET  /social-care/examples/{id}           one example: its facts and the rules' decision
    POST /social-care/examples/{id}/register  add it to the register in one click (IG lead)
    GET  /social-care/wording                 privacy notice, consent form and contract wording
    GET  /social-care/wording.txt             the same, as plain text to download

The answer shown for each example is always the engine's (:func:`optout.policy.assess`), never
a stored one. The audit checklist is the ``social-care`` list of ``/checklist``.

API: ``GET /api/social-care/examples``, ``POST /api/social-care/examples/{id}/register``,
``GET /api/social-care/wording``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from optout.errors import UsageError
from optout.policy import FACTS, socialcare
from optout.policy import register as flows
from optout.policy.questions import ASKED_KINDS, mapping_to_answers, question
from optout.web.accounts import User
from optout.web.deps import audit_actor, current_user, get_store, render, require_role
from optout.web.journeys import decision_view, form_error

router = APIRouter()

# What 003 says about when the opt-out applies to a care provider, quoted (003 itself).
WHEN = (
    "From March 2022, all regulated social care providers in England will need to comply with the "
    "national data opt-out.",
    "It won’t affect how you share information with other organisations to manage someone’s care and "
    "it won’t apply if you have explicit consent to share information or if the information is "
    "appropriately anonymised.",
    "So, if someone has opted out of sharing their data and you do use confidential patient information "
    "for planning or research purposes, it will be important to comply.",
)


def _registered(request: Request) -> set[str]:
    return {rec.id for rec in flows.list_flows(get_store(request))}


def _facts_rows(example: socialcare.Example) -> list[dict[str, str]]:
    answers = mapping_to_answers(example.flow.to_dict())
    rows = []
    for spec in FACTS:
        if spec.path in answers and spec.path not in ("name", "format"):
            if spec.kind in ASKED_KINDS:
                q = question(spec.path)
                rows.append({"key": q.title, "value": q.label_of(answers[spec.path])})
            else:
                rows.append(
                    {"key": spec.question[:1].upper() + spec.question[1:], "value": str(answers[spec.path])}
                )
    return rows


@router.get("/social-care", include_in_schema=False)
def overview(request: Request, user: User = Depends(current_user)) -> Response:
    registered = _registered(request)
    items = []
    for ex in socialcare.examples():
        d = ex.decision()
        items.append(
            {
                "id": ex.id,
                "title": ex.title,
                "outcome": d.outcome,
                "why": ex.why,
                "quote": ex.quote,
                "registered": ex.id in registered,
            }
        )
    ctx = {"when": WHEN, "examples": items, "can_register": user.has_role("ig_lead")}
    return render(request, "socialcare/index.html", ctx)


def _example_page(request: Request, user: User, example_id: str, errors: Any = None) -> Response:
    ex = socialcare.example(example_id)
    ctx = {
        "example": ex,
        "decision": decision_view(ex.decision()),
        "rows": _facts_rows(ex),
        "registered": ex.id in _registered(request),
        "can_register": user.has_role("ig_lead"),
        "errors": errors or [],
    }
    return render(request, "socialcare/example.html", ctx, status_code=400 if errors else 200)


@router.get("/social-care/examples/{example_id}", include_in_schema=False)
def example_page(request: Request, example_id: str, user: User = Depends(current_user)) -> Response:
    return _example_page(request, user, example_id)


@router.post("/social-care/examples/{example_id}/register", include_in_schema=False)
def register_example(
    request: Request, example_id: str, user: User = Depends(require_role("ig_lead"))
) -> Response:
    try:
        rec, _decision = socialcare.register_example(get_store(request), example_id, actor=audit_actor(user))
    except UsageError as exc:
        return _example_page(request, user, example_id, errors=form_error(exc, "#register"))
    return RedirectResponse(f"/flows/{rec.id}/saved", status_code=303)


@router.get("/social-care/wording", include_in_schema=False)
def wording_page(request: Request, user: User = Depends(current_user)) -> Response:
    return render(request, "socialcare/wording.html", {"blocks": socialcare.wording()})


def _wording_text() -> str:
    parts = [
        "Standard wording for adult social care providers (national data opt-out)",
        "Generated by optout from the policy texts; fill in the [square brackets].",
        "",
    ]
    for b in socialcare.wording():
        parts += [f"== {b.use} ==", "", b.title, "", b.text, "", f"Based on: {', '.join(b.clauses)}", "", ""]
    return "\n".join(parts)


@router.get("/social-care/wording.txt", include_in_schema=False)
def wording_text(request: Request, user: User = Depends(current_user)) -> Response:
    return PlainTextResponse(
        _wording_text(),
        headers={"Content-Disposition": 'attachment; filename="opt-out-wording.txt"'},
    )


# --------------------------------------------------------------------------- JSON API


@router.get("/api/social-care/examples", tags=["social care"])
def api_examples(request: Request, user: User = Depends(current_user)) -> list[dict[str, Any]]:
    """The worked examples: each flow's facts and the rules' decision today."""
    return [
        {
            "id": ex.id,
            "title": ex.title,
            "why": ex.why,
            "quote": {"clause": ex.quote.clause, "text": ex.quote.quote},
            "facts": ex.flow.to_dict(),
            "decision": ex.decision().to_dict(),
        }
        for ex in socialcare.examples()
    ]


@router.post("/api/social-care/examples/{example_id}/register", tags=["social care"], status_code=201)
def api_register_example(
    request: Request, example_id: str, user: User = Depends(require_role("ig_lead"))
) -> JSONResponse:
    """Register a worked example as a data flow (its id is the example's)."""
    rec, decision = socialcare.register_example(get_store(request), example_id, actor=audit_actor(user))
    return JSONResponse({"flow": rec.to_dict(), "decision": decision.to_dict()}, status_code=201)


@router.get("/api/social-care/wording", tags=["social care"])
def api_wording(user: User = Depends(current_user)) -> list[dict[str, Any]]:
    """The standard wording blocks, with the clauses and the policy words each follows."""
    return [
        {
            "id": b.id,
            "use": b.use,
            "title": b.title,
            "text": b.text,
            "clauses": list(b.clauses),
            "follows": [{"clause": q.clause, "quote": q.quote} for q in b.follows],
        }
        for b in socialcare.wording()
    ]

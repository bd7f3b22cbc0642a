"""Does the opt-out apply? in the browser: one question per page, check your answers, the register.

The pages ask only what the rules say matters (``optout.policy.questions``), show the rules' own
decision with its clauses, and save through the register exactly as ``optout flow add`` does.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from tests.web.conftest import USERS, csrf, post_form

from optout import audit
from optout.policy import register as flows
from optout.policy.questions import next_question

RESEARCH = {
    "origin.sector": "health",
    "origin.country": "england",
    "origin.funding": "public",
    "data.confidentiality": "confidential",
    "purpose": ["research"],
    "legal_basis": ["s251"],
    "recipient.type": "university",
    "recipient.role": "third-party",
    "data.identifiers": ["nhs-number"],
    "data.nhs_number": "present",
}


def _answer(value: Any) -> Any:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return value


def walk(c: Any, persona: dict[str, Any], name: str = "Heart failure study") -> tuple[str, list[str]]:
    """Answer every question the pages ask ("I don't know" when the persona has no answer);
    returns the check-your-answers URL and the facts asked, in order."""
    r = post_form(c, "/assess", {}, page="/assess")
    assert r.status_code == 303
    url = r.headers["location"]
    assert url.endswith("/name")
    r = post_form(c, url, {"name": name})
    asked = []
    for _ in range(40):
        url = r.headers["location"]
        if "/q/" not in url:
            break
        path = url.rsplit("/q/", 1)[1]
        asked.append(path)
        page = c.get(url)
        assert page.status_code == 200
        value = persona.get(path, "" if path == "approvals" else "unknown")
        r = post_form(c, url, {"answer": _answer(value)})
        assert r.status_code == 303, r.text
    assert url.endswith("/details"), url
    r = post_form(c, url, {"recipient-name": "University of Exampleshire", "owner": "DPO", "review-date": ""})
    assert r.status_code == 303
    return r.headers["location"], asked


def test_signed_out_sees_the_login_page(client: Any) -> None:
    c = client(None)
    for path in ("/assess", "/flows", "/flows/x"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert c.get("/api/flows").status_code == 401


def test_an_ig_lead_assesses_and_registers_a_flow(client: Any, web_app: Any) -> None:
    c = client("ig_lead")
    check_url, asked = walk(c, RESEARCH)
    # the first questions are the scope, as the rules ask them; nothing the rules do not need
    assert asked[:4] == ["origin.sector", "origin.country", "origin.funding", "data.confidentiality"]
    assert "screening.nsc_endorsed" not in asked and "survey" not in asked
    page = c.get(check_url)
    assert page.status_code == 200
    assert "Check your answers" in page.text
    assert "The national data opt-out applies" in page.text
    assert "002 NOT DIRECT CARE" in page.text  # the clauses behind it
    r = post_form(c, check_url.replace("/check", "/save"), {}, page=check_url)
    assert r.status_code == 303 and r.headers["location"] == "/flows/heart-failure-study/saved"
    saved = c.get(r.headers["location"])
    assert "Flow saved to the register" in saved.text and "Make a release for this flow" in saved.text
    rec = flows.get_flow(web_app.state.store, "heart-failure-study")
    assert rec.decision == "applies" and rec.recipient == "University of Exampleshire"
    entry = [e for e in audit.entries(web_app.state.store) if e.action == "flow.added"][-1]
    assert entry.actor == f"web:{USERS['ig_lead']}"
    assert "heart-failure-study" in c.get("/flows").text


def test_questions_asked_are_those_the_rules_need(client: Any) -> None:
    """Direct care by the care team: the rules decide without asking about exemptions."""
    persona = {
        "origin.sector": "adult-social-care",
        "origin.country": "england",
        "origin.funding": "public",
        "data.confidentiality": "confidential",
        "purpose": ["direct-care"],
        "legal_basis": ["implied-consent"],
        "recipient.type": "gp-practice",
        "recipient.role": "third-party",
        "recipient.legitimate_relationship": True,
        "professional_oversight": True,
    }
    c = client("viewer")  # anyone may assess; only saving needs the IG lead
    check_url, asked = walk(c, persona, name="Care notes to the GP")
    page = c.get(check_url)
    assert "The national data opt-out does not apply" in page.text
    assert "Only an IG lead can save" in page.text
    for path in ("survey", "screening.nsc_endorsed", "invoice_validation.contracted"):
        assert path not in asked


def test_i_dont_know_ends_in_cannot_decide_with_the_missing_facts(client: Any) -> None:
    c = client("ig_lead")
    check_url, _asked = walk(c, {"origin.sector": "health"}, name="Half known")
    page = c.get(check_url)
    assert "We cannot decide yet" in page.text
    assert 'id="missing-facts"' in page.text
    assert "Is the care publicly funded" in page.text
    # a missing fact links straight to its question
    m = re.search(r'href="(/assess/[^"]+/q/origin\.funding)"', page.text)
    assert m is not None


def test_no_answer_and_contradictions_are_clear_errors(client: Any) -> None:
    c = client("ig_lead")
    r = post_form(c, "/assess", {}, page="/assess")
    url = r.headers["location"]
    r = post_form(c, url, {"name": ""})
    assert r.status_code == 400 and "Enter a name for the data flow" in r.text
    r = post_form(c, url, {"name": "Flow 9434765919"})  # an NHS number in free text is refused
    assert r.status_code == 400 and "9434765919" not in r.text
    r = post_form(c, url, {"name": "Contradiction"})
    base = url.rsplit("/", 1)[0]
    r = post_form(c, f"{base}/q/origin.sector", {})
    assert r.status_code == 400 and "Select an answer" in r.text
    assert post_form(c, f"{base}/q/recipient.role", {"answer": "internal"}).status_code == 303
    r = post_form(c, f"{base}/q/across_organisations", {"answer": "yes"})
    assert r.status_code == 400
    assert "Contradictory facts" in r.text and "There is a problem" in r.text


def test_edit_and_reassess_a_registered_flow(client: Any, web_app: Any) -> None:
    store = web_app.state.store
    flows.add_flow(store, {"name": "Planning", **_nested(RESEARCH)}, flow_id="planning", actor="cli")
    c = client("ig_lead")
    r = post_form(c, "/flows/planning/edit", {}, page="/flows/planning")
    check_url = r.headers["location"]
    assert check_url.endswith("/check")
    base = check_url.rsplit("/", 1)[0]
    r = post_form(c, f"{base}/q/legal_basis", {"answer": ["explicit-consent"]})
    assert r.status_code == 303
    # explicit consent lifts it: no further question matters, back to check your answers
    location = r.headers["location"]
    assert location.endswith("/check"), location
    assert "does not apply" in c.get(location).text
    r = post_form(c, f"{base}/save", {}, page=location)
    assert r.status_code == 303
    rec = flows.get_flow(store, "planning")
    assert rec.version == 2 and rec.decision == "does-not-apply"
    assert "Version" in c.get("/flows/planning").text
    # reassess: nothing changed under today's rules, so no new version
    r = post_form(c, "/flows/planning/reassess", {}, page="/flows/planning")
    assert r.status_code == 303
    assert flows.get_flow(store, "planning").version == 2


@pytest.mark.parametrize("role", ["viewer", "analyst"])
def test_only_an_ig_lead_saves_or_edits(client: Any, web_app: Any, role: str) -> None:
    flows.add_flow(web_app.state.store, {"name": "X", **_nested(RESEARCH)}, flow_id="x", actor="cli")
    c = client(role)
    token = csrf(c, "/assess")
    assert c.post("/flows/x/edit", data={"csrf_token": token}, follow_redirects=False).status_code == 403
    assert c.post("/flows/x/reassess", data={"csrf_token": token}, follow_redirects=False).status_code == 403
    r = post_form(c, "/assess", {}, page="/assess")
    save = r.headers["location"].replace("/name", "/save")
    assert c.post(save, data={"csrf_token": token}, follow_redirects=False).status_code == 403


def test_a_draft_belongs_to_its_user(client: Any) -> None:
    a = client("ig_lead")
    r = post_form(a, "/assess", {}, page="/assess")
    url = r.headers["location"]
    b = client("admin")
    assert b.get(url).status_code == 404
    assert a.get(url).status_code == 200


def test_csrf_is_required(client: Any) -> None:
    c = client("ig_lead")
    assert c.post("/assess", data={}, follow_redirects=False).status_code == 403


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    from optout.policy.questions import answers_to_mapping

    return answers_to_mapping(flat)


# --------------------------------------------------------------------------- the API


def test_api_assess_gives_the_decision_and_next_question(api_client: Any) -> None:
    c = api_client("viewer")
    r = c.post("/api/assess", json={"facts": {"origin.sector": "health"}})
    assert r.status_code == 200
    body = r.json()
    assert body["decision"]["outcome"] == "cannot-decide"
    assert body["next_question"]["fact"] == "origin.country"
    assert next_question({"origin.sector": "health"}).path == "origin.country"
    r = c.post("/api/assess", json={"facts": {"origin.sector": "health"}, "unknown": ["origin.country"]})
    assert r.json()["next_question"]["fact"] == "origin.funding"
    q = c.get("/api/assess/questions/recipient.role").json()
    assert {o["value"] for o in q["options"]} == {"internal", "processor", "third-party"}
    assert c.get("/api/assess/questions/name").status_code == 404


def test_api_flows_register_and_edit(api_client: Any) -> None:
    lead = api_client("ig_lead")
    r = lead.post("/api/flows", json={"facts": {"name": "API flow", **_nested(RESEARCH)}})
    assert r.status_code == 201, r.text
    assert r.json()["flow"]["id"] == "api-flow" and r.json()["decision"]["outcome"] == "applies"
    r = lead.put(
        "/api/flows/api-flow",
        json={"facts": {"name": "API flow", **_nested(RESEARCH), "legal_basis": ["explicit-consent"]}},
    )
    assert r.status_code == 200 and r.json()["flow"]["version"] == 2
    assert lead.get("/api/flows/api-flow").json()["decision_now"]["outcome"] == "does-not-apply"
    viewer = api_client("viewer")
    assert viewer.post("/api/flows", json={"facts": {"name": "No"}}).status_code == 403
    assert [f["id"] for f in viewer.get("/api/flows").json()] == ["api-flow"]
    bad = lead.post("/api/flows", json={"facts": {"purpose": "resarch"}})
    assert bad.status_code == 400 and "did you mean" in bad.json()["hint"]

"""Adult social care (003): worked examples as ready-made flows (the answer is always the engine's),
standard wording to copy, and the provider's audit checklist."""

from __future__ import annotations

from typing import Any

from tests.web._policy_texts import assert_quoted
from tests.web.conftest import csrf, post_form

from optout.policy import register as flows
from optout.policy import socialcare


def test_each_example_gets_the_answer_it_describes() -> None:
    outcomes = set()
    for ex in socialcare.examples():
        d = ex.decision()
        assert d.outcome == ex.expected, f"{ex.id}: the rules now say {d.outcome}"
        assert ex.flow.get("origin.sector") == "adult-social-care"
        assert_quoted(ex.quote.quote, ex.quote.clause)
        outcomes.add(d.outcome)
    assert outcomes == {"applies", "does-not-apply"}  # when it applies and when it does not


def test_wording_follows_the_policy_words() -> None:
    blocks = socialcare.wording()
    uses = " ".join(b.use.lower() for b in blocks)
    for kind in ("privacy notice", "consent form", "contract"):
        assert kind in uses
    for b in blocks:
        assert b.follows and b.clauses
        for q in b.follows:
            assert_quoted(q.quote, q.clause)
        assert "www.nhs.uk/your-nhs-data-matters" in b.text or "privacy" not in b.use.lower()


def test_pages_for_every_role(client: Any) -> None:
    for role in ("viewer", "analyst", "ig_lead", "admin"):
        c = client(role)
        page = c.get("/social-care")
        assert page.status_code == 200
        assert "From March 2022, all regulated social care providers" in page.text
        assert ("Register this example" in page.text) is (role in ("ig_lead", "admin"))
        assert c.get("/social-care/examples/university-research-s251").status_code == 200
        assert "privacy notice" in c.get("/social-care/wording").text.lower()
        txt = c.get("/social-care/wording.txt")
        assert txt.status_code == 200 and "attachment" in txt.headers["content-disposition"]
    assert client(None).get("/social-care", follow_redirects=False).status_code == 303


def test_register_an_example_in_one_click(client: Any, web_app: Any) -> None:
    c = client("ig_lead")
    r = post_form(c, "/social-care/examples/university-research-s251/register", {}, page="/social-care")
    assert r.status_code == 303 and r.headers["location"] == "/flows/university-research-s251/saved"
    rec = flows.get_flow(web_app.state.store, "university-research-s251")
    assert rec.decision == "applies"
    page = c.get("/social-care")
    assert 'href="/flows/university-research-s251"' in page.text
    again = post_form(c, "/social-care/examples/university-research-s251/register", {}, page="/social-care")
    assert again.status_code == 400 and "already registered" in again.text
    viewer = client("viewer")
    token = csrf(viewer, "/social-care")
    r = viewer.post("/social-care/examples/gp-care-record-sharing/register", data={"csrf_token": token})
    assert r.status_code == 403


def test_api(api_client: Any) -> None:
    viewer = api_client("viewer")
    examples = viewer.get("/api/social-care/examples").json()
    assert {e["decision"]["outcome"] for e in examples} == {"applies", "does-not-apply"}
    assert viewer.get("/api/social-care/wording").json()[0]["follows"]
    assert viewer.post("/api/social-care/examples/research-with-consent/register").status_code == 403
    lead = api_client("ig_lead")
    r = lead.post("/api/social-care/examples/research-with-consent/register")
    assert r.status_code == 201 and r.json()["decision"]["compliance"] == "consent"

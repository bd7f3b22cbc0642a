"""The compliance checklists (002 PREPARING FOR COMPLIANCE; the 003 provider audit checklist):
tasks quoted from the policy, recorded per task with owner, status, due date, notes and evidence."""

from __future__ import annotations

from typing import Any

import pytest
from tests.web._policy_texts import assert_quoted
from tests.web.conftest import USERS, csrf, post_form

from optout import audit
from optout.policy import checklist as cl


def test_every_task_quotes_the_policy_word_for_word() -> None:
    seen = set()
    for c in cl.checklists():
        assert_quoted(c.intro, c.clause)
        for t in c.tasks:
            assert_quoted(t.quote, t.clause)
            assert t.owner_role in cl.ROLES
            seen.add(t.area)
    # the protocol's preparation steps the issue names, each covered
    for area in (
        "survey of activities",
        "per-activity compliance route",
        "DPIA question",
        "MESH mailbox set-up",
        "system-report review",
        "privacy notice",
    ):
        assert area in seen
    protocol = cl.checklist("gp-protocol")
    assert len(protocol.tasks) == 9  # every row of 002's checklist table


def test_progress_counts_done_and_overdue(web_app: Any) -> None:
    store = web_app.state.store
    before = {p.checklist: p for p in cl.checklist_progress(store)}
    assert before["gp-protocol"].done == 0 and before["gp-protocol"].total == 9
    cl.update_task(store, "gp-protocol", "mesh-setup", status="done", actor="t")
    cl.update_task(store, "gp-protocol", "dpia", status="not-applicable", actor="t")
    cl.update_task(
        store, "gp-protocol", "survey-send", status="in-progress", due_date="2020-01-01", actor="t"
    )
    p = {p.checklist: p for p in cl.checklist_progress(store)}["gp-protocol"]
    assert (p.done, p.in_progress, p.overdue) == (2, 1, 1)


def test_an_ig_lead_updates_a_task(client: Any, web_app: Any) -> None:
    c = client("ig_lead")
    page = c.get("/checklist")
    assert page.status_code == 200
    assert "Preparing for compliance" in page.text and "Audit checklist for adult social care" in page.text
    task = c.get("/checklist/gp-protocol/mesh-setup")
    assert "Contact IT provider to set the organisation up with the MESH service" in task.text
    r = post_form(
        c,
        "/checklist/gp-protocol/mesh-setup",
        {
            "status": "done",
            "owner_role": "admin",
            "due_date": "2026-06-30",
            "notes": "IT provider set up mailbox",
            "evidence": "flow:heart-study\nhttps://intranet.example/mesh",
        },
    )
    assert r.status_code == 303
    t = cl.get_task(web_app.state.store, "gp-protocol", "mesh-setup")
    assert (t.status, t.due_date, t.updated_by) == ("done", "2026-06-30", f"web:{USERS['ig_lead']}")
    assert t.evidence == ("flow:heart-study", "https://intranet.example/mesh")
    entry = audit.entries(web_app.state.store)[-1]
    assert entry.action == "checklist.task.updated" and entry.subject == "gp-protocol/mesh-setup"
    shown = c.get("/checklist/gp-protocol/mesh-setup").text
    assert 'href="/flows/heart-study"' in shown


def test_bad_input_is_a_clear_error_and_no_nhs_number_is_stored(client: Any, web_app: Any) -> None:
    c = client("ig_lead")
    r = post_form(
        c,
        "/checklist/gp-protocol/dpia",
        {"status": "done", "owner_role": "ig_lead", "due_date": "31/12/2026"},
    )
    assert r.status_code == 400 and "YYYY-MM-DD" in r.text
    r = post_form(
        c,
        "/checklist/gp-protocol/dpia",
        {"status": "done", "owner_role": "ig_lead", "notes": "patient 943 476 5919"},
    )
    assert r.status_code == 400 and "943 476 5919" not in r.text
    r = post_form(
        c,
        "/checklist/gp-protocol/dpia",
        {"status": "done", "owner_role": "ig_lead", "evidence": "see the file"},
    )
    assert r.status_code == 400 and "flow:ID" in r.text
    assert cl.get_task(web_app.state.store, "gp-protocol", "dpia").status == "not-started"


@pytest.mark.parametrize(
    ("role", "task", "allowed"),
    [
        ("viewer", "dpia", False),
        ("analyst", "dpia", False),  # owned by the IG lead
        ("analyst", "system-reports", True),  # owned by analysts
        ("admin", "dpia", True),
    ],
)
def test_who_may_update_a_task(client: Any, role: str, task: str, allowed: bool) -> None:
    c = client(role)
    path = f"/checklist/gp-protocol/{task}"
    token = csrf(c, "/checklist")
    r = c.post(path, data={"csrf_token": token, "status": "in-progress"}, follow_redirects=False)
    assert r.status_code == (303 if allowed else 403)
    assert ("Update this task" in c.get(path).text) is allowed


def test_dashboard_shows_the_progress(client: Any) -> None:
    page = client("viewer").get("/")
    assert page.status_code == 200
    assert "Compliance checklist" in page.text and "tasks done" in page.text


def test_api(api_client: Any) -> None:
    viewer = api_client("viewer")
    body = viewer.get("/api/checklist").json()
    assert {p["checklist"] for p in body["progress"]} == {"gp-protocol", "social-care"}
    assert viewer.patch("/api/checklist/gp-protocol/dpia", json={"status": "done"}).status_code == 403
    lead = api_client("ig_lead")
    r = lead.patch("/api/checklist/gp-protocol/dpia", json={"status": "done", "evidence": ["flow:x"]})
    assert r.status_code == 200 and r.json()["status"] == "done"
    assert lead.patch("/api/checklist/gp-protocol/dpia", json={"status": "finished"}).status_code == 400
    assert lead.get("/api/checklist/nope").status_code == 404

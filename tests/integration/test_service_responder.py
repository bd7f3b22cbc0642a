"""The reference service's responder over a real mesh-sandbox, answering like the national service."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from optout import nhs_number
from optout.config import WORKFLOW_ID, MeshSettings
from optout.mesh import MeshMailbox, Received
from optout.service import PUBLISH_EVERY, REJECTION, format_dat, parse_request
from optout.service.sandbox import SERVICE_MAILBOX

PEOPLE = nhs_number.synthetic(2_000, seed=21)


def ask(org: MeshMailbox, body: bytes, *, local_id: str = "req-1", subject: str = "optout-check") -> str:
    return org.send(
        recipient=SERVICE_MAILBOX, data=body, workflow_id=WORKFLOW_ID, subject=subject, local_id=local_id
    )


def replies(org: MeshMailbox) -> list[Received]:
    out = []
    for message_id in org.inbox():
        out.append(org.retrieve(message_id))
        org.acknowledge(message_id)
    return out


@pytest.fixture
def org(org_settings: MeshSettings) -> MeshMailbox:
    with MeshMailbox(org_settings) as mb:
        yield mb  # type: ignore[misc]


def test_answers_a_valid_request(central_service, org: MeshMailbox) -> None:  # type: ignore[no-untyped-def]
    opted = PEOPLE[::10]
    central_service.register.record_many(opted, True)
    central_service.register.publish()
    request = ask(org, format_dat(PEOPLE))
    assert central_service.responder.run_once() == 1
    note, cleaned = replies(org)
    # first the SUCCESS notification, then the cleaned list; both carry our LocalID and workflow
    assert (note.subject, note.local_id, note.workflow_id) == ("SUCCESS", "req-1", WORKFLOW_ID)
    doc = json.loads(note.body)
    assert doc["submitted"] == PEOPLE.size and doc["returned"] == PEOPLE.size - opted.size
    assert doc["request_message_id"] == request
    assert (cleaned.local_id, cleaned.workflow_id) == ("req-1", WORKFLOW_ID)
    returned = parse_request(cleaned.body)
    assert returned is not None
    assert returned.tolist() == [n for n in PEOPLE.tolist() if n not in set(opted.tolist())]
    assert cleaned.body == format_dat(returned)  # same format as the request
    # the request was acknowledged: nothing left to answer
    assert central_service.responder.run_once() == 0
    assert central_service.register.status().requests_answered == 1


def test_one_invalid_number_rejects_the_whole_file(central_service, org: MeshMailbox) -> None:  # type: ignore[no-untyped-def]
    body = format_dat(PEOPLE[:100]) + b"1234567890,\n"
    ask(org, body, local_id="bad-1")
    assert central_service.responder.run_once() == 1
    (reply,) = replies(org)
    assert reply.body.strip() == REJECTION.strip()
    assert reply.local_id == "bad-1"
    assert central_service.register.status().requests_rejected == 1


@pytest.mark.parametrize(
    ("subject", "local_id"), [("optout-check", "req:1"), ("opt out", "req-1"), ("optout-check", "req/1")]
)
def test_disallowed_characters_are_silently_ignored(  # type: ignore[no-untyped-def]
    central_service, org: MeshMailbox, subject: str, local_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    ask(org, format_dat(PEOPLE[:10]), local_id=local_id, subject=subject)
    with caplog.at_level("INFO", logger="optout.service"):
        assert central_service.responder.run_once() == 0
    assert replies(org) == []  # no reply ever comes
    assert "ignored" in caplog.text
    assert str(PEOPLE[0]) not in caplog.text
    assert list(central_service.mailbox.inbox()) == []  # and it is not retried forever


def test_chunked_request_and_reply(  # type: ignore[no-untyped-def]
    central_service, org_settings: MeshSettings, service_settings: MeshSettings
) -> None:
    from optout.service import Responder

    central_service.register.publish()
    with (
        MeshMailbox(org_settings, max_chunk_size=5_000) as org,
        MeshMailbox(service_settings, max_chunk_size=5_000) as svc,
    ):
        ask(org, format_dat(PEOPLE))  # 24 000 bytes: 5 chunks each way
        assert Responder(central_service.register, svc).run_once() == 1
        _note, cleaned = replies(org)
    assert parse_request(cleaned.body).tolist() == PEOPLE.tolist()  # type: ignore[union-attr]


def test_snapshot_timing_end_to_end(central_service, org: MeshMailbox) -> None:  # type: ignore[no-untyped-def]
    """001 §8.4: an opt-out set after a publication applies from the next one; withdrawal re-includes."""
    reg, clock, responder = central_service.register, central_service.clock, central_service.responder
    person = int(PEOPLE[0])

    def returned() -> set[int]:
        ask(org, format_dat(PEOPLE[:5]))
        responder.run_once()
        _note, cleaned = replies(org)
        return set(parse_request(cleaned.body).tolist())  # type: ignore[union-attr]

    responder.run_once()  # first run publishes (no snapshot yet)
    clock.now += timedelta(hours=1)
    reg.record(person, True)
    assert person in returned()  # registered after the publication: not applied yet
    clock.now += PUBLISH_EVERY  # the responder publishes by itself when the last is 24 h old
    assert person not in returned()
    clock.now += timedelta(hours=3)
    reg.record(person, False)
    assert person not in returned()  # withdrawal also waits for the next publication
    clock.now += PUBLISH_EVERY
    assert person in returned()


def test_duplicate_delivery_is_not_answered_twice(  # type: ignore[no-untyped-def]
    central_service, org: MeshMailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    central_service.register.publish()
    request = ask(org, format_dat(PEOPLE[:50]))
    mailbox = central_service.mailbox
    real_ack = mailbox.acknowledge

    def lost_ack(message_id: str) -> None:
        from optout.errors import TransportError

        raise TransportError("acknowledge lost", hint="-")

    monkeypatch.setattr(mailbox, "acknowledge", lost_ack)
    with pytest.raises(Exception, match="acknowledge lost"):
        central_service.responder.run_once()
    monkeypatch.setattr(mailbox, "acknowledge", real_ack)
    assert list(mailbox.inbox()) == [request]  # MESH delivers it again
    assert central_service.responder.run_once() == 0
    assert list(mailbox.inbox()) == []
    assert len(replies(org)) == 2  # one notification + one cleaned list, not two pairs


def test_sandbox_cli_runs_the_responder_end_to_end(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`optout sandbox start`, `optout service seed`: the background responder answers a request."""
    import time

    from optout.cli import main
    from optout.config import load_settings
    from optout.mesh import with_local_sandbox

    monkeypatch.setenv("OPTOUT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPTOUT_MESH_NO_SANDBOX", raising=False)
    for var in ("OPTOUT_MESH_URL", "OPTOUT_MESH_MAILBOX", "OPTOUT_MESH_PASSWORD", "OPTOUT_MESH_SHARED_KEY"):
        monkeypatch.delenv(var, raising=False)
    main(["sandbox", "start"])
    try:
        main(["service", "seed", "--population", "1000", "--opt-out-rate", "0.1", "--seed", "4"])
        settings = with_local_sandbox(load_settings())  # where MESH settings are needed
        assert settings.mesh.mailbox == "X26ORG001"  # the sandbox fallback
        people = nhs_number.synthetic(1000, seed=4)
        with MeshMailbox(settings.mesh) as org:
            ask(org, format_dat(people))
            got: list[Received] = []
            # the responder is a real process started just now: on a busy machine it may take a
            # while to import and poll. Generous, and over as soon as both replies are in.
            deadline = time.monotonic() + 180
            while len(got) < 2 and time.monotonic() < deadline:
                got += replies(org)
                time.sleep(0.2)
        assert [r.subject for r in got] == ["SUCCESS", "optout-check"]
        assert parse_request(got[1].body).size == 900  # type: ignore[union-attr]
    finally:
        main(["sandbox", "stop"])
    from optout.service.sandbox import sandbox_status

    assert sandbox_status(tmp_path / "home" / "sandbox") is None

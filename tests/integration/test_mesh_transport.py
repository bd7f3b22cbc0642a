"""MeshMailbox against a real mesh-sandbox: send, list, retrieve, acknowledge, chunking, paging, faults."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from optout.config import WORKFLOW_ID, MeshSettings
from optout.errors import TransportError, UsageError
from optout.mesh import PAGE_SIZE, Backoff, MeshMailbox
from optout.service.sandbox import SERVICE_MAILBOX, SandboxInfo

BODY = b"9434765919,\n" * 50


def _send(mb: MeshMailbox, data: bytes = BODY, local_id: str = "req-1") -> str:
    return mb.send(
        recipient=SERVICE_MAILBOX,
        data=data,
        workflow_id=WORKFLOW_ID,
        subject="optout-check",
        local_id=local_id,
        filename="cohort.dat",
    )


def test_send_receive_acknowledge(org_settings: MeshSettings, service_settings: MeshSettings) -> None:
    with MeshMailbox(org_settings) as org, MeshMailbox(service_settings) as svc:
        sent = _send(org)
        assert list(svc.inbox()) == [sent]
        got = svc.retrieve(sent)
        assert got.message_id == sent
        assert got.body == BODY
        assert (got.subject, got.local_id, got.workflow_id) == ("optout-check", "req-1", WORKFLOW_ID)
        assert (got.sender, got.filename, got.message_type) == (org_settings.mailbox, "cohort.dat", "DATA")
        assert not got.is_report
        # retrieving does not remove it: only acknowledging does
        assert list(svc.inbox()) == [sent]
        svc.acknowledge(sent)
        assert list(svc.inbox()) == []
        assert list(org.inbox()) == []


def test_workflow_filter(org_settings: MeshSettings, service_settings: MeshSettings) -> None:
    with MeshMailbox(org_settings) as org, MeshMailbox(service_settings) as svc:
        wanted = _send(org)
        org.send(
            recipient=SERVICE_MAILBOX, data=b"x", workflow_id="OTHER_WORKFLOW", subject="s", local_id="l"
        )
        assert list(svc.inbox(workflow_id=WORKFLOW_ID)) == [wanted]
        assert len(list(svc.inbox())) == 2


def test_chunked_message_is_joined(org_settings: MeshSettings, service_settings: MeshSettings) -> None:
    data = b"".join(f"{n:010d},\n".encode() for n in range(4000))  # 48 000 bytes
    with MeshMailbox(org_settings, max_chunk_size=10_000) as org, MeshMailbox(service_settings) as svc:
        sent = _send(org, data)
        got = svc.retrieve(sent)
        assert got.body == data
        svc.acknowledge(sent)


def test_paging_through_more_than_one_page(
    org_settings: MeshSettings, service_settings: MeshSettings
) -> None:
    """MESH lists at most 500 ids per page: every message must still be seen, each once."""
    from concurrent.futures import ThreadPoolExecutor

    total = PAGE_SIZE + 7
    with MeshMailbox(org_settings) as org, MeshMailbox(service_settings) as svc:
        org.handshake()
        with ThreadPoolExecutor(4) as pool:
            sent = set(pool.map(lambda i: _send(org, b"1,\n", local_id=f"m{i}"), range(total)))
        listed = list(svc.inbox())
        assert len(listed) == total
        assert set(listed) == sent


def test_acknowledging_while_paging_reaches_every_message(
    org_settings: MeshSettings, service_settings: MeshSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the responder does: acknowledge each message while the listing is still being paged."""
    monkeypatch.setattr("optout.mesh.PAGE_SIZE", 10)  # the smallest page MESH allows
    with MeshMailbox(org_settings) as org, MeshMailbox(service_settings) as svc:
        sent = {_send(org, b"1,\n", local_id=f"m{i}") for i in range(27)}
        seen = []
        for message_id in svc.inbox():
            svc.acknowledge(message_id)
            seen.append(message_id)
        assert sorted(seen) == sorted(sent)
        assert list(svc.inbox()) == []


def test_non_delivery_report_is_told_apart(mesh: SandboxInfo, org_settings: MeshSettings) -> None:
    import requests

    with MeshMailbox(org_settings) as org:
        sent = _send(org)
        response = requests.post(
            f"{mesh.url}/messageexchange/admin/report",
            json={
                "mailbox_id": org_settings.mailbox,
                "status": "undeliverable",
                "workflow_id": WORKFLOW_ID,
                "code": "14",
                "description": "undelivered",
                "subject": "optout-check",
                "local_id": "req-1",
                "linked_message_id": sent,
            },
            timeout=60,
        )
        assert response.status_code == 200, response.text
        (report_id,) = list(org.inbox())
        got = org.retrieve(report_id)
        assert got.is_report
        assert got.status == "ERROR"
        assert got.linked_message_id == sent


# ---------------------------------------------------------------------------------- faults


def _raises_with_hint(settings: MeshSettings, *names: str, **kw: object) -> TransportError:
    with pytest.raises(TransportError) as info, MeshMailbox(settings, **kw) as mb:  # type: ignore[arg-type]
        mb.handshake()
    err = info.value
    assert err.hint
    for name in names:
        assert name in err.hint, (name, err.hint)
    return err


def test_wrong_password_names_the_setting(org_settings: MeshSettings) -> None:
    _raises_with_hint(dataclasses.replace(org_settings, password="not-the-password"), "OPTOUT_MESH_PASSWORD")


def test_wrong_shared_key_names_the_setting(org_settings: MeshSettings) -> None:
    _raises_with_hint(dataclasses.replace(org_settings, shared_key="wrong-key"), "OPTOUT_MESH_SHARED_KEY")


def test_unknown_mailbox_names_the_setting(org_settings: MeshSettings) -> None:
    _raises_with_hint(dataclasses.replace(org_settings, mailbox="X26NOPE99"), "OPTOUT_MESH_MAILBOX")


def test_sandbox_down_names_the_url(org_settings: MeshSettings) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _raises_with_hint(
        dataclasses.replace(org_settings, url=f"http://127.0.0.1:{port}"), "OPTOUT_MESH_URL"
    )
    assert "cannot reach" in err.message


def test_clock_skew_is_named(org_settings: MeshSettings) -> None:
    err = _raises_with_hint(org_settings, "clock", clock=lambda: datetime.now(UTC) + timedelta(hours=3))
    assert "clock" in err.message and "ahead" in err.message


def test_unknown_recipient_names_the_setting(org_settings: MeshSettings) -> None:
    with MeshMailbox(org_settings) as org, pytest.raises(TransportError) as info:
        org.send(recipient="X26NOPE99", data=b"1,\n", workflow_id=WORKFLOW_ID, subject="s", local_id="l")
    assert "OPTOUT_MESH_RECIPIENT" in (info.value.hint or "")


def test_unknown_message_is_a_transport_error(
    org_settings: MeshSettings, service_settings: MeshSettings
) -> None:
    with MeshMailbox(org_settings) as org, MeshMailbox(service_settings) as svc:
        sent = _send(org)
        svc.acknowledge(sent)
        with pytest.raises(TransportError):
            svc.retrieve(sent + "X")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"url": None}, "OPTOUT_MESH_URL"),
        ({"password": None}, "OPTOUT_MESH_PASSWORD"),
        ({"shared_key": None}, "OPTOUT_MESH_SHARED_KEY"),
        ({"url": "http://mesh.example.org"}, "https://"),
        ({"client_cert": "/x.crt"}, "OPTOUT_MESH_CLIENT_KEY"),
    ],
)
def test_refused_configurations(change: dict[str, object], needle: str) -> None:
    settings = MeshSettings(url="http://127.0.0.1:1", mailbox="X26ORG001", password="p", shared_key="k")
    with pytest.raises(UsageError) as info:
        MeshMailbox(dataclasses.replace(settings, **change))  # type: ignore[arg-type]
    assert needle in info.value.render()


def test_backoff_grows_to_its_ceiling_and_resets() -> None:
    b = Backoff(initial=1, maximum=5, factor=2)
    assert [b.next() for _ in range(5)] == [1, 2, 4, 5, 5]
    b.reset()
    assert b.next() == 1

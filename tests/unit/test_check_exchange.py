"""The check exchange's state machine and durability, with an in-memory mailbox.

The same flows run against a real mesh-sandbox and the reference service in
tests/integration/test_check_mesh.py; here the mailbox is a small double so each ordering
(crash before/after a step, duplicates, strangers' replies) can be forced exactly.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from optout import audit
from optout.check import check_cohort, collect, resume, state
from optout.check.cleaned_list import read_cleaned_list
from optout.check.request import dat_bytes
from optout.config import Settings
from optout.dat import read_dat_bytes
from optout.errors import InputError, OutputError, PendingError, TransportError
from optout.nhs_number import synthetic
from optout.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REJECTION = b"The file contains one or more invalid NHS Numbers."


@dataclass
class Msg:
    message_id: str
    subject: str | None
    local_id: str | None
    body: bytes
    message_type: str = "DATA"
    status: str | None = None
    workflow_id: str | None = "SPINE_NTT_UPHOLDING"
    sender: str | None = "X26HC065"
    filename: str | None = None
    linked_message_id: str | None = None


@dataclass
class FakeMailbox:
    inbox_msgs: dict[str, Msg] = field(default_factory=dict)
    sent: list[Msg] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    fail_ack: bool = False

    def send(
        self,
        *,
        recipient: str,
        data: bytes,
        workflow_id: str,
        subject: str,
        local_id: str,
        filename: str | None = None,
    ) -> str:
        mid = f"OUT{next(self.ids):04d}"
        self.sent.append(Msg(mid, subject, local_id, data, filename=filename))
        return mid

    def deliver(self, subject: str | None, local_id: str | None, body: bytes, **kw: object) -> str:
        mid = f"IN{next(self.ids):04d}"
        self.inbox_msgs[mid] = Msg(mid, subject, local_id, body, **kw)  # type: ignore[arg-type]
        return mid

    def answer(self, keep: float = 0.9, *, notify: bool = True) -> None:
        """Play the service: answer every request sent so far (once)."""
        while self.sent:
            req = self.sent.pop(0)
            nums = read_dat_bytes(req.body, source_name="req")
            kept = nums[: int(len(nums) * keep)]
            if notify:
                self.deliver("SUCCESS", req.local_id, json.dumps({"status": "SUCCESS"}).encode())
            self.deliver(req.subject, req.local_id, dat_bytes(kept))

    def inbox(self, *, workflow_id: str | None = None) -> Iterator[str]:
        yield from list(self.inbox_msgs)

    def retrieve(self, message_id: str) -> Msg:
        return self.inbox_msgs[message_id]

    def acknowledge(self, message_id: str) -> None:
        if self.fail_ack:
            raise KeyboardInterrupt("simulated crash before acknowledging")
        del self.inbox_msgs[message_id]
        self.acked.append(message_id)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.delenv("OPTOUT_CACHE_KEY", raising=False)
    return Settings(home=tmp_path / "home", actor="tester")


@pytest.fixture
def store(settings: Settings) -> Store:
    return Store(settings.db_url)


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    p = tmp_path / "cohort.csv"
    nums = synthetic(200, seed=9)
    p.write_text("nhs_number\n" + "".join(f"{n}\n" for n in nums) + "123\n\n")
    return p


def _run(cohort: Path, out: Path, settings: Settings, store: Store, box: FakeMailbox, **kw: object):
    def sleep(_s: float) -> None:
        box.answer()

    return check_cohort(
        cohort, out=out, settings=settings, store=store, mailbox=box, now=T0, sleep=sleep, **kw
    )  # type: ignore[arg-type]


def test_one_off_end_to_end(tmp_path: Path, cohort: Path, settings: Settings, store: Store) -> None:
    box = FakeMailbox()
    out = tmp_path / "cleaned.dat"
    res = _run(cohort, out, settings, store, box)
    assert res.state == "collected" and res.sent_count == 200 and res.returned_count == 180
    assert res.cohort is not None and res.cohort.withheld == 2  # "123" and the empty row
    al = read_cleaned_list(out)
    assert al.source == "one-off" and al.checked_at == T0 and al.local_id == res.local_id
    assert al.deadline == T0 + timedelta(days=20)  # 001 §8.4
    side = json.loads(out.with_name("cleaned.dat.json").read_text())
    assert side["sent_count"] == 200 and side["returned_count"] == 180 and len(side["reply_message_ids"]) == 2
    assert box.inbox_msgs == {} and len(box.acked) == 2
    assert not Path(state.get(store, res.local_id).details["request_path"]).exists()  # cohort not kept
    actions = [e.action for e in audit.entries(store)]
    assert actions == ["check.sent", "check.collected"]
    for e in audit.entries(store):
        assert not any(str(int(n)) in e.details for n in synthetic(200, seed=9))


def test_what_is_sent_is_valid_sorted_unique(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    box = FakeMailbox()
    check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, wait=None)
    (msg,) = box.sent
    nums = read_dat_bytes(msg.body, source_name="x")
    assert msg.body == dat_bytes(nums) and len(nums) == 200
    assert msg.local_id and msg.subject == "optout-one-off-check" and msg.filename == f"{msg.local_id}.dat"


def test_no_wait_then_collect(tmp_path: Path, cohort: Path, settings: Settings, store: Store) -> None:
    box = FakeMailbox()
    out = tmp_path / "cleaned.dat"
    res = check_cohort(cohort, out=out, settings=settings, store=store, mailbox=box, wait=None, now=T0)
    assert res.state == "sent" and res.pending and not out.exists()
    with pytest.raises(PendingError) as exc:
        collect(res.local_id, settings=settings, store=store, mailbox=box)
    assert f"optout check --collect {res.local_id}" in (exc.value.hint or "") and exc.value.exit_code == 7
    box.answer()
    done = collect(res.local_id, settings=settings, store=store, mailbox=box)
    assert done.state == "collected" and out.exists()
    # collecting again is harmless
    assert collect(res.local_id, settings=settings, store=store, mailbox=box).state == "collected"


def test_out_exists_refused_before_sending(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    out = tmp_path / "cleaned.dat"
    out.write_text("x")
    box = FakeMailbox()
    with pytest.raises(OutputError):
        check_cohort(cohort, out=out, settings=settings, store=store, mailbox=box)
    assert box.sent == [] and state.list_requests(store) == []


@pytest.mark.parametrize("content", ["nhs_number\n123\nabc\n", "\n"])
def test_nothing_valid_nothing_sent(tmp_path: Path, settings: Settings, store: Store, content: str) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    box = FakeMailbox()
    with pytest.raises(InputError) as exc:
        check_cohort(p, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box)
    assert exc.value.exit_code == 3 and box.sent == [] and state.list_requests(store) == []


def test_rejection(tmp_path: Path, cohort: Path, settings: Settings, store: Store) -> None:
    box = FakeMailbox()
    res = check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, wait=None)
    box.deliver(None, res.local_id, REJECTION + b"\n")
    with pytest.raises(TransportError, match="rejected") as exc:
        collect(res.local_id, settings=settings, store=store, mailbox=box)
    assert exc.value.exit_code == 6
    assert state.get(store, res.local_id).state == "rejected" and not (tmp_path / "c.dat").exists()
    assert box.inbox_msgs == {}


def test_non_delivery_report(tmp_path: Path, cohort: Path, settings: Settings, store: Store) -> None:
    box = FakeMailbox()
    res = check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, wait=None)
    box.deliver("NDR", res.local_id, b"", message_type="REPORT", status="ERROR")
    with pytest.raises(TransportError, match="could not deliver"):
        collect(res.local_id, settings=settings, store=store, mailbox=box)
    assert state.get(store, res.local_id).state == "failed"


def test_unknown_local_id_left_unacknowledged_and_reported(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    box = FakeMailbox()
    stranger = box.deliver(None, "someone-elses-request", b"9434765919,\n")
    res = _run(cohort, tmp_path / "c.dat", settings, store, box)
    assert res.state == "collected"
    assert stranger in box.inbox_msgs  # never lost
    assert any("someone-elses-request" in w and "unacknowledged" in w for w in res.warnings)
    assert "check.unknown-reply" in [e.action for e in audit.entries(store)]


def test_duplicate_delivery_is_acknowledged_and_noted(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    box = FakeMailbox()
    out = tmp_path / "c.dat"
    res = check_cohort(cohort, out=out, settings=settings, store=store, mailbox=box, wait=None)
    req_body = box.sent[0].body
    box.answer()
    collect(res.local_id, settings=settings, store=store, mailbox=box)
    before = out.read_bytes()
    # the same cleaned list delivered again (and a different, later one): the first answer stands
    box.deliver(None, res.local_id, req_body)
    box.deliver("SUCCESS", res.local_id, b"{}")
    res2 = _run_other(tmp_path, settings, store, box)
    assert res2.state == "collected"
    assert out.read_bytes() == before
    dups = state.get(store, res.local_id).details["duplicates"]
    assert {d["kind"] for d in dups} == {"cleaned-list", "notification"}
    assert box.inbox_msgs == {}


def _run_other(tmp_path: Path, settings: Settings, store: Store, box: FakeMailbox):
    p = tmp_path / "other.csv"
    p.write_text("nhs_number\n" + "".join(f"{n}\n" for n in synthetic(10, seed=77)))
    return _run(p, tmp_path / "other.dat", settings, store, box)


def test_crash_after_send_before_state_saved_then_resume(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = FakeMailbox()
    real = state.transition

    def crash(store_: Store, local_id: str, new: str, **kw: object):
        if new == "sent":
            raise KeyboardInterrupt("simulated crash just after MESH accepted the request")
        return real(store_, local_id, new, **kw)

    monkeypatch.setattr(state, "transition", crash)
    out = tmp_path / "c.dat"
    with pytest.raises(KeyboardInterrupt):
        check_cohort(cohort, out=out, settings=settings, store=store, mailbox=box, now=T0)
    monkeypatch.setattr(state, "transition", real)
    (req,) = state.list_requests(store)
    assert req.state == "prepared" and len(box.sent) == 1  # it did go out
    box.answer()  # the service answered the first send
    later = T0 + timedelta(hours=3)
    res = resume(req.local_id, settings=settings, store=store, mailbox=box, now=later, wait=timedelta(0))
    assert res.state == "collected" and box.sent == []  # found the answer: not sent again
    # the check time is the first attempt, not the resume: conservative for the 20-day window
    assert read_cleaned_list(out).checked_at == T0


def test_crash_before_acknowledging_loses_nothing(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    box = FakeMailbox()
    out = tmp_path / "c.dat"
    res = check_cohort(cohort, out=out, settings=settings, store=store, mailbox=box, wait=None, now=T0)
    box.answer(notify=False)
    box.fail_ack = True
    with pytest.raises(KeyboardInterrupt):
        collect(res.local_id, settings=settings, store=store, mailbox=box)
    assert out.exists() and len(box.inbox_msgs) == 1  # saved, still in the inbox
    box.fail_ack = False
    again = resume(res.local_id, settings=settings, store=store, mailbox=box, wait=timedelta(0))
    assert again.state == "collected"
    # the leftover message is recognised as already handled on the next poll, then acknowledged
    _run_other(tmp_path, settings, store, box)
    assert box.inbox_msgs == {}


def test_damaged_reply_is_left_in_the_inbox(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    box = FakeMailbox()
    res = check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, wait=None)
    mid = box.deliver(None, res.local_id, b"9434765919,\n94347")  # truncated
    with pytest.raises(PendingError) as exc:
        collect(res.local_id, settings=settings, store=store, mailbox=box)
    assert mid in box.inbox_msgs and "could not be saved" in exc.value.message


def test_reply_with_numbers_not_sent_is_refused(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    box = FakeMailbox()
    res = check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, wait=None)
    stray = dat_bytes(np.sort(synthetic(5, seed=12345)))
    mid = box.deliver(None, res.local_id, stray)
    with pytest.raises(PendingError, match="not sent"):
        collect(res.local_id, settings=settings, store=store, mailbox=box)
    assert mid in box.inbox_msgs and not (tmp_path / "c.dat").exists()


def test_state_machine_refuses_going_back(store: Store) -> None:
    state.create(
        store,
        local_id="x-1",
        mode="one-off",
        created_at=T0,
        cohort_sha256="a" * 64,
        cohort_size=1,
        out_path=None,
        details={},
    )
    state.transition(store, "x-1", "sent")
    state.transition(store, "x-1", "collected")
    from optout.errors import OptoutError

    with pytest.raises(OptoutError):
        state.transition(store, "x-1", "sent")


def test_mesh_unreachable_mid_wait_keeps_waiting(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    """The MESH server restarted while we wait: the poll fails, the wait carries on, nothing lost."""
    box = FakeMailbox()
    real_inbox = box.inbox
    calls = {"n": 0}

    def flaky_inbox(*, workflow_id: str | None = None) -> Iterator[str]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TransportError("list inbox: cannot reach MESH", hint="check OPTOUT_MESH_URL")
        return real_inbox(workflow_id=workflow_id)

    box.inbox = flaky_inbox  # type: ignore[method-assign]
    polls = {"n": 0}

    def sleep(_s: float) -> None:
        polls["n"] += 1
        if polls["n"] == 2:  # answer only after the failed poll
            box.answer()

    res = check_cohort(
        cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box, sleep=sleep
    )
    assert res.state == "collected" and calls["n"] >= 3


def test_mesh_unreachable_at_first_poll_is_an_error(
    tmp_path: Path, cohort: Path, settings: Settings, store: Store
) -> None:
    box = FakeMailbox()

    def down(*, workflow_id: str | None = None) -> Iterator[str]:
        raise TransportError("list inbox: cannot reach MESH", hint="check OPTOUT_MESH_URL")

    box.inbox = down  # type: ignore[method-assign]
    with pytest.raises(TransportError):
        check_cohort(cohort, out=tmp_path / "c.dat", settings=settings, store=store, mailbox=box)
    (req,) = state.list_requests(store)
    assert req.state == "sent"  # the request is kept: `optout check --collect` later

"""Issue 3 "Faults": the MESH sandbox restarted while `optout check` waits — nothing is lost.

A real mesh-sandbox process (file store) is started for this test alone. The client sends its
request and waits; the sandbox process is then killed and started again on the same port and
data folder; the reference responder answers after the restart and the waiting client collects
the reply as if nothing had happened.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from optout import nhs_number
from optout.check import check_cohort
from optout.check.cleaned_list import read_cleaned_list
from optout.config import Settings
from optout.mesh import MeshMailbox
from optout.service import Register, Responder
from optout.service.sandbox import (
    _spawn_sandbox,
    ping,
    service_settings,
    start_sandbox,
    stop_sandbox,
)
from optout.service.sandbox import org_settings as org_settings_of
from optout.store import Store

pytestmark = pytest.mark.slow


# Generous: on a busy machine a real process (uvicorn, the client thread) may wait seconds for a
# CPU. Every wait below is on a condition and returns as soon as it holds.
PATIENCE = 120.0


def _wait_until(pred, what: str, timeout: float = PATIENCE) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")


def test_sandbox_restarted_mid_wait_loses_nothing(tmp_path: Path) -> None:
    state = tmp_path / "sandbox"
    info = start_sandbox(state, with_responder=False, ready_timeout=PATIENCE)
    try:
        register = Register(tmp_path / "register")
        register.seed(2_000, 0.1, seed=5)
        register.publish()
        cohort_numbers = nhs_number.synthetic(2_000, seed=5)[:500]
        cohort = tmp_path / "cohort.csv"
        cohort.write_text("nhs_number\n" + "\n".join(str(int(n)) for n in cohort_numbers) + "\n")
        out = tmp_path / "cleaned.dat"
        store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
        result: dict[str, object] = {}
        pauses: list[float] = []  # one per pause of the waiting client, each after a finished poll
        settings = Settings(home=tmp_path / "home", store_url=store.url)
        settings.mesh = org_settings_of(info)

        def paced(seconds: float) -> None:
            pauses.append(seconds)
            time.sleep(seconds)

        def client() -> None:
            try:
                result["ok"] = check_cohort(
                    cohort,
                    out=out,
                    settings=settings,
                    wait=timedelta(seconds=4 * 60),  # returns as soon as the reply is in
                    store=store,
                    sleep=paced,
                    first_poll=0.2,
                    max_poll=0.5,
                )
            except BaseException as exc:  # reported by the assertion below
                result["error"] = exc

        waiting = threading.Thread(target=client, daemon=True)
        waiting.start()
        # Restart the sandbox only once the client is *waiting*: it has sent the request and
        # finished its first poll (its first pause comes after it). Seeing the request on the
        # central mailbox is not enough: the client may not have polled yet, and a first poll
        # that cannot reach MESH is an error by design (test_mesh_unreachable_at_first_poll_...).
        _wait_until(lambda: "error" in result or len(pauses) >= 1, "the client has polled once")
        assert "error" not in result, result.get("error")
        service = MeshMailbox(service_settings(info))
        assert len(list(service.inbox())) == 1  # the request is on the central mailbox
        service.close()
        old = psutil.Process(info.pid)
        os.killpg(info.pid, signal.SIGTERM)
        old.wait(timeout=PATIENCE)  # gone, and its port free for the new one
        # the client polls the dead sandbox at least once: the pause counted now may come before
        # a poll that began before the sandbox died; the poll after the next pause cannot have
        pauses_then = len(pauses)
        _wait_until(
            lambda: "error" in result or len(pauses) >= pauses_then + 2, "the client polled a dead sandbox"
        )
        assert "error" not in result, result.get("error")  # later polls may fail: it keeps waiting
        proc = _spawn_sandbox(state / "data", info.port, info.shared_key, state / "sandbox.log")
        info.pid = proc.pid
        (state / "sandbox.json").write_text(info.to_json())
        _wait_until(lambda: proc.poll() is not None or ping(info.url), "the new sandbox answers")
        assert proc.poll() is None, f"the new sandbox exited: see {state / 'sandbox.log'}"

        # the request survived the restart; the service answers it now
        mailbox = MeshMailbox(service_settings(info))
        responder = Responder(register, mailbox)
        _wait_until(lambda: responder.run_once() == 1, "the service answered the request")
        mailbox.close()
        waiting.join(timeout=PATIENCE)
        assert not waiting.is_alive(), "the client did not collect the reply"
        assert "error" not in result, result.get("error")
        allow = read_cleaned_list(out)
        expected = register.answer(nhs_number.sorted_unique(cohort_numbers))
        assert allow.numbers.tolist() == sorted(int(n) for n in expected)
        assert allow.checked_at <= datetime.now(UTC)
        register.close()
    finally:
        stop_sandbox(state)

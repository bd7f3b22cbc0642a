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


def _wait_until(pred, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_sandbox_restarted_mid_wait_loses_nothing(tmp_path: Path) -> None:
    state = tmp_path / "sandbox"
    info = start_sandbox(state, with_responder=False)
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
        settings = Settings(home=tmp_path / "home", store_url=store.url)
        settings.mesh = org_settings_of(info)

        def client() -> None:
            try:
                result["ok"] = check_cohort(
                    cohort,
                    out=out,
                    settings=settings,
                    wait=timedelta(seconds=90),
                    store=store,
                    first_poll=0.2,
                    max_poll=0.5,
                )
            except BaseException as exc:  # reported by the assertion below
                result["error"] = exc

        waiting = threading.Thread(target=client, daemon=True)
        waiting.start()
        # the request is on the central mailbox: now restart the sandbox under the waiting client
        service = MeshMailbox(service_settings(info))
        _wait_until(lambda: "error" in result or any(True for _ in service.inbox()))
        assert "error" not in result, result.get("error")
        service.close()
        os.killpg(info.pid, signal.SIGTERM)
        _wait_until(lambda: not ping(info.url, timeout=0.5))
        time.sleep(1.0)  # the client polls a dead sandbox for a while
        proc = _spawn_sandbox(state / "data", info.port, info.shared_key, state / "sandbox.log")
        info.pid = proc.pid
        (state / "sandbox.json").write_text(info.to_json())
        _wait_until(lambda: ping(info.url, timeout=0.5))

        # the request survived the restart; the service answers it now
        mailbox = MeshMailbox(service_settings(info))
        responder = Responder(register, mailbox)
        _wait_until(lambda: responder.run_once() == 1)
        mailbox.close()
        waiting.join(timeout=120)
        assert "error" not in result, result.get("error")
        allow = read_cleaned_list(out)
        expected = register.answer(nhs_number.sorted_unique(cohort_numbers))
        assert allow.numbers.tolist() == sorted(int(n) for n in expected)
        assert allow.checked_at <= datetime.now(UTC)
        register.close()
    finally:
        stop_sandbox(state)

"""A check round trip over MESH (1 M and 10 M NHS numbers) against the floor of copying the bytes.

Everything runs in this one process against a real ``mesh-sandbox`` started here on loopback (no
responder process: the reference service's :class:`~optout.service.Responder` is driven with
``run_once()`` so its time is measured on its own) and stopped at the end. The central register
holds ``POPULATION`` synthetic people, ``ctx.opt_out_rate`` of them opted out, published once
before anything is timed (001 §8.4: answers come from the published snapshot).

Per cohort size, the real code path, timed per stage (the library API, as ``optout check`` calls it):

- **validate**: ``read_cohort`` on a one-column CSV (header ``nhs_number``, shuffled order): read,
  normalise, validate, de-duplicate and sort;
- **write**: ``check_cohort(..., wait=None)`` minus its time inside MESH ``send``: the request
  ``.dat`` bytes, the fsynced request file, the request state and audit rows;
- **send**: the org mailbox's ``send`` (chunked upload of the request);
- **answer**: ``Responder.run_once()``: list + download the request, parse and validate it, look
  it up in the snapshot, format the reply, send the SUCCESS notification and the cleaned list,
  record it, acknowledge;
- **receive**: inside ``collect()``: the org mailbox's inbox listing, downloads and
  acknowledgements of the two replies;
- **store**: the rest of ``collect()``: classify, parse the cleaned list, check it is a subset of
  what was sent, write ``cleaned.dat`` + its sidecar atomically, state and audit rows.

The **floor** in the same sandbox, same mailboxes, same adapter (:class:`~optout.mesh.MeshMailbox`),
same request bytes: the org sends the ``.dat`` to the service mailbox, the service downloads it and
sends the very same bytes back, the org downloads them (acknowledging each; nothing parsed).

Compared (see docs/speed.md, "MESH round trip"): the service's **answer** time, and the **client
overhead** = (client stages - the floor's two org legs) / floor, i.e. how much longer the round
trip would take than the floor if the service only passed the bytes back. Equivalently
``(client stages + floor's service legs) / floor`` = 1 + overhead.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.core import Context

NAME = "mesh_roundtrip"
TITLE = "MESH round trip (check service) vs copying the bytes through the sandbox"
ORDER = 60
GROUP = "mesh"
REPEAT = 1

POPULATION = 10_000_000  # people in the central register (its snapshot holds the opted-out ones)
DEFAULT_SIZES = (1_000_000, 10_000_000)
ANSWER_TARGET_SECONDS = 60.0  # the service answers 10 M numbers in under 60 s (2 cores)
OVERHEAD_TARGET = 0.20  # the client adds under 20 % on top of the floor
CLIENT_STAGES = ("validate", "write", "send", "receive", "store")
RESULTS_KEY = "mesh_roundtrip"
REPEAT_EACH = 2  # real round trips and floors per size; each stage's fastest run is reported


class TimedMailbox:
    """A :class:`MeshMailbox` whose transport calls are timed (seconds per call kind)."""

    def __init__(self, box: Any) -> None:
        self.box = box
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.box, name)

    def reset(self) -> None:
        self.seconds.clear()

    def total(self, *kinds: str) -> float:
        return sum(self.seconds[k] for k in kinds)

    def send(self, **kwargs: Any) -> str:
        t0 = time.perf_counter()
        try:
            return str(self.box.send(**kwargs))
        finally:
            self.seconds["send"] += time.perf_counter() - t0

    def inbox(self, **kwargs: Any) -> Iterator[str]:
        it = self.box.inbox(**kwargs)
        while True:
            t0 = time.perf_counter()
            try:
                message_id = next(it)
            except StopIteration:
                return
            finally:
                self.seconds["inbox"] += time.perf_counter() - t0
            yield message_id

    def retrieve(self, message_id: str) -> Any:
        t0 = time.perf_counter()
        try:
            return self.box.retrieve(message_id)
        finally:
            self.seconds["retrieve"] += time.perf_counter() - t0

    def acknowledge(self, message_id: str) -> None:
        t0 = time.perf_counter()
        try:
            self.box.acknowledge(message_id)
        finally:
            self.seconds["acknowledge"] += time.perf_counter() - t0


def _write_cohort(path: Path, people: np.ndarray, size: int, seed: int) -> None:
    """A one-column CSV of ``size`` people of the register's population, in shuffled order."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng([seed, size])
    chosen = people[rng.permutation(people.size)[:size]] if size < people.size else rng.permutation(people)
    text = pa.array(chosen).cast(pa.string())
    pacsv.write_csv(pa.table({"nhs_number": text}), path)


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in d.items()}


def _real_round_trip(
    cohort_csv: Path, here: Path, *, register: Any, info: Any, org: TimedMailbox, service: TimedMailbox
) -> tuple[dict[str, float], dict[str, float], Any]:
    """One check, the way ``optout check`` does it; returns (stage seconds, answer parts, cohort)."""
    from optout.check import check_cohort, collect, read_cohort
    from optout.config import Settings
    from optout.service import Responder
    from optout.service.sandbox import reset_sandbox
    from optout.store import Store

    here.mkdir(parents=True)
    settings = Settings(home=here / "client-home", mesh=org.box.settings, actor="bench")
    store = Store(settings.db_url)
    responder = Responder(register, service)  # type: ignore[arg-type]
    out = here / "cleaned.dat"
    stages: dict[str, float] = {}
    parts: dict[str, float] = {}
    reset_sandbox(info)

    t0 = time.perf_counter()
    cohort = read_cohort(cohort_csv)
    stages["validate"] = time.perf_counter() - t0

    org.reset()
    t0 = time.perf_counter()
    sent = check_cohort(cohort, out=out, settings=settings, store=store, wait=None, mailbox=org)
    elapsed = time.perf_counter() - t0
    stages["send"] = org.total("send")
    stages["write"] = elapsed - stages["send"]
    assert sent.state == "sent" and sent.sent_count == cohort.size, sent.state

    service.reset()
    t0 = time.perf_counter()
    answered = responder.run_once()
    stages["answer"] = time.perf_counter() - t0
    assert answered == 1, f"the responder answered {answered} requests"
    parts["download"] = service.total("inbox", "retrieve")
    parts["upload"] = service.total("send")
    parts["acknowledge"] = service.total("acknowledge")
    parts["compute"] = stages["answer"] - parts["download"] - parts["upload"] - parts["acknowledge"]

    org.reset()
    t0 = time.perf_counter()
    done = collect(sent.local_id, settings=settings, store=store, mailbox=org)
    elapsed = time.perf_counter() - t0
    stages["receive"] = org.total("inbox", "retrieve", "acknowledge")
    stages["store"] = elapsed - stages["receive"]
    expected = int(register.answer(cohort.numbers).size)
    assert done.state == "collected" and done.returned_count == expected, (done.state, done.returned_count)
    assert out.stat().st_size == expected * 12 and out.with_name(out.name + ".json").is_file()
    store.engine.dispose()
    shutil.rmtree(here)
    return stages, parts, cohort


def _floor(body: bytes, *, info: Any, org: TimedMailbox, service: TimedMailbox) -> dict[str, float]:
    """The same bytes there and back through the same sandbox and adapter, nothing parsed."""
    from optout.service.sandbox import reset_sandbox

    reset_sandbox(info)
    workflow = org.box.settings.workflow_id
    legs: dict[str, float] = {}
    t0 = time.perf_counter()
    org.send(
        recipient=info.service_mailbox, data=body, workflow_id=workflow, subject="floor", local_id="floor"
    )
    t1 = time.perf_counter()
    legs["org_send"] = t1 - t0
    (message_id,) = list(service.inbox())
    got = service.retrieve(message_id).body
    t2 = time.perf_counter()
    legs["service_download"] = t2 - t1
    service.send(
        recipient=info.org_mailbox, data=got, workflow_id=workflow, subject="floor", local_id="floor"
    )
    service.acknowledge(message_id)
    t3 = time.perf_counter()
    legs["service_send"] = t3 - t2
    (back_id,) = list(org.inbox())
    back = org.retrieve(back_id).body
    org.acknowledge(back_id)
    legs["org_download"] = time.perf_counter() - t3
    assert back == body, "the floor's copy came back different"
    reset_sandbox(info)
    return legs


def _fastest(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: min(r[k] for r in runs) for k in runs[0]}


def _one_size(
    size: int,
    *,
    people: np.ndarray,
    register: Any,
    info: Any,
    work: Path,
    seed: int,
    org: TimedMailbox,
    service: TimedMailbox,
    repeat: int,
) -> dict[str, Any]:
    from optout.check.request import dat_bytes

    cohort_csv = work / f"cohort-{size}.csv"
    _write_cohort(cohort_csv, people, size, seed)
    real_runs: list[dict[str, float]] = []
    part_runs: list[dict[str, float]] = []
    floor_runs: list[dict[str, float]] = []
    for i in range(repeat):
        stages, parts, cohort = _real_round_trip(
            cohort_csv, work / f"n{size}-{i}", register=register, info=info, org=org, service=service
        )
        real_runs.append(stages)
        part_runs.append(parts)
        body = dat_bytes(cohort.numbers)  # the very bytes the request carried
        returned = int(register.answer(cohort.numbers).size)
        del cohort
        floor_runs.append(_floor(body, info=info, org=org, service=service))
        del body
    stages = _fastest(real_runs)  # each stage's fastest run, and the fastest floor
    legs = min(floor_runs, key=lambda r: sum(r.values()))
    floor = sum(legs.values())
    client = sum(stages[k] for k in CLIENT_STAGES)
    org_legs = legs["org_send"] + legs["org_download"]
    return {
        "numbers": size,
        "returned": returned,
        "request_bytes": size * 12,
        "reply_bytes": returned * 12,
        "repeat": repeat,
        "stages_seconds": _round(stages),
        "answer_parts_seconds": _round(min(part_runs, key=lambda r: sum(r.values()))),
        "floor_seconds": round(floor, 3),
        "floor_legs_seconds": _round(legs),
        "client_seconds": round(client, 3),
        "client_overhead_vs_floor": round((client - org_legs) / floor, 3),
        "roundtrip_seconds": round(client + stages["answer"], 3),
        "roundtrip_vs_floor": round((client + stages["answer"]) / floor, 3),
        "answer_numbers_per_second": round(size / stages["answer"]),
        "runs": {
            "stages_seconds": [_round(r) for r in real_runs],
            "floor_seconds": [round(sum(r.values()), 3) for r in floor_runs],
        },
    }


def measure(
    sizes: list[int] | tuple[int, ...],
    *,
    work: Path,
    population: int = POPULATION,
    opt_out_rate: float = 0.055,
    seed: int = 2026,
    repeat: int = 2,
    log: Any = None,
) -> dict[str, Any]:
    """Start a sandbox in ``work``, seed + publish a register, run every size; stop the sandbox."""
    from optout.mesh import MeshMailbox
    from optout.nhs_number import synthetic
    from optout.service import Register
    from optout.service.sandbox import org_settings, service_settings, start_sandbox, stop_sandbox

    say = log or (lambda _msg: None)
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 1 or sizes[-1] > population:
        raise ValueError(f"sizes must be between 1 and the register's population ({population})")
    work.mkdir(parents=True, exist_ok=True)
    state_dir = work / "sandbox"
    t0 = time.perf_counter()
    register = Register(work / "register")
    opted = register.seed(population, opt_out_rate, seed=seed)
    register.publish()
    people = synthetic(population, seed=seed)
    seeded = time.perf_counter() - t0
    say(f"register: {population:,} people, {opted:,} opted out, published in {seeded:.1f} s")
    info = start_sandbox(state_dir, with_responder=False)
    per_size: dict[str, Any] = {}
    try:
        org = TimedMailbox(MeshMailbox(org_settings(info)))
        service = TimedMailbox(MeshMailbox(service_settings(info)))
        org.box.handshake()
        service.box.handshake()
        try:
            for size in sizes:
                say(f"{size:,} numbers ...")
                r = _one_size(
                    size,
                    people=people,
                    register=register,
                    info=info,
                    work=work,
                    seed=seed,
                    org=org,
                    service=service,
                    repeat=repeat,
                )
                per_size[str(size)] = r
                say(
                    f"  answer {r['stages_seconds']['answer']:.1f} s, client {r['client_seconds']:.1f} s, "
                    f"floor {r['floor_seconds']:.1f} s, overhead {100 * r['client_overhead_vs_floor']:.0f} %"
                )
        finally:
            org.box.close()
            service.box.close()
    finally:
        stop_sandbox(state_dir)
        register.close()
    largest = per_size[str(sizes[-1])]
    return {
        "register": {
            "people": population,
            "opted_out": opted,
            "opt_out_rate": opt_out_rate,
            "seconds_to_seed_and_publish": round(seeded, 2),
        },
        "sizes": per_size,
        "targets": [
            {
                "id": "mesh_answer_seconds",
                "target": f"the service answers {sizes[-1]:,} numbers in under {ANSWER_TARGET_SECONDS:g} s",
                "measured": largest["stages_seconds"]["answer"],
                "met": largest["stages_seconds"]["answer"] < ANSWER_TARGET_SECONDS,
            },
            {
                "id": "mesh_client_overhead",
                "target": f"the client adds under {100 * OVERHEAD_TARGET:g} % on top of the floor "
                f"({sizes[-1]:,} numbers)",
                "measured": largest["client_overhead_vs_floor"],
                "met": largest["client_overhead_vs_floor"] < OVERHEAD_TARGET,
            },
        ],
    }


def save(path: Path, result: dict[str, Any], machine: dict[str, Any] | None = None) -> None:
    """Merge into ``path`` under its own key (read-modify-write; other keys are kept)."""
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    entry = {"started_at": datetime.now(UTC).replace(microsecond=0).isoformat(), **result}
    if machine:
        entry["machine"] = machine
    data[RESULTS_KEY] = entry
    tmp = path.with_suffix(".json.mesh.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.extra.get("mesh_sizes") or list(DEFAULT_SIZES)
    t0 = time.perf_counter()
    result = measure(
        sizes,
        work=Path(ctx.work_dir) / "mesh",
        opt_out_rate=ctx.opt_out_rate,
        seed=ctx.seed,
        repeat=int(ctx.extra.get("mesh_repeat") or REPEAT_EACH),
    )
    largest = result["sizes"][str(max(sizes))]
    return {
        # the harness's "seconds": the service's answer time at the largest size
        "seconds": largest["stages_seconds"]["answer"],
        "total_seconds": round(time.perf_counter() - t0, 1),
        **result,
    }


def report(console: Any, result: dict[str, Any]) -> None:
    """Print the per-stage table (called by ``python -m bench`` after its own table)."""
    from rich.table import Table

    sizes = result["sizes"]
    table = Table(title="MESH round trip through mesh-sandbox (seconds)")
    table.add_column("stage")
    for n in sizes:
        table.add_column(f"{int(n) / 1e6:g} M numbers", justify="right")
    for stage in ("validate", "write", "send", "answer", "receive", "store"):
        table.add_row(stage, *(f"{sizes[n]['stages_seconds'][stage]:.2f}" for n in sizes))
    table.add_row("client (all but answer)", *(f"{sizes[n]['client_seconds']:.2f}" for n in sizes))
    table.add_row("floor (bytes copied there and back)", *(f"{sizes[n]['floor_seconds']:.2f}" for n in sizes))
    table.add_row(
        "client overhead vs floor",
        *(f"{100 * sizes[n]['client_overhead_vs_floor']:.0f} %" for n in sizes),
    )
    table.add_row("whole round trip / floor", *(f"{sizes[n]['roundtrip_vs_floor']:.2f}x" for n in sizes))
    console.print(table)
    for t in result["targets"]:
        mark = "[green]met[/green]" if t["met"] else "[red]NOT met[/red]"
        console.print(f"  {t['target']}: {t['measured']:.2f} {mark}")

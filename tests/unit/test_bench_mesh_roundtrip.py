"""The MESH round-trip benchmark stage runs end to end on ~2 000 numbers (a smoke test: nothing timed).

It starts its own mesh-sandbox on loopback, seeds and publishes a small register, runs the real
check (validate, write, send, answer, receive, store) and the floor (the same bytes copied there
and back), and stops the sandbox again.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from bench.stages import mesh_roundtrip  # the repository root is on pytest's pythonpath
from rich.console import Console

STAGES = {"validate", "write", "send", "answer", "receive", "store"}


@pytest.mark.slow
def test_round_trip_and_floor_on_2000_numbers(tmp_path: Path) -> None:
    from optout.service.sandbox import sandbox_status

    result = mesh_roundtrip.measure([2_000, 500], work=tmp_path / "work", population=5_000, opt_out_rate=0.1)
    assert sandbox_status(tmp_path / "work" / "sandbox") is None  # stopped at the end
    assert result["register"] == {**result["register"], "people": 5_000, "opted_out": 500}
    assert set(result["sizes"]) == {"500", "2000"}
    r = result["sizes"]["2000"]
    assert set(r["stages_seconds"]) == STAGES and all(v >= 0 for v in r["stages_seconds"].values())
    # the cleaned list holds the people of the cohort without an opt-out: some, not all
    assert 1_500 < r["returned"] < 2_000
    assert r["request_bytes"] == 2_000 * 12 and r["reply_bytes"] == r["returned"] * 12
    assert len(r["runs"]["stages_seconds"]) == len(r["runs"]["floor_seconds"]) == r["repeat"] == 2
    assert set(r["floor_legs_seconds"]) == {"org_send", "service_download", "service_send", "org_download"}
    client = sum(r["stages_seconds"][s] for s in mesh_roundtrip.CLIENT_STAGES)
    assert r["client_seconds"] == pytest.approx(client, abs=0.01)
    org_legs = r["floor_legs_seconds"]["org_send"] + r["floor_legs_seconds"]["org_download"]
    # every figure is rounded to the millisecond, so a ratio recomputed from them is known only
    # within that rounding, which a small floor (a fast machine) magnifies: check it lies there
    ms = 0.0005
    tops = [client - org_legs + k * (len(mesh_roundtrip.CLIENT_STAGES) + 2) * ms for k in (-1, 1)]
    ratios = [top / (r["floor_seconds"] + k * ms) for top in tops for k in (-1, 1)]
    assert min(ratios) - ms <= r["client_overhead_vs_floor"] <= max(ratios) + ms
    assert [t["id"] for t in result["targets"]] == ["mesh_answer_seconds", "mesh_client_overhead"]

    out = io.StringIO()
    mesh_roundtrip.report(Console(file=out, width=150), result)
    assert "floor" in out.getvalue() and "answer" in out.getvalue()

    results = tmp_path / "results.json"
    results.write_text(json.dumps({"runs": {"other": {"kept": True}}}))
    mesh_roundtrip.save(results, result, {"cpu": "x"})
    saved = json.loads(results.read_text())
    assert saved["runs"] == {"other": {"kept": True}}  # other stages' results are not clobbered
    assert saved[mesh_roundtrip.RESULTS_KEY]["sizes"]["2000"]["returned"] == r["returned"]


def test_sizes_must_fit_the_register(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="population"):
        mesh_roundtrip.measure([10_000], work=tmp_path, population=5_000)


def test_stage_interface() -> None:
    from bench import stages

    assert stages.get("mesh_roundtrip") is mesh_roundtrip
    assert mesh_roundtrip.GROUP == "mesh" and not getattr(mesh_roundtrip, "IS_FLOOR", False)
    assert callable(mesh_roundtrip.save) and callable(mesh_roundtrip.report)

"""A release made by the real ``apply_opt_outs`` for a registered flow, then disclosed: the
manifest apply writes is the one ``optout.release.lifecycle`` verifies, and the flow's version is kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from optout import audit
from optout.dat import write_dat
from optout.errors import IntegrityError, PolicyRefusal
from optout.nhs_number import synthetic
from optout.policy.register import add_flow, edit_flow
from optout.release import apply_opt_outs
from optout.release.lifecycle import disclose, get_release, verify_release_dir
from optout.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RECIPIENT = "University of Exampleshire"
FLOW = {
    "name": "Heart failure study",
    "origin": {"sector": "health", "country": "england", "funding": "public"},
    "data": {"confidentiality": "confidential", "nhs_number": "present"},
    "purpose": "research",
    "legal_basis": "s251",
    "recipient": {"name": RECIPIENT, "type": "university", "role": "third-party"},
}


@pytest.fixture
def made(tmp_path: Path) -> tuple[Store, str, Path]:
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    add_flow(store, FLOW, flow_id="hf", now=T0)
    people = synthetic(40, seed=7)
    extract = tmp_path / "episodes.csv"
    extract.write_text(
        "nhs_number,los\n" + "".join(f"{n},{i % 9}\n" for i, n in enumerate(people)), encoding="utf-8"
    )
    cleaned = tmp_path / "cleaned.dat"
    write_dat(cleaned, np.sort(people[:35]))
    report = apply_opt_outs(
        [extract],
        out_dir=tmp_path / "out",
        cleaned_list=cleaned,
        checked_at=T0,
        flow_id="hf",
        store=store,
        now=T0 + timedelta(hours=1),
    )
    return store, report.release_id, tmp_path / "out"


def test_apply_release_is_tied_to_the_flow_and_discloses(made: tuple[Store, str, Path]) -> None:
    store, rid, _out = made
    rel = get_release(store, rid)
    assert (rel.flow_id, rel.flow_version, rel.stored_state) == ("hf", 1, "prepared")
    assert rel.deadline == T0 + timedelta(days=20)
    _manifest, files = verify_release_dir(rel)
    assert [f.path for f in files] == ["episodes.csv"] and files[0].opt_out_upheld
    result = disclose(store, rid, to=RECIPIENT, now=T0 + timedelta(days=19))
    assert result.release.state() == "disclosed" and result.linkcheck is None
    assert [e.action for e in audit.entries(store) if e.subject == rid] == [
        "release.preparing",  # recorded before the folder was renamed into place
        "release.prepared",
        "release.disclosed",
    ]


def test_apply_release_tampered_or_flow_changed_is_refused(made: tuple[Store, str, Path]) -> None:
    store, rid, out = made
    data = out / "episodes.csv"
    original = data.read_bytes()
    data.write_bytes(original.replace(b"\n", b"\r\n"))
    with pytest.raises(IntegrityError, match=r"episodes\.csv has changed"):
        disclose(store, rid, to=RECIPIENT, now=T0 + timedelta(days=1))
    data.write_bytes(original)
    edit_flow(store, "hf", set_values=["owner=Caldicott Guardian"], now=T0 + timedelta(days=1))
    with pytest.raises(PolicyRefusal, match="changed owner"):
        disclose(store, rid, to=RECIPIENT, now=T0 + timedelta(days=2))

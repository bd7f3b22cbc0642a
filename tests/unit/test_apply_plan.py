"""optout.release.plan and the release folder: NHS-column detection, links, choices that do not
fit together, and the atomic folder (nothing left behind on any failure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from optout.dat import write_dat
from optout.errors import InputError, OptoutError, UsageError
from optout.nhs_number import format_number, synthetic
from optout.release import apply_opt_outs
from optout.release.engines.base import Engine
from optout.release.engines.duckdb import DuckDBEngine
from optout.release.engines.polars import PolarsEngine
from optout.release.plan import make_plan, parse_link
from optout.store import Store

N = [format_number(int(n)) for n in synthetic(3, seed=1)]
CHECKED = datetime(2026, 3, 2, tzinfo=UTC)


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("header", "found"),
    [
        ("id,nhs_number", "nhs_number"),
        ("id,NHSNumber", "NHSNumber"),
        ("id,NHS No", "NHS No"),
        ("id,nhs-no", "nhs-no"),
        ("id,Patient_NHS_Number", "Patient_NHS_Number"),
        ("id,NHS", "NHS"),
    ],
)
def test_nhs_column_detected_by_name(tmp_path: Path, header: str, found: str) -> None:
    plan = make_plan([_csv(tmp_path / "t.csv", f"{header}\n1,{N[0]}\n")])
    assert plan.tables[0].nhs_column == found


def test_nhs_column_override_beats_ambiguity(tmp_path: Path) -> None:
    t = _csv(tmp_path / "t.csv", f"nhs_number,nhs_no\n{N[0]},{N[1]}\n")
    with pytest.raises(UsageError, match="more than one"):
        make_plan([t])
    assert make_plan([t], nhs_columns={"t": "nhs_no"}).tables[0].nhs_column == "nhs_no"
    assert make_plan([t], nhs_columns=["t=nhs_no"]).tables[0].nhs_column == "nhs_no"


def test_links_order_parents_first_and_allow_dotted_names(tmp_path: Path) -> None:
    p = _csv(tmp_path / "v1.patients.csv", f"pid,nhs_number\n1,{N[0]}\n")
    c = _csv(tmp_path / "episodes.csv", "eid,pid\n1,1\n")
    g = _csv(tmp_path / "items.csv", "iid,eid\n1,1\n")
    plan = make_plan([g, c, p], links=["items.eid=episodes.eid", "episodes.pid=v1.patients.pid"])
    assert [t.name for t in plan.tables] == ["v1.patients", "episodes", "items"]
    assert str(plan.tables[1].link) == "episodes.pid=v1.patients.pid"


def test_link_mistakes(tmp_path: Path) -> None:
    p = _csv(tmp_path / "patients.csv", f"pid,nhs_number\n1,{N[0]}\n")
    c = _csv(tmp_path / "episodes.csv", "eid,pid\n1,1\n")
    with pytest.raises(UsageError, match="did you mean 'patients'"):
        make_plan([p, c], links=["episodes.pid=patient.pid"])
    with pytest.raises(InputError, match="no column 'pd'"):
        make_plan([p, c], links=["episodes.pd=patients.pid"])
    with pytest.raises(UsageError, match=r"child\.column=parent\.column"):
        make_plan([p, c], links=["episodes.pid"])
    with pytest.raises(UsageError, match="loop"):
        make_plan([p, c], links=["episodes.pid=patients.pid", "patients.pid=episodes.pid"])
    with pytest.raises(UsageError, match="linked twice"):
        make_plan([p, c], links=["episodes.pid=patients.pid", "episodes.eid=patients.pid"])
    with pytest.raises(UsageError, match="itself"):
        parse_link("patients.pid=patients.pid", ["patients"])


def test_choices_that_do_not_fit(tmp_path: Path) -> None:
    t = _csv(tmp_path / "t.csv", f"pid,nhs_number\n1,{N[0]}\n")
    with pytest.raises(UsageError, match="--reason"):
        make_plan([t], unmatched="release")
    with pytest.raises(UsageError, match="only for --unmatched release"):
        make_plan([t], release_reason="legally-restricted")
    with pytest.raises(UsageError, match="--trace-index"):
        make_plan([t], unmatched="trace")
    idx = _csv(tmp_path / "idx.csv", f"mrn,nhs_number\n1,{N[0]}\n")
    with pytest.raises(UsageError, match="local identifier"):
        make_plan([t], unmatched="trace", trace_index=idx)
    plan = make_plan([t], unmatched="trace", trace_index=idx, trace_keys=["t=pid"])
    assert plan.tables[0].trace_key == "pid" and plan.trace is not None and plan.trace.key_column == "mrn"
    with pytest.raises(UsageError, match="both named"):
        make_plan([t, _csv(tmp_path / "t.tsv", "a\n1\n")])


def _setup(tmp_path: Path) -> tuple[list[Path], Path]:
    t = _csv(tmp_path / "t.csv", "pid,nhs_number\n" + "".join(f"{i},{n}\n" for i, n in enumerate(N)))
    write_dat(tmp_path / "l.dat", sorted(int(n) for n in N[:2]))
    return [t], tmp_path / "l.dat"


@pytest.mark.parametrize("engine", [DuckDBEngine, PolarsEngine])
def test_a_failure_while_writing_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: type[Engine]
) -> None:
    tables, cl = _setup(tmp_path)

    def boom(self: Engine, table: str, out_path: Path) -> int:
        out_path.write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(engine, "write", boom)
    with pytest.raises(OSError):
        apply_opt_outs(
            tables,
            out_dir=tmp_path / "rel",
            cleaned_list=cl,
            checked_at=CHECKED,
            engine=engine.name,
            store=Store(f"sqlite:///{tmp_path / 'meta.db'}"),
            now=CHECKED + timedelta(days=1),
        )
    assert not (tmp_path / "rel").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("where", "recorded"),
    [
        ("optout.release.make._record_preparing", None),  # before the rename: nothing recorded
        ("optout.release.recover.mark_prepared", "failed"),  # after it: the folder is undone
    ],
)
def test_a_store_failure_undoes_the_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, recorded: str | None
) -> None:
    """A release folder exists only when it is recorded (the lifecycle needs the row)."""
    import sqlalchemy as sa

    from optout.store import releases

    tables, cl = _setup(tmp_path)

    def fail(*a: object, **k: object) -> None:
        raise OptoutError("store down", hint="x")

    monkeypatch.setattr(where, fail)
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "old.txt").write_text("previous release")
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    with pytest.raises(OptoutError, match="store down"):
        apply_opt_outs(
            tables,
            out_dir=tmp_path / "rel",
            cleaned_list=cl,
            checked_at=CHECKED,
            store=store,
            now=CHECKED + timedelta(days=1),
            force=True,
        )
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["old.txt"]  # the old one is back
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with store.begin() as conn:
        states = [r.state for r in conn.execute(sa.select(releases.c.state))]
    assert states == ([recorded] if recorded else [])


def test_interrupted_after_it_was_recorded_the_release_is_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C/SIGTERM after "prepared" but before the apply finished: the folder is rolled back,
    so the record must not stay prepared."""
    from optout import audit
    from optout.release.lifecycle import get_release
    from optout.release.manifest import StagedRelease

    tables, cl = _setup(tmp_path)

    def interrupted(self: StagedRelease) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(StagedRelease, "finish", interrupted)
    (tmp_path / "rel").mkdir()
    (tmp_path / "rel" / "old.txt").write_text("previous release")
    store = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    with pytest.raises(KeyboardInterrupt):
        apply_opt_outs(
            tables,
            out_dir=tmp_path / "rel",
            cleaned_list=cl,
            checked_at=CHECKED,
            store=store,
            now=CHECKED + timedelta(days=1),
            force=True,
        )
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["old.txt"]
    entries = audit.entries(store)
    assert [e.action for e in entries] == ["release.preparing", "release.prepared", "release.failed"]
    rid = entries[0].subject
    assert rid is not None and get_release(store, rid).stored_state == "failed"


def test_engines_reject_unknown_names(tmp_path: Path) -> None:
    tables, cl = _setup(tmp_path)
    with pytest.raises(UsageError, match="engine"):
        apply_opt_outs(tables, out_dir=tmp_path / "rel", cleaned_list=cl, checked_at=CHECKED, engine="nosuch")

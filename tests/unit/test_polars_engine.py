"""The Polars engine's paths that small random tables do not reach: classification in slices of
rows (long Parquet tables), and a synthetic extract with odd spellings, missing and invalid numbers
and a link, each checked against the reference engine (the executable spec)."""

from __future__ import annotations

import csv
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from optout import synth
from optout.nhs_number import check_digit, synthetic
from optout.release import apply_opt_outs
from optout.release.engines import polars as polars_engine
from optout.release.engines.base import Status
from optout.store import Store

CHECKED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POOL = [int(n) for n in synthetic(40, seed=3)]  # valid numbers
OUTSIDE = [int(n) for n in synthetic(5, seed=4)]  # valid, and perhaps outside the allow-list's span
# valid numbers with consecutive prefixes (number // 10): people who share a byte of a bit map
NEIGHBOURS = [p * 10 + d for p in range(999_000_000, 999_000_024) if (d := check_digit(p)) is not None]


def _read(path: Path) -> list[Any]:
    """What a recipient reads: every row's values ('' and null alike), header included."""
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    with path.open(newline="", encoding="utf-8") as fh:
        return [[v or None for v in row] for row in csv.reader(fh)]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
@pytest.mark.parametrize("unmatched", ["withhold", "release"])
@pytest.mark.parametrize("people_map", ["held", "bytes", "bits"])
@pytest.mark.parametrize("parent_people", ["held", "read again"])
def test_sliced_classification_agrees_with_reference(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    unmatched: str,
    people_map: str,
    parent_people: str,
) -> None:
    monkeypatch.setattr(polars_engine, "SLICE_ROWS", 700)  # 3000 episodes: five slices
    if parent_people == "read again":  # a parent too long to hold its rows' people
        monkeypatch.setattr(polars_engine, "PEOPLE_ROWS_MAX", 100)
    if people_map != "held":  # maps even for small tables (past one person held per status)
        monkeypatch.setattr(polars_engine._PeopleSets, "HELD_MAX", 1)
    if people_map == "bits":  # as when the allow-list spans more numbers than a byte map may take
        monkeypatch.setattr(polars_engine._PeopleSets, "BYTES_MAX", 0)
    ex = synth.extract(
        tmp_path / "x", 400, 3000, seed=7, format=fmt, messy_rate=0.2, missing_rate=0.05, invalid_rate=0.05
    )
    pop = synth.population(400, 7)
    synth.write_cleaned_list(tmp_path / "cleaned.dat", synth.cleaned_list(pop, 0.1, 7))
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    results = {}
    for engine in ("polars", "reference"):
        rep = apply_opt_outs(
            ex.tables,
            out_dir=tmp_path / engine,
            cleaned_list=tmp_path / "cleaned.dat",
            checked_at=CHECKED,
            links=ex.links,
            nhs_columns=ex.nhs_columns,
            unmatched=unmatched,
            release_reason="disproportionate-effort" if unmatched == "release" else None,
            engine=engine,
            store=store,
            now=CHECKED + timedelta(days=1),
        )
        results[engine] = (
            rep.to_dict()["tables"],
            {p.name: _read(tmp_path / engine / p.name) for p in ex.tables},
        )
    assert results["polars"][0] == results["reference"][0]
    assert results["polars"][1] == results["reference"][1]
    kept = {t["name"]: t["rows_out"] for t in results["polars"][0]}
    assert 0 < kept["episodes"] < 3000


def _release_extract(tmp_path: Path, ex: Any, **options: Any) -> Any:
    """A synthetic extract released into ``tmp_path/rel`` against ``tmp_path/cleaned.dat``, a day
    after the check, rows with unmatched numbers withheld."""
    return apply_opt_outs(
        ex.tables,
        out_dir=tmp_path / "rel",
        cleaned_list=tmp_path / "cleaned.dat",
        checked_at=CHECKED,
        links=ex.links,
        nhs_columns=ex.nhs_columns,
        unmatched="withhold",
        store=Store(f"sqlite:///{tmp_path / 'store.db'}"),
        now=CHECKED + timedelta(days=1),
        **options,
    )


def test_the_counting_thread_keeps_order_stays_bounded_and_reports_errors() -> None:
    """``_Later``: the people counts' work runs in the order handed over; handing over more than
    ``AHEAD`` waiting pieces waits for the oldest (memory stays bounded); an error comes out of
    ``wait`` (and the queue is usable after it)."""
    later = polars_engine._Later()
    gate = threading.Event()
    done: list[int] = []

    def first() -> None:  # holds the thread until the gate opens
        gate.wait(30)
        done.append(0)

    def fails() -> None:
        raise ZeroDivisionError

    later(first)
    for i in range(1, later.AHEAD):
        later(partial(done.append, i))  # queued behind it: handed over at once
    extra = threading.Thread(target=later, args=(partial(done.append, later.AHEAD),))
    extra.start()
    extra.join(0.2)
    assert extra.is_alive()  # one too many: waits for the oldest, which cannot finish yet
    gate.set()
    extra.join(30)
    assert not extra.is_alive()
    later.wait()
    assert done == list(range(later.AHEAD + 1))

    later(lambda: None)
    later(fails)
    later(partial(done.append, -1))
    with pytest.raises(ZeroDivisionError):
        later.wait()
    later(partial(done.append, 99))
    later.wait()
    assert done[-1] == 99
    later.close()


def test_a_failure_while_counting_people_leaves_no_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """People are counted on a thread beside the writes; when that fails, the release fails with
    it (nothing is left), rather than going out with wrong counts."""
    ex = synth.extract(tmp_path / "x", 50, 200, seed=3, format="parquet")
    pop = synth.population(50, 3)
    synth.write_cleaned_list(tmp_path / "cleaned.dat", synth.cleaned_list(pop, 0.1, 3))

    def broken(self: Any, code: int, q: Any) -> None:
        raise MemoryError("while counting")

    monkeypatch.setattr(polars_engine._PeopleSets, "_add_prefixes", broken)
    with pytest.raises(MemoryError):
        _release_extract(tmp_path, ex, engine="polars")
    assert not (tmp_path / "rel").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@given(
    allow=st.lists(st.sampled_from(POOL + NEIGHBOURS), min_size=1, unique=True),
    added=st.lists(
        st.tuples(
            st.sampled_from(list(Status)), st.lists(st.sampled_from(POOL + NEIGHBOURS + OUTSIDE), max_size=30)
        ),
        max_size=12,
    ),
    bits=st.booleans(),
    held_max=st.integers(0, 40),
)
@example(  # every status at once: more than there are maps
    allow=POOL[:10],
    added=[(s, POOL[i : i + 12] + OUTSIDE[:1]) for i, s in enumerate(Status)],
    bits=False,
    held_max=0,
)
@example(  # neighbours in one store: two bits of one byte at once
    allow=NEIGHBOURS,
    added=[(Status.KEPT, NEIGHBOURS + NEIGHBOURS[::-1])],
    bits=True,
    held_max=0,
)
def test_people_sets_count_distinct_people_exactly(
    allow: list[int], added: list[tuple[Any, list[int]]], bits: bool, held_max: int
) -> None:
    """``_PeopleSets`` against Python's sets: people inside the allow-list's span (held sorted
    and merged addition by addition, or in byte or bit maps once past ``HELD_MAX``; neighbours
    sharing a byte of a bit map), outside it (kept as numbers), more statuses than there are
    maps, repeats within and across additions, and the offset that stands for no one."""
    sets = polars_engine._PeopleSets(np.array(sorted(allow), dtype=np.int64))
    sets.HELD_MAX = held_max
    if bits:
        sets.BYTES_MAX = 0
    expected: dict[int, set[int]] = {}
    for status, persons in added:
        sets.add(int(status), np.array(persons, dtype=np.int64))
        sets.add_prefixes(int(status), np.full(len(persons), sets.nobody, dtype=np.uint32))  # no one
        expected.setdefault(int(status), set()).update(persons)
    for code in expected:
        assert sets.count(code) == len(expected[code])


@given(
    values=st.lists(st.integers(0, 2**32 - 1), max_size=50),
    dtype=st.sampled_from(["int64", "uint32"]),
    step=st.integers(1, 3),
)
def test_numpy_arrays_reach_polars_unchanged(values: list[int], dtype: str, step: int) -> None:
    """``_series``: a NumPy array (strided too) as a Polars Series of the asked type, values equal."""
    import polars as pl

    x = np.array(values, dtype=dtype)[::step]
    got = polars_engine._series(x, pl.Int64 if dtype == "int64" else pl.UInt32)
    assert got.dtype == (pl.Int64 if dtype == "int64" else pl.UInt32)
    assert got.to_list() == x.tolist()


def _python_canonical(text: str | None) -> int | None:
    """The rule the engine's text keys follow: an integer exactly as ``str(int)`` writes it."""
    if text is None:
        return None
    try:
        n = int(text)
    except ValueError:
        return None
    return n if str(n) == text and -(2**63) <= n < 2**63 else None


CANONICAL_CASES = [
    "0", "7", "-7", "10", "9223372036854775807",  # canonical
    "07", "00", "-0", "-07", "+7", " 7", "7 ", "\t7", "7.0", "1_000", "1e3", "٣", "", "-", "+",
    "9223372036854775808",  # not canonical, or not an Int64
]  # fmt: skip


@pytest.mark.parametrize("text", CANONICAL_CASES)
def test_canonical_text_keys(text: str) -> None:
    import polars as pl

    got = pl.DataFrame({"k": [text]}, schema={"k": pl.String}).select(polars_engine._canonical(pl.col("k")))
    assert got.item() == _python_canonical(text)


@given(st.text(alphabet="0123456789+- \t_.e٣", max_size=6) | st.integers(-(2**63), 2**63 - 1).map(str))
def test_canonical_text_keys_property(text: str) -> None:
    import polars as pl

    got = pl.DataFrame({"k": [text]}, schema={"k": pl.String}).select(polars_engine._canonical(pl.col("k")))
    assert got.item() == _python_canonical(text)


def test_a_latin1_trace_index_is_copied_into_the_spill_folder_not_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine classifies before the release's staging folder exists only when it writes
    nothing; a Latin-1 trace index needs a UTF-8 copy, so it must wait for its spill folder
    (never a file beside the sources)."""
    from optout.dat import write_dat

    people = [str(n) for n in synthetic(4, seed=3)]
    src = tmp_path / "src"
    src.mkdir()
    rows = ["pid,nhs_number", f"pé0,{people[0]}", "pé1,", f"pé2,{people[2]}"]
    (src / "patients.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    index = ["pid,nhs_number", f"pé1,{people[1]}", f"pé0,{people[0]}"]
    (src / "index.csv").write_bytes(("\n".join(index) + "\n").encode("latin-1"))
    write_dat(tmp_path / "cleaned.dat", sorted(int(n) for n in people))
    copies: list[Path] = []
    real = polars_engine.PolarsEngine._utf8_path

    def utf8_path(self: Any, source: Any) -> Path:
        copies.append(real(self, source))
        return copies[-1]

    monkeypatch.setattr(polars_engine.PolarsEngine, "_utf8_path", utf8_path)
    before = sorted(p.name for p in src.iterdir())
    rep = apply_opt_outs(
        [src / "patients.csv"],
        out_dir=tmp_path / "rel",
        cleaned_list=tmp_path / "cleaned.dat",
        checked_at=CHECKED,
        unmatched="trace",
        trace_index=src / "index.csv",
        trace_keys={"patients": "pid"},
        store=Store(f"sqlite:///{tmp_path / 'store.db'}"),
        now=CHECKED + timedelta(days=1),
    )
    assert sorted(p.name for p in src.iterdir()) == before
    copied = [p for p in copies if p.name != "patients.csv"]
    assert copied and all(p.parent != src for p in copied)  # in the spill folder, gone now
    assert rep.tables[0].rows_out == 3  # p1 traced through the index


def test_a_hashing_file_hashes_what_it_writes_and_gives_up_after_a_seek(tmp_path: Path) -> None:
    import hashlib

    from optout.release.engines.base import HashingFile

    with HashingFile(tmp_path / "a") as f:
        f.write(b"abc")
        f.write(memoryview(b"defg"))
        assert f.tell() == 7
        assert f.sha256() is None  # not until closed
    assert (
        f.sha256()
        == hashlib.sha256(b"abcdefg").hexdigest()
        == hashlib.sha256((tmp_path / "a").read_bytes()).hexdigest()
    )
    with HashingFile(tmp_path / "b") as g:
        g.write(b"abc")
        g.seek(0)
        g.write(b"x")
    assert (tmp_path / "b").read_bytes() == b"xbc"  # written as asked
    assert g.sha256() is None  # so the caller hashes the file


@pytest.mark.parametrize("path", ["polars-parquet", "pyarrow-parquet", "csv"])
def test_the_manifest_hashes_are_the_files_hashes_when_taken_while_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """Each output is hashed on its way to the file (no second read); the manifest must still
    hold the SHA-256 of the file as it lies in the release, on every write path."""
    import hashlib
    import json

    from optout.release import make

    if path == "pyarrow-parquet":  # the exact-schema path (PyArrow's writer)
        monkeypatch.setattr(polars_engine.PolarsEngine, "_polars_writes_exactly", lambda *a: False)
    reread: list[Path] = []
    real_sha = make.sha256_file
    monkeypatch.setattr(make, "sha256_file", lambda p: (reread.append(p), real_sha(p))[1])
    fmt = "csv" if path == "csv" else "parquet"
    ex = synth.extract(tmp_path / "x", 60, 300, seed=5, format=fmt, missing_rate=0.05, invalid_rate=0.05)
    pop = synth.population(60, 5)
    synth.write_cleaned_list(tmp_path / "cleaned.dat", synth.cleaned_list(pop, 0.2, 5))
    _release_extract(tmp_path, ex)
    manifest = json.loads((tmp_path / "rel" / "release.json").read_text())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (tmp_path / "rel").iterdir()
        if p.name != "release.json"
    }
    assert not [p for p in reread if p.parent.name.startswith(".rel")]  # none read back


def test_a_hashing_file_sends_its_bytes_to_disk_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import os

    from optout.release.engines import base

    synced: list[int] = []
    monkeypatch.setattr(base.HashingFile, "SYNC_EVERY", 10)
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(os.fstat(fd).st_size))
    blocks = [bytes([i]) * 7 for i in range(9)]
    with base.HashingFile(tmp_path / "a") as f:
        for b in blocks:
            f.write(b)
            if f._syncing is not None:
                f._syncing.result()  # one at a time, so each is seen
    data = b"".join(blocks)
    assert (tmp_path / "a").read_bytes() == data
    assert f.sha256() == hashlib.sha256(data).hexdigest()
    assert synced and all(0 < n <= len(data) for n in synced)  # flushed to the OS before each sync
    assert synced == sorted(synced)


@pytest.mark.parametrize("kind", ["polars writes it as it is", "a decimal", "a time in seconds"])
def test_a_parquet_release_keeps_the_source_schema_whichever_writer_it_takes(
    tmp_path: Path, kind: str
) -> None:
    """The probe (the first rows written by Polars in memory, started while the tables are
    classified) sends a table whose types Polars would change to PyArrow's writer: either way
    the release has the source's schema and values, and nothing but the release in its folder."""
    import pyarrow as pa

    numbers = POOL[:6]
    cols: dict[str, Any] = {"nhs_number": pa.array(numbers, pa.int64())}
    if kind == "a decimal":  # types Polars would write differently (found by the probe)
        from decimal import Decimal

        cols["cost"] = pa.array([Decimal(f"{d}.20") for d in range(6)], pa.decimal128(10, 2))
    elif kind == "a time in seconds":
        from datetime import time

        cols["seen"] = pa.array([time(8, 30, d) for d in range(6)], pa.time32("s"))
    else:
        cols["ward"] = pa.array(["A", "B", "A", "C", "B", "A"])
    src = tmp_path / "episodes.parquet"
    pq.write_table(pa.table(cols), src, compression="zstd")
    synth.write_cleaned_list(tmp_path / "cleaned.dat", np.array(sorted(numbers[:4]), dtype=np.int64))
    apply_opt_outs(
        [src],
        out_dir=tmp_path / "rel",
        cleaned_list=tmp_path / "cleaned.dat",
        checked_at=CHECKED,
        engine="polars",
        store=Store(f"sqlite:///{tmp_path / 'store.db'}"),
        now=CHECKED + timedelta(days=1),
    )
    out = tmp_path / "rel" / "episodes.parquet"
    assert pq.read_schema(out) == pq.read_schema(src)
    assert pq.read_table(out).to_pylist() == [
        r for r in pq.read_table(src).to_pylist() if r["nhs_number"] in numbers[:4]
    ]
    assert sorted(p.name for p in (tmp_path / "rel").iterdir()) == ["episodes.parquet", "release.json"]


def _csv_release(tmp_path: Path, text: str, engine: str, unmatched: str = "withhold") -> Any:
    from optout.dat import write_dat

    (tmp_path / "t.csv").write_text(text, encoding="utf-8")
    write_dat(tmp_path / "l.dat", np.array(sorted(POOL[:6]), dtype=np.int64))
    return apply_opt_outs(
        [tmp_path / "t.csv"],
        out_dir=tmp_path / engine,
        cleaned_list=tmp_path / "l.dat",
        checked_at=CHECKED,
        unmatched=unmatched,
        engine=engine,
        store=Store(f"sqlite:///{tmp_path / 'store.db'}"),
        now=CHECKED + timedelta(days=1),
    )


def test_a_short_csv_row_is_still_refused_with_its_row_number(tmp_path: Path) -> None:
    """A row with fewer fields than the header (which Polars would pad) is refused, by row."""
    rows = [
        "id,nhs_number,note",
        *(f"{i},{n},x" for i, n in enumerate(POOL[:5])),
        f"5,{POOL[5]}",
        f"6,{POOL[6]},",
    ]
    with pytest.raises(polars_engine.InputError) as exc:
        _csv_release(tmp_path, "\n".join(rows) + "\n", "polars")
    assert exc.value.where is not None and exc.value.where.row == 6
    assert str(POOL[5]) not in exc.value.render()


@pytest.mark.parametrize(("given", "seen"), [(None, "2"), ("7", "7")])
def test_the_parquet_reader_reads_ahead_two_row_groups_unless_told(given: str | None, seen: str) -> None:
    """The engine asks Polars to read ahead two row groups (a lower peak at the same speed);
    a value already in the environment is kept."""
    from tests.support.cli import python_stdout

    code = (
        "import os\n"
        "import optout.release.engines.polars as p\n"
        "print('prefetch:', os.environ.get(p.PREFETCH_ENV))\n"
    )
    out = python_stdout(code, env_var=polars_engine.PREFETCH_ENV, given=given)
    assert f"prefetch: {seen}" in out


@given(
    texts=st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(
                [str(n) for n in POOL[:5]] + ["0" + str(POOL[0])[:9], "9434765919", "9434765918"]
            ),
            st.integers(0, 10**11).map(str),
            st.text(alphabet="0123456789 -+", min_size=0, max_size=12),
        ),
        max_size=30,
    ),
    chi=st.booleans(),
)
def test_text_numbers_checked_as_integers_where_they_can_be(texts: list[str | None], chi: bool) -> None:
    """``_numbers`` with the fast candidate: text of ten ASCII digits is checked as that integer,
    the rest by the text rules; the result is the text rules' for every row."""
    import types

    import polars as pl

    raw = pl.Series("n", texts, dtype=pl.String)
    plan_table = types.SimpleNamespace(nhs_column="n", chi=chi)
    cand_expr = polars_engine.PolarsEngine._candidate(None, plan_table, pl.String)  # type: ignore[arg-type]
    cand = raw.to_frame().select(cand_expr.alias("c"))["c"]
    got_vals, got_reasons = polars_engine._numbers(raw, chi, cand)
    want_vals, want_reasons = polars_engine._numbers(raw, chi)
    assert got_reasons.tolist() == want_reasons.tolist()
    valid = want_reasons == 0
    assert got_vals[valid].tolist() == want_vals[valid].tolist()

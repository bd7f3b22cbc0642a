"""The Spark engine (``--engine spark``): NHS numbers read exactly as ``parse`` reads them, row order,
the release folder of parts and its manifest, broadcast or shuffle joins (said in the report), no
partial release after a failure, and the opt-out data kept out of plans, errors and logs.

The engine's agreement with the other engines on whole releases is in tests/spec/test_apply_policy.py
and tests/generative/test_apply_engines_agree.py; all run on the one session ``spark`` fixture."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.support.outputs import parts, read_output
from tests.support.printed import nhs_numbers_in

from optout.dat import write_dat
from optout.errors import InputError, OptoutError
from optout.nhs_number import _WS, format_number, parse, synthetic
from optout.release import apply_opt_outs
from optout.release.engines import spark as spark_engine
from optout.release.engines.spark import SparkEngine, with_nhs_number
from optout.store import Store

CHECKED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = CHECKED + timedelta(days=1)
NUMS = [format_number(int(n)) for n in synthetic(40, seed=77)]
TEN = re.compile(r"(?<!\d)\d{10}(?!\d)")

ODD_VALUES = [
    None,
    "",
    "   ",
    "9434765919",
    " 9434765919 ",
    "\xa09434765919\t",
    "943 476 5919",
    "943-476-5919",
    "943 - 476 - 5919",
    "-9434765919",
    "9434765919-",
    "94347659190",
    "943476591",
    "9434765918",
    "9434765919\u2028",
    "9434765919\n",
    "9.434765919E+09",
    "9.434765919e9",
    "+9434765919",
    "9434765919.0",
    "9434765919.5",
    "9.434765919E-09",
    "1E999999999",
    "0E5",
    "000009434765919",
    "9434765919.000",
    "٩٤٣٤٧٦٥٩١٩",  # Arabic-Indic digits: not ASCII
    "abc",
    "12 34",
    "2939408734",  # bad CHI date
    "0113011113",  # bad CHI date
    "2902000006",  # 29/02/00: a date
    "2939408735",  # bad check digit
    "113011113",  # 9 digits: CHI with its zero lost
    "0000000000",
    *NUMS[:5],
]


def _spark_parse(spark: Any, values: list[Any], ddl: str, chi: bool) -> list[tuple[int, int | None]]:
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], f"i int, v {ddl}")
    out = with_nhs_number(df, "v", chi=chi).orderBy("i").select("__reason", "__norm").collect()
    return [(int(r["__reason"]), r["__norm"]) for r in out]


def _python_parse(values: list[Any], chi: bool) -> list[tuple[int, int | None]]:
    return [(int(p.reason), p.value) for p in (parse(v, chi=chi) for v in values)]


def test_whitespace_is_the_nhs_number_modules() -> None:
    assert spark_engine._WS == _WS


@pytest.mark.parametrize("chi", [False, True])
def test_text_values_read_as_parse_reads_them(spark: Any, chi: bool) -> None:
    assert _spark_parse(spark, ODD_VALUES, "string", chi) == _python_parse(ODD_VALUES, chi)


def test_numeric_columns_read_as_parse_reads_them(spark: Any) -> None:
    ints = [
        None,
        0,
        -1,
        943476591,
        9434765919,
        9434765918,
        10**10,
        113011113,
        2939408734,
        *map(int, NUMS[:3]),
    ]
    for chi in (False, True):
        assert _spark_parse(spark, ints, "bigint", chi) == _python_parse(ints, chi)
    floats = [
        None,
        float("nan"),
        float("inf"),
        -float("inf"),
        9434765919.0,
        9434765919.5,
        -3.0,
        1e30,
        113011113.0,
    ]
    for chi in (False, True):
        assert _spark_parse(spark, floats, "double", chi) == _python_parse(floats, chi)


_ALPHABET = "0123456789 -+.eE\t\xa0x"


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=_ALPHABET, max_size=16),
            st.sampled_from(NUMS).map(lambda n: f" {n[:3]} {n[3:6]}-{n[6:]}"),
            st.sampled_from(NUMS).map(lambda n: f"{int(n) / 1e9:.9f}E+09"),
            st.integers(0, 10**10).map(str),
        ),
        min_size=200,
        max_size=200,
    ),
    st.booleans(),
)
def test_any_text_reads_as_parse_reads_it(spark: Any, values: list[str], chi: bool) -> None:
    assert _spark_parse(spark, values, "string", chi) == _python_parse(values, chi)


# --------------------------------------------------------------------------- releases


def _extract(root: Path, *, groups: int = 1, rows: int = 400) -> tuple[list[Path], Path]:
    """patients (Parquet, several row groups, NHS numbers as text) and episodes (CSV, linked)."""
    rng = np.random.default_rng(3)
    people = [NUMS[i % len(NUMS)] for i in range(rows)]
    nhs = [p if i % 17 else f"{p[:3]} {p[3:6]} {p[6:]}" for i, p in enumerate(people)]
    patients = pa.table({"pid": [f"p{i}" for i in range(rows)], "nhs_number": nhs, "seq": list(range(rows))})
    src = root / "src"
    src.mkdir()
    pq.write_table(patients, src / "patients.parquet", row_group_size=max(rows // groups, 1))
    with (src / "episodes.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["eid", "pid", "note"])
        for i in range(rows * 2):
            w.writerow([f"e{i}", f"p{int(rng.integers(0, rows + 5))}", f"note, {i}"])
    allow = sorted({int(n) for n in NUMS[: len(NUMS) * 3 // 4]})
    cl = src / "cleaned.dat"
    write_dat(cl, allow)
    return [src / "patients.parquet", src / "episodes.csv"], cl


def _apply(root: Path, tables: list[Path], cl: Path, engine: str, name: str, **kw: Any) -> Any:
    return apply_opt_outs(
        tables,
        out_dir=root / name,
        cleaned_list=cl,
        checked_at=CHECKED,
        links=["episodes.pid=patients.pid"],
        engine=engine,
        store=Store(f"sqlite:///{root / 'store.db'}"),
        now=NOW,
        **kw,
    )


@pytest.mark.parametrize("broadcast_rows", [None, 0])
def test_release_in_file_order_as_parts_listed_in_the_manifest(
    spark: Any, tmp_path: Path, broadcast_rows: int | None
) -> None:
    tables, cl = _extract(tmp_path, groups=8)
    ref = _apply(tmp_path, tables, cl, "reference", "ref")
    options = {} if broadcast_rows is None else {"broadcast_rows": broadcast_rows}
    old = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2048")  # several splits of one file
    try:
        rep = _apply(tmp_path, tables, cl, "spark", "rel", engine_options=options)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
    assert rep.to_dict()["tables"] == ref.to_dict()["tables"]
    joined = "broadcast" if broadcast_rows is None else "shuffle join"
    assert rep.engine_details["allow_list"] == joined
    out = tmp_path / "rel"
    for name in ("patients.parquet", "episodes.csv"):
        assert read_output(out / name).to_pylist() == read_output(tmp_path / "ref" / name).to_pylist()
    if broadcast_rows is None:  # nothing shuffled: one part per split of the file, in order
        assert len(parts(out / "patients.parquet")) > 1
    manifest = json.loads((out / "release.json").read_text())
    assert manifest["choices"]["engine_details"]["allow_list"] == joined
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"release.json"}
    assert set(listed) == on_disk  # no _SUCCESS, no .crc: every file is a listed part
    for rel, f in listed.items():
        p = out / rel
        assert hashlib.sha256(p.read_bytes()).hexdigest() == f["sha256"]
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    for t in rep.tables:
        assert sum(f["rows"] for f in listed.values() if f["table"] == t.name) == t.rows_out


def test_a_failed_write_leaves_no_release(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tables, cl = _extract(tmp_path)
    calls = []

    def boom(self: SparkEngine, folder: Path, src: Any) -> Any:
        calls.append(folder)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, folder, src)

    real = SparkEngine._tidy
    monkeypatch.setattr(SparkEngine, "_tidy", boom)
    with pytest.raises(OSError):
        _apply(tmp_path, tables, cl, "spark", "rel")
    assert not (tmp_path / "rel").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_session_is_left_running_and_cleaned(spark: Any, tmp_path: Path) -> None:
    tables, cl = _extract(tmp_path, rows=50)
    _apply(tmp_path, tables, cl, "spark", "rel")
    assert spark.range(3).count() == 3  # not stopped: it was the caller's
    assert spark.conf.get("spark.sql.execution.arrow.localRelationThreshold") != "0"  # restored
    assert spark.sparkContext._jsc.getPersistentRDDs().size() == 0  # nothing left cached


# --------------------------------------------------------------------------- privacy


def _numbers_in(text: str) -> list[str]:
    return nhs_numbers_in(text)


def test_plans_hold_no_number(spark: Any, tmp_path: Path) -> None:
    """The allow-list is an RDD of Arrow batches, not a LocalRelation (whose rows would travel in
    every plan); no plan names a number from the list or the data."""
    from optout.release.engines.base import Lists
    from optout.release.plan import make_plan

    tables, _cl = _extract(tmp_path, rows=60)
    plan = make_plan(tables, links=["episodes.pid=patients.pid"], unmatched="withhold")
    allow = np.array(sorted({int(n) for n in NUMS}), dtype=np.int64)
    with SparkEngine() as eng:
        eng.classify(plan, Lists(allow=allow))
        texts = []
        for t in plan.tables:
            for order in (False, True):
                df = eng._classified(t, plan, Lists(allow=allow), order=order)
                qe = df._jdf.queryExecution()
                texts += [qe.toString(), qe.optimizedPlan().toJSON(), qe.executedPlan().toString()]
        assert "LocalRelation" not in eng._allow._jdf.queryExecution().analyzed().toString()
    text = "\n".join(texts)
    assert "LogicalRDD" in text
    assert _numbers_in(text) == []


def test_errors_and_logs_never_show_a_number(
    spark: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Odd values (ANSI mode on: a failing cast would quote its value), a ragged CSV row: the
    engine's errors name the file and row, never a value, and Spark logs none."""
    src = tmp_path / "src"
    src.mkdir()
    odd = [v for v in ODD_VALUES if v is not None and "\n" not in v and "\u2028" not in v]
    rows = [[f"p{i}", v] for i, v in enumerate(odd)]
    with (src / "patients.csv").open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows([["pid", "nhs_number"], *rows])
    cl = src / "cleaned.dat"
    write_dat(cl, sorted({int(n) for n in NUMS}))
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    kw: dict[str, Any] = {
        "cleaned_list": cl,
        "checked_at": CHECKED,
        "engine": "spark",
        "store": store,
        "now": NOW,
    }
    with pytest.raises(OptoutError) as refused:  # --unmatched fail: row numbers, classes
        apply_opt_outs([src / "patients.csv"], out_dir=tmp_path / "a", **kw)
    rep = apply_opt_outs([src / "patients.csv"], out_dir=tmp_path / "b", unmatched="withhold", **kw)
    with (src / "patients.csv").open("a", encoding="utf-8") as fh:
        fh.write(f"p99,{NUMS[0]},extra\n")
    with pytest.raises(InputError) as ragged:
        apply_opt_outs([src / "patients.csv"], out_dir=tmp_path / "c", unmatched="withhold", **kw)
    assert ragged.value.where is not None and ragged.value.where.row == len(rows) + 1
    out, err = capfd.readouterr()
    text = "\n".join([refused.value.render(), ragged.value.render(), rep.to_json(), out, err])
    assert _numbers_in(text) == []
    assert (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    manifest = (tmp_path / "b" / "release.json").read_text()
    assert _numbers_in(manifest) == []


def test_memory_sizes() -> None:
    assert spark_engine._memory("2GB") == "2g"
    assert spark_engine._memory("512MB") == "512m"
    assert spark_engine._memory(None) == spark_engine.DEFAULT_DRIVER_MEMORY
    with pytest.raises(OptoutError):
        spark_engine._memory("75%")


def test_owner_only_outputs_whatever_the_umask(spark: Any, tmp_path: Path) -> None:
    tables, cl = _extract(tmp_path, rows=30)
    old = os.umask(0)
    try:
        _apply(tmp_path, tables, cl, "spark", "rel")
    finally:
        os.umask(old)
    for p in (tmp_path / "rel").rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) in (0o600, 0o700), p


@pytest.mark.parametrize(
    ("encoding", "delimiter", "newline"), [("latin-1", ";", "\r\n"), ("utf-8", "\t", "\n")]
)
def test_csv_dialects_as_the_reference(
    spark: Any, tmp_path: Path, encoding: str, delimiter: str, newline: str
) -> None:
    """Delimiter, line ending, encoding, quoted delimiters and quotes, empty values: the same
    values go out as from the reference engine, in the same dialect."""
    src = tmp_path / "src"
    src.mkdir()
    rows = [
        ["pid", "nhs_number", "note"],
        ["p1", NUMS[0], 'café; "quoted"'],
        ["p2", NUMS[1], ""],
        ["p3", f" {NUMS[2][:3]} {NUMS[2][3:6]} {NUMS[2][6:]} ", "a\tb"],
        ["p4", NUMS[3], "  spaces kept  "],
    ]
    path = src / "patients.csv"
    with path.open("w", newline="", encoding=encoding) as fh:
        csv.writer(fh, delimiter=delimiter, lineterminator=newline).writerows(rows)
    cl = src / "cleaned.dat"
    write_dat(cl, sorted(int(n) for n in NUMS[:3]))
    out = {}
    for engine in ("reference", "spark"):
        apply_opt_outs(
            [path],
            out_dir=tmp_path / engine,
            cleaned_list=cl,
            checked_at=CHECKED,
            engine=engine,
            store=Store(f"sqlite:///{tmp_path / 'store.db'}"),
            now=NOW,
        )
        out[engine] = read_output(tmp_path / engine / "patients.csv").to_pylist()
    assert out["spark"] == out["reference"]
    assert len(out["spark"]) == 3
    part = parts(tmp_path / "spark" / "patients.csv")[0].read_bytes()
    assert part.startswith(f"pid{delimiter}nhs_number{delimiter}note{newline}".encode())
    part.decode(encoding)  # the source's encoding

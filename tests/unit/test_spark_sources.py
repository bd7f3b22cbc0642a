"""The Spark engine's inputs and outputs beyond single local files: folders of part files, URIs,
catalog tables in and out, and what the manifest records for each; the embedded engines refuse
what only Spark reads; a failure leaves no release and no table.

Every release is compared with the reference engine's on the same rows, as in
tests/unit/test_spark_engine.py; all run on the one session ``spark`` fixture."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.support.outputs import read_output

from optout.dat import write_dat
from optout.errors import OptoutError, OutputError, UsageError
from optout.nhs_number import format_number, synthetic
from optout.release import apply_opt_outs
from optout.release import make as make_module
from optout.release.engines import spark as spark_engine
from optout.release.manifest import StagedRelease
from optout.store import Store

CHECKED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = CHECKED + timedelta(days=1)
NUMS = [format_number(int(n)) for n in synthetic(30, seed=91)]
ROWS = 120
LINKS = ["episodes.pid=patients.pid"]


def _rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    patients = [
        {"pid": f"p{i}", "nhs_number": NUMS[i % len(NUMS)] if i % 23 else "not a number", "seq": i}
        for i in range(ROWS)
    ]
    episodes = [
        {"eid": f"e{i}", "pid": f"p{(i * 7) % (ROWS + 4)}", "note": f"note, {i}"} for i in range(ROWS * 2)
    ]
    return patients, episodes


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def extract(tmp_path: Path) -> dict[str, Path]:
    """The same rows as single files (``files/``) and as folders of part files (``folders/``:
    patients.parquet/ of three Parquet parts, episodes/ of two CSV parts; Spark's bookkeeping
    files beside them), and the cleaned list."""
    patients, episodes = _rows()
    files, folders = tmp_path / "files", tmp_path / "folders"
    files.mkdir()
    folders.mkdir()
    pq.write_table(pa.Table.from_pylist(patients), files / "patients.parquet")
    _write_csv(files / "episodes.csv", episodes)
    pdir, edir = folders / "patients.parquet", folders / "episodes"
    pdir.mkdir()
    edir.mkdir()
    for k, lo in enumerate(range(0, ROWS, 50)):
        pq.write_table(pa.Table.from_pylist(patients[lo : lo + 50]), pdir / f"part-{k:05d}.parquet")
    (pdir / "_SUCCESS").write_bytes(b"")
    half = len(episodes) // 2
    _write_csv(edir / "part-00000.csv", episodes[:half])
    _write_csv(edir / "part-00001.csv", episodes[half:])
    (edir / "_SUCCESS").write_bytes(b"")
    cl = tmp_path / "cleaned.dat"
    write_dat(cl, sorted({int(n) for n in NUMS[:20]}))
    return {"root": tmp_path, "files": files, "folders": folders, "cleaned": cl}


def _apply(ex: dict[str, Path], tables: list[Any], engine: str, name: str, **kw: Any) -> Any:
    return apply_opt_outs(
        tables,
        out_dir=ex["root"] / name,
        cleaned_list=ex["cleaned"],
        checked_at=CHECKED,
        links=LINKS,
        unmatched="withhold",
        engine=engine,
        store=Store(f"sqlite:///{ex['root'] / 'store.db'}"),
        now=NOW,
        **kw,
    )


def _reference(ex: dict[str, Path]) -> Any:
    files = ex["files"]
    return _apply(ex, [files / "patients.parquet", files / "episodes.csv"], "reference", "ref")


def _tables(report: Any) -> dict[str, Any]:
    """The report's tables without the file names (a folder or a catalog table is named apart)."""
    return {
        t["name"]: {k: v for k, v in t.items() if k not in ("file", "format")}
        for t in report.to_dict()["tables"]
    }


def _ref_rows(ex: dict[str, Path], name: str) -> list[dict[str, Any]]:
    return read_output(ex["root"] / "ref" / name).to_pylist()


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "release.json").read_text())


def _key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in row.values())


# --------------------------------------------------------------------------- folders, URIs


def test_folders_of_part_files_as_the_same_rows_in_one_file(spark: Any, extract: dict[str, Path]) -> None:
    ref = _reference(extract)
    folders = extract["folders"]
    rep = _apply(extract, [folders / "patients.parquet", folders / "episodes"], "spark", "rel")
    assert _tables(rep) == _tables(ref)
    out = extract["root"] / "rel"
    # in order: the parts of a folder are read in name order, each in its own order
    assert read_output(out / "patients.parquet").to_pylist() == _ref_rows(extract, "patients.parquet")
    assert read_output(out / "episodes").to_pylist() == _ref_rows(extract, "episodes.csv")
    manifest = _manifest(out)
    inputs = {i["table"]: i for i in manifest["inputs"]}
    for table, folder in (("patients", folders / "patients.parquet"), ("episodes", folders / "episodes")):
        entry = inputs[table]
        assert entry["kind"] == "folder"
        names = sorted(p.name for p in folder.iterdir() if p.name.startswith("part-"))
        assert [p["path"] for p in entry["parts"]] == names  # not _SUCCESS, not .crc
        lines = ""
        for part in entry["parts"]:
            digest = hashlib.sha256((folder / part["path"]).read_bytes()).hexdigest()
            assert part["sha256"] == digest
            lines += f"{digest}  {part['path']}\n"
        assert entry["sha256"] == hashlib.sha256(lines.encode()).hexdigest()  # sha256sum part-* | sha256sum


def test_a_folder_is_one_table_of_parts_with_the_same_columns(tmp_path: Path) -> None:
    from optout.errors import InputError
    from optout.tables import open_table, read_column

    folder = tmp_path / "episodes"
    folder.mkdir()
    with pytest.raises(InputError, match="no part files"):
        open_table(folder)
    (folder / "part-00000.csv").write_text("eid,pid\ne1,p1\n")
    (folder / "part-00001.csv").write_text("eid,pid\n")  # a part with no rows is fine
    (folder / "part-00002.csv").write_text("eid,pid\ne2,p2\n")
    (folder / "_SUCCESS").write_text("")
    src = open_table(folder)
    assert (src.name, src.kind, src.format) == ("episodes", "folder", "csv")
    assert [p.name for p in src.parts] == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    assert read_column(src, "eid").to_pylist() == ["e1", "e2"]  # in part-name order
    (folder / "part-00003.csv").write_text("eid,person\ne3,p3\n")
    with pytest.raises(InputError, match="other columns"):
        open_table(folder)


def test_a_file_uri_is_a_local_path(spark: Any, extract: dict[str, Path]) -> None:
    ref = _reference(extract)
    files = extract["files"]
    uris = [(files / "patients.parquet").as_uri(), (extract["folders"] / "episodes").as_uri()]
    rep = _apply(extract, uris, "spark", "rel")
    assert _tables(rep) == _tables(ref)
    assert read_output(extract["root"] / "rel" / "episodes").to_pylist() == _ref_rows(extract, "episodes.csv")
    assert _manifest(extract["root"] / "rel")["inputs"][0]["sha256"]  # hashed on the driver


def test_a_uri_the_driver_cannot_see_is_read_by_spark(
    spark: Any, extract: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As an s3a:// or abfss:// URI is: opened, sniffed and listed through Spark's file system; the
    manifest records its parts (names, sizes, times) and a content hash Spark computed."""
    ref = _reference(extract)
    real = make_module.local_path
    monkeypatch.setattr(make_module, "local_path", lambda t: None if str(t).startswith("file:") else real(t))
    folders = extract["folders"]
    uris = [(folders / "patients.parquet").as_uri(), (folders / "episodes").as_uri()]
    rep = _apply(extract, uris, "spark", "rel")
    assert _tables(rep) == _tables(ref)
    out = extract["root"] / "rel"
    assert read_output(out / "episodes").to_pylist() == _ref_rows(extract, "episodes.csv")
    assert read_output(out / "patients.parquet").to_pylist() == _ref_rows(extract, "patients.parquet")
    inputs = {i["table"]: i for i in _manifest(out)["inputs"]}
    assert inputs["episodes"]["kind"] == "uri" and inputs["episodes"]["location"] == uris[1]
    assert [p["path"] for p in inputs["episodes"]["parts"]] == ["part-00000.csv", "part-00001.csv"]
    assert re.fullmatch(r"[0-9a-f]{64}", inputs["patients"]["content_hash"])
    assert "sha256" not in inputs["patients"]


# --------------------------------------------------------------------------- catalog tables


def _catalog(spark: Any, schema: str) -> None:
    patients, episodes = _rows()
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {schema}")
    spark.createDataFrame(patients, "pid string, nhs_number string, seq bigint").write.saveAsTable(
        f"{schema}.patients"
    )
    spark.createDataFrame(episodes, "eid string, pid string, note string").write.saveAsTable(
        f"{schema}.episodes"
    )


def test_catalog_tables_in_released_as_files_and_as_tables(
    spark: Any, extract: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    ref = _reference(extract)
    _catalog(spark, "src_a")
    names = ["spark_catalog.src_a.patients", "spark_catalog.src_a.episodes"]
    as_files = _apply(extract, [], "spark", "files_out", catalog_tables=names)
    assert _tables(as_files) == _tables(ref)
    out = extract["root"] / "files_out"
    # a table has no order: the same rows
    for name, ref_name in (("patients.parquet", "patients.parquet"), ("episodes.parquet", "episodes.csv")):
        got = read_output(out / name).to_pylist()
        assert sorted(map(_key, got)) == sorted(map(_key, _ref_rows(extract, ref_name)))
    inputs = {i["table"]: i for i in _manifest(out)["inputs"]}
    assert inputs["patients"]["kind"] == "catalog" and inputs["patients"]["location"] == names[0]
    assert inputs["patients"]["format"] == "table" and "file" not in inputs["patients"]
    assert inputs["patients"]["provider"] == "parquet" and "storage_location" in inputs["patients"]
    assert "delta_version" not in inputs["patients"]  # not Delta: identified by its content hash
    hashed = inputs["patients"]["content_hash"]

    spark.sql("CREATE DATABASE IF NOT EXISTS out_a")
    as_tables = _apply(
        extract,
        [],
        "spark",
        "tables_out",
        catalog_tables=names,
        out_tables="spark_catalog.out_a",
        out_table_prefix="r1_",
    )
    assert _tables(as_tables) == _tables(ref)
    manifest = _manifest(extract["root"] / "tables_out")
    assert manifest["files"] == []
    assert sorted(p.name for p in (extract["root"] / "tables_out").iterdir()) == ["release.json"]
    listed = {t["table"]: t for t in manifest["output_tables"]}
    assert listed["patients"]["name"] == "spark_catalog.out_a.r1_patients"
    for t in as_tables.tables:
        written = spark.table(f"out_a.r1_{t.name}")
        assert written.count() == t.rows_out == listed[t.name]["rows"]
        assert listed[t.name]["content_hash"] == spark_engine._content_hash(written)["content_hash"]
    ref_patients = _ref_rows(extract, "patients.parquet")
    got = [r.asDict() for r in spark.table("out_a.r1_patients").collect()]
    assert sorted(map(_key, got)) == sorted(map(_key, ref_patients))
    assert [t.name for t in spark.catalog.listTables("out_a")] == [
        "r1_episodes",
        "r1_patients",
    ]  # no temporary
    # the same rows in the same table: the same content hash in every release
    assert _manifest(extract["root"] / "tables_out")["inputs"][0]["content_hash"] == hashed
    with pytest.raises(OutputError, match="already exists"):  # a release never replaces a table
        _apply(
            extract, [], "spark", "again", catalog_tables=names, out_tables="out_a", out_table_prefix="r1_"
        )
    assert not (extract["root"] / "again").exists()
    assert [t.name for t in spark.catalog.listTables("out_a")] == ["r1_episodes", "r1_patients"]
    out, err = capfd.readouterr()
    manifests = "".join(
        (extract["root"] / n / "release.json").read_text() for n in ("files_out", "tables_out")
    )
    numbers = {n for n in NUMS}
    assert not [m for m in re.findall(r"\d{10}", out + err + manifests) if m in numbers]


def test_the_content_hash_is_of_the_rows_in_any_order(spark: Any) -> None:
    rows = [("a", 1), ("b", 2), ("b", 2), ("c", None)]
    h = spark_engine._content_hash(spark.createDataFrame(rows, "k string, v bigint"))
    assert h["rows"] == 4
    assert spark_engine._content_hash(spark.createDataFrame(rows[::-1], "k string, v bigint")) == h
    for other in (rows[:3], [*rows[:3], ("c", 3)], [*rows, ("b", 2)]):
        assert spark_engine._content_hash(spark.createDataFrame(other, "k string, v bigint")) != h


@pytest.mark.parametrize("engine", ["polars", "duckdb", "reference"])
def test_embedded_engines_refuse_what_only_spark_reads(engine: str, extract: dict[str, Path]) -> None:
    folders = extract["folders"]
    cases: list[dict[str, Any]] = [
        {"tables": [], "catalog_tables": ["spark_catalog.default.episodes"]},
        {"tables": ["s3a://bucket/extract/episodes.parquet"]},
        {"tables": [folders / "patients.parquet"]},
        {"tables": [extract["files"] / "patients.parquet"], "out_tables": "main.releases"},
    ]
    for case in cases:
        tables = case.pop("tables")
        with pytest.raises(UsageError) as refused:
            _apply(extract, tables, engine, "rel", **case)
        assert "--engine spark" in refused.value.render()
        assert refused.value.exit_code == 2
    assert not (extract["root"] / "rel").exists()


def test_the_cli_refuses_a_catalog_table_without_spark(
    extract: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from optout.cli import main

    args = ["apply", "--table", "main.extract.episodes", "--cleaned-list", str(extract["cleaned"])]
    args += ["--checked-at", "2026-03-02T09:00:00Z", "--out", str(extract["root"] / "rel")]
    with pytest.raises(SystemExit) as done:
        main([*args, "--engine", "duckdb"])
    assert done.value.code == 2
    assert "--engine spark" in capsys.readouterr().err
    assert not (extract["root"] / "rel").exists()


# --------------------------------------------------------------------------- failures


def test_a_failed_table_write_leaves_no_release_and_no_table(
    spark: Any, extract: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _catalog(spark, "src_b")
    spark.sql("CREATE DATABASE IF NOT EXISTS out_b")
    names = ["src_b.patients", "src_b.episodes"]
    real = spark_engine._content_hash
    calls: list[int] = []

    def fail_second(df: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 2:  # the second table written: the first is already a (temporary) table
            raise RuntimeError("disk full")
        return real(df)

    monkeypatch.setattr(spark_engine, "_content_hash", fail_second)
    with pytest.raises(OutputError):
        _apply(extract, [], "spark", "rel", catalog_tables=names, out_tables="out_b")
    monkeypatch.setattr(spark_engine, "_content_hash", real)
    assert spark.catalog.listTables("out_b") == []
    assert not (extract["root"] / "rel").exists()

    # the tables are published, then the release folder cannot be committed: both go
    def no_commit(self: StagedRelease) -> None:
        raise OutputError("the disk is full", hint="free some space")

    monkeypatch.setattr(StagedRelease, "commit", no_commit)
    with pytest.raises(OptoutError, match="disk is full"):
        _apply(extract, [], "spark", "rel", catalog_tables=names, out_tables="out_b")
    assert spark.catalog.listTables("out_b") == []
    assert not (extract["root"] / "rel").exists()
    assert [p.name for p in extract["root"].iterdir() if p.name.startswith(".")] == []


def test_temporary_tables_left_by_a_killed_job_are_swept_when_old(
    spark: Any, extract: dict[str, Path]
) -> None:
    """A job killed outright leaves its temporary tables; the next release into that schema drops
    those made more than STALE_TABLE_HOURS ago, and leaves a younger one (perhaps a release still
    running elsewhere)."""
    _catalog(spark, "src_c")
    spark.sql("CREATE DATABASE IF NOT EXISTS out_c")
    now = int(time.time())
    old = f"_optout_tmp_{now - (spark_engine.STALE_TABLE_HOURS + 1) * 3600:x}_0badc0de_patients"
    young = f"_optout_tmp_{now - 3600:x}_0badc0de_episodes"
    other = "_optout_tmp_notours"
    for name in (old, young, other):
        spark.createDataFrame([(1,)], "x int").write.saveAsTable(f"out_c.{name}")
    rep = _apply(
        extract, [], "spark", "rel_c", catalog_tables=["src_c.patients", "src_c.episodes"], out_tables="out_c"
    )
    assert rep.engine_details["stale_tables_dropped"] == 1
    left = sorted(t.name for t in spark.catalog.listTables("out_c"))
    assert left == sorted([young, other, "episodes", "patients"])

"""``optout apply`` end to end: the release folder, the manifest, the store, the report, and every
bad input (a specific message with file/row/column and a fix, the documented exit code, no
traceback, no NHS number, and no half-written release)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from tests.support.printed import nhs_numbers_in

from optout.cli import main
from optout.dat import write_dat
from optout.nhs_number import format_number, synthetic
from optout.store import Store, audit_log, releases

PEOPLE = [format_number(int(n)) for n in synthetic(8, seed=21)]
ALLOW = PEOPLE[:6]
CHECKED = "2026-11-20T09:00:00Z"
TEN_DIGITS = re.compile(r"(?<!\d)\d{10}(?!\d)")


def _no_nhs_numbers(text: str) -> None:
    found = nhs_numbers_in(text)
    assert found == [], "an NHS number was printed"
    for n in PEOPLE:
        assert f"{n[:3]} {n[3:6]} {n[6:]}" not in text


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    _no_nhs_numbers(out + err)
    return code, out, err


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPTOUT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPTOUT_DB_URL", raising=False)
    monkeypatch.delenv("OPTOUT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    write_dat(src / "cleaned.dat", sorted(int(n) for n in ALLOW))
    # patients: Latin-1, semicolons, CRLF (a typical Windows export)
    rows = ["patient_id;NHS No;name"] + [f"p{i};{n};Zoë {i}" for i, n in enumerate(PEOPLE)]
    (src / "patients.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode("latin-1"))
    # episodes: Parquet, no NHS number, linked to patients
    pq.write_table(
        pa.table(
            {
                "episode_id": [f"e{i}" for i in range(20)],
                "patient_id": [f"p{i % 9}" for i in range(20)],
                "cost": pa.array(np.arange(20, dtype=np.float64) / 3),
                "admitted": pa.array(np.arange(20, dtype=np.int64).astype("datetime64[s]")),
            }
        ),
        src / "episodes.parquet",
        compression="zstd",
    )
    # drugs: UTF-8 with BOM, linked to episodes
    drugs = "drug,episode_id\n" + "".join(f"d{i},e{i % 22}\n" for i in range(40))
    (src / "drugs.csv").write_bytes(b"\xef\xbb\xbf" + drugs.encode("utf-8"))
    return tmp_path


BASE = [
    "apply",
    "src/patients.csv",
    "src/episodes.parquet",
    "src/drugs.csv",
    "--cleaned-list",
    "src/cleaned.dat",
    "--checked-at",
    CHECKED,
    "--link",
    "episodes.patient_id=patients.patient_id",
    "--link",
    "drugs.episode_id=episodes.episode_id",
]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_release_end_to_end(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name: _sha(p) for p in (env / "src").iterdir()}
    code, out, err = run(capsys, *BASE, "--out", "rel", "--json", "--report", "report.json")
    assert code == 0, err
    rep = json.loads(out)
    assert {p.name: _sha(p) for p in (env / "src").iterdir()} == before  # sources untouched
    rel = env / "rel"
    assert sorted(p.name for p in rel.iterdir()) == [
        "drugs.csv",
        "episodes.parquet",
        "patients.csv",
        "release.json",
    ]
    # each output keeps its format, dialect and encoding
    pat = (rel / "patients.csv").read_bytes()
    assert pat.startswith(b"patient_id;NHS No;name\r\n") and "Zoë".encode("latin-1") in pat
    assert pat.decode("latin-1").count("\r\n") == 1 + len(ALLOW)
    assert (rel / "drugs.csv").read_bytes().startswith(b"\xef\xbb\xbfdrug,episode_id\n")
    assert pq.read_schema(rel / "episodes.parquet") == pq.read_schema(env / "src" / "episodes.parquet")
    assert pq.ParquetFile(rel / "episodes.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    ep = pq.read_table(rel / "episodes.parquet").column("episode_id").to_pylist()
    assert ep == sorted(ep, key=lambda e: int(e[1:]))  # row order kept
    assert all(int(e[1:]) % 9 < 6 for e in ep)  # only people p0..p5 (on the list)
    # manifest
    m = json.loads((rel / "release.json").read_text())
    assert m["release_id"] == rep["release_id"]
    assert m["check"]["checked_at"].startswith("2026-11-20T09:00:00")
    assert m["check"]["deadline"].startswith("2026-12-10T09:00:00")
    assert m["check"]["sha256"] == _sha(env / "src" / "cleaned.dat")
    assert {f["path"]: f["sha256"] for f in m["files"]} == {
        n: _sha(rel / n) for n in ("patients.csv", "episodes.parquet", "drugs.csv")
    }
    assert {i["file"]: i["sha256"] for i in m["inputs"]} == {
        k: v for k, v in before.items() if k != "cleaned.dat"
    }
    assert m["files"][0]["rows"] == len(ALLOW)
    assert m["choices"]["links"] == [
        "episodes.patient_id=patients.patient_id",
        "drugs.episode_id=episodes.episode_id",
    ]
    assert m["tool"]["name"] == "optout"
    # report
    assert json.loads((env / "report.json").read_text())["tables"] == rep["tables"]
    patients = rep["tables"][0]
    assert patients["rows_out"] == len(ALLOW) and patients["removed"]["not_on_cleaned_list"]["rows"] == 2
    # store: the release (prepared) and an audit entry with counts only
    store = Store(f"sqlite:///{env / 'home' / 'optout.db'}")
    with store.begin() as conn:
        row = conn.execute(sa.select(releases)).one()
        entry = conn.execute(sa.select(audit_log).where(audit_log.c.action == "release.prepared")).one()
    assert row.id == rep["release_id"] and row.state == "prepared" and row.check_source == "one-off"
    assert row.manifest_sha256 == _sha(rel / "release.json")
    assert entry.subject == rep["release_id"]
    _no_nhs_numbers(entry.details + (rel / "release.json").read_text())


def test_dry_run_writes_nothing(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *BASE, "--out", "rel", "--dry-run")
    assert code == 0 and "dry run" in out
    assert not (env / "rel").exists() and _hidden(env) == []
    assert not (env / "home" / "optout.db").exists() or not _releases(env)


def _releases(env: Path) -> list[object]:
    store = Store(f"sqlite:///{env / 'home' / 'optout.db'}")
    with store.begin() as conn:
        return list(conn.execute(sa.select(releases)).all())


def test_external_report(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, *BASE, "--out", "rel", "--json", "--report-for", "external")
    assert code == 0
    t = json.loads(out)["tables"][0]
    assert t["removed"]["not_on_cleaned_list"]["rows"] == "<5"
    assert "problem_rows" not in t


def test_force_replaces_atomically(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, *BASE, "--out", "rel")[0] == 0
    first = json.loads((env / "rel" / "release.json").read_text())["release_id"]
    code, _, err = run(capsys, *BASE, "--out", "rel")
    assert code == 5 and "already exists" in err and "--force" in err
    assert run(capsys, *BASE, "--out", "rel", "--force")[0] == 0
    assert json.loads((env / "rel" / "release.json").read_text())["release_id"] != first
    assert _hidden(env) == []


# --------------------------------------------------------------------------- bad input

BAD = [
    # (what, files to write, extra args, exit code, message fragment)
    ("empty file", {"t.csv": b""}, [], 3, "is empty"),
    ("header only", {"t.csv": b"id,nhs_number\n"}, [], 3, "no data rows"),
    ("ragged rows", {"t.csv": f"id,nhs_number\n1,{PEOPLE[0]}\n2,{PEOPLE[1]},x\n".encode()}, [], 3, "row 2"),
    (
        "undecodable bytes",
        {"t.csv": f"id,nhs_number,n\n1,{PEOPLE[0]},\xff\n".encode("latin-1")},
        ["--encoding", "utf-8"],
        3,
        "not valid utf-8",
    ),
    (
        "duplicate NHS column",
        {"t.csv": f"nhs_number,nhs_number\n{PEOPLE[0]},{PEOPLE[0]}\n".encode()},
        [],
        3,
        "twice",
    ),
    (
        "two candidate NHS columns",
        {"t.csv": f"nhs_number,nhs_no\n{PEOPLE[0]},{PEOPLE[0]}\n".encode()},
        [],
        2,
        "--nhs-column t=",
    ),
    ("missing NHS column", {"t.csv": b"id,age\n1,40\n"}, [], 2, "no NHS-number column"),
    (
        "--nhs-column names a missing column",
        {"t.csv": b"id,x\n1,2\n"},
        ["--nhs-column", "t=nhs"],
        3,
        "no column 'nhs'",
    ),
    (
        "link to a missing table",
        {"t.csv": f"id,nhs_number\n1,{PEOPLE[0]}\n".encode(), "c.csv": b"cid,id\n1,1\n"},
        ["--link", "c.id=parents.id"],
        2,
        "not one of the tables",
    ),
    (
        "link to a missing column",
        {"t.csv": f"id,nhs_number\n1,{PEOPLE[0]}\n".encode(), "c.csv": b"cid,id\n1,1\n"},
        ["--link", "c.id=t.pid"],
        3,
        "no column 'pid'",
    ),
    (
        "unmatched NHS numbers (fail)",
        {"t.csv": f"id,nhs_number\n1,{PEOPLE[0]}\n2,12345\n".encode()},
        [],
        4,
        "001 §8.2",
    ),
    (
        "deadline passed",
        {"t.csv": f"id,nhs_number\n1,{PEOPLE[0]}\n".encode()},
        ["--checked-at", "2020-01-01T00:00:00Z"],
        4,
        "001 §8.4",
    ),
    (
        "check time without a zone",
        {"t.csv": b"id,nhs_number\n1,2\n"},
        ["--checked-at", "2026-11-20T09:00"],
        2,
        "time zone",
    ),
    ("--reason without release", {"t.csv": b"a\n1\n"}, ["--reason", "legally-restricted"], 2, "--reason"),
    ("unknown --unmatched", {"t.csv": b"a\n1\n"}, ["--unmatched", "witheld"], 2, "withhold"),
]


@pytest.mark.parametrize(("what", "files", "extra", "code", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_input(
    env: Path,
    capsys: pytest.CaptureFixture[str],
    what: str,
    files: dict[str, bytes],
    extra: list[str],
    code: int,
    fragment: str,
) -> None:
    d = env / "bad"
    d.mkdir()
    for name, data in files.items():
        (d / name).write_bytes(data)
    args = ["apply", *(str(d / n) for n in files), "--cleaned-list", "src/cleaned.dat", "--out", "rel"]
    if "--checked-at" not in extra:
        args += ["--checked-at", CHECKED]
    got, _out, err = run(capsys, *args, *extra)
    assert got == code, err
    assert fragment.lower() in err.lower()
    assert "how to fix:" in err
    assert not (env / "rel").exists()
    assert _hidden(env) == []


def test_output_exists_without_force(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "rel").mkdir()
    code, _, err = run(capsys, *BASE, "--out", "rel")
    assert code == 5 and "already exists" in err


def test_output_folder_cannot_be_made(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (env / "afile").write_text("x")
    code, _, err = run(capsys, *BASE, "--out", "afile/rel")
    assert code == 5 and "not a folder" in err
    code, _, err = run(capsys, *BASE, "--out", "missing/rel")
    assert code == 5 and "does not exist" in err


def test_output_folder_not_writable(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = env / "locked"
    locked.mkdir()
    # root ignores permission bits, so as root make the folder immutable instead
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["chattr", "+i", str(locked)], check=True)
    else:
        locked.chmod(0o500)
    try:
        code, _, err = run(capsys, *BASE, "--out", "locked/rel")
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(locked)], check=True)
        else:
            locked.chmod(0o700)
    assert code == 5 and "not allowed" in err


# --------------------------------------------------------------------------- crashes

CLI = [sys.executable, "-m", "optout"]
CRASH = Path(__file__).resolve().parents[1] / "support" / "crash.py"


def _big_extract(env: Path, rows: int = 3_000_000) -> list[str]:
    rng = np.random.default_rng(1)
    people = synthetic(100_000, seed=4)
    pq.write_table(
        pa.table(
            {
                "nhs_number": people[rng.integers(0, people.size, rows)],
                "v": rng.random(rows),
                "code": pa.array(rng.integers(0, 1_000_000, rows).astype(str)),
            }
        ),
        env / "big.parquet",
    )
    write_dat(env / "big.dat", np.sort(people[:95_000]))
    return [
        *CLI,
        "apply",
        "big.parquet",
        "--cleaned-list",
        "big.dat",
        "--checked-at",
        CHECKED,
        "--out",
        "rel",
    ]


def _staging(env: Path) -> list[str]:
    return [p.name for p in env.iterdir() if p.name.startswith(".rel.tmp-")]


def _stopped_mid_write(env: Path, args: list[str]) -> subprocess.Popen[bytes]:
    """Run ``args`` (an apply) so that it stops itself (SIGSTOP) as it starts writing its table,
    and wait until it has: no timing involved, so it can never finish first."""
    stop = [sys.executable, str(CRASH), "--stop", "writing-table", *args[len(CLI) :]]
    proc = subprocess.Popen(stop, cwd=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), "apply ended before it reached the write"
    assert _staging(env) and not (env / "rel").exists()
    return proc


@pytest.mark.slow
def test_killed_mid_write_leaves_no_release(env: Path) -> None:
    args = _big_extract(env, rows=20_000)
    proc = _stopped_mid_write(env, args)
    proc.send_signal(signal.SIGKILL)
    proc.wait(120)
    assert not (env / "rel").exists()
    leftovers = [p for p in env.iterdir() if p.name.startswith(".rel.tmp-")]
    assert all(not (p / "release.json").exists() for p in leftovers)  # never mistaken for a release
    # the next run cleans up after the killed one and succeeds
    done = subprocess.run(args, cwd=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert (env / "rel" / "release.json").exists()
    assert [p.name for p in env.iterdir() if p.name.startswith(".rel.")] == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_mid_write_cleans_up(env: Path, sig: signal.Signals) -> None:
    proc = _stopped_mid_write(env, _big_extract(env, rows=20_000))
    proc.send_signal(sig)  # pending until it runs again
    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert b"nothing was left half-written" in err and b"Traceback" not in err
    assert not (env / "rel").exists()
    assert [p.name for p in env.iterdir() if p.name.startswith(".rel.")] == []


def _limit_file_size() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


@pytest.mark.slow
def test_disk_full_is_an_output_error(env: Path) -> None:
    """A real OS-level write failure (file size limit -> EFBIG), as when the disk fills up."""
    args = _big_extract(env, rows=200_000)
    # the store is created first, before the limit matters: make it now
    Store(f"sqlite:///{env / 'home' / 'optout.db'}")
    done = subprocess.run(
        args,
        cwd=env,
        capture_output=True,
        timeout=300,
        preexec_fn=_limit_file_size,
        env={**os.environ, "OPTOUT_HOME": str(env / "home")},
    )
    err = done.stderr.decode()
    assert done.returncode == 5, err
    assert "disk is full" in err and "Traceback" not in err
    _no_nhs_numbers(err)
    assert not (env / "rel").exists()
    assert [p.name for p in env.iterdir() if p.name.startswith(".rel.")] == []

"""``optout apply --engine spark`` as a new user meets it: the example in docs/guides/spark.md, run
word for word in an empty folder (its own Spark in local mode, a fresh JVM), and its release
checked: a folder of parts per table, each part in the manifest, the report saying how Spark ran,
and no NHS number printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.printed import nhs_numbers_in

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guides" / "spark.md"
TEN = re.compile(r"(?<!\d)\d{10}(?!\d)")


def _example() -> str:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("## Try it on one machine", 1)[1]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_guide_example_runs(tmp_path: Path) -> None:
    script = _example()
    assert "--engine spark" in script
    env = {**os.environ, "OPTOUT_HOME": str(tmp_path / "home")}
    env.pop("OPTOUT_DB_URL", None)
    env.pop("OPTOUT_CONFIG", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # optout, python
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout + proc.stderr
    assert nhs_numbers_in(printed) == []
    release = tmp_path / "release"
    manifest = json.loads((release / "release.json").read_text())
    assert manifest["choices"]["engine"] == "spark"
    assert manifest["choices"]["engine_details"]["allow_list"] == "broadcast"
    paths = [f["path"] for f in manifest["files"]]
    for table in ("patients", "episodes", "procedures"):
        assert any(p.startswith(f"{table}.parquet/part-") for p in paths), table
    report = json.loads((tmp_path / "release.report.json").read_text())
    assert report["engine"] == "spark"
    rows_out = {t["name"]: t["rows_out"] for t in report["tables"]}
    for table, n in rows_out.items():
        assert sum(f["rows"] for f in manifest["files"] if f["table"] == table) == n
    assert 0 < rows_out["episodes"] < 10000

"""`optout service seed|import|publish|status` and `optout sandbox status|stop` when nothing runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optout import nhs_number
from optout.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OPTOUT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OPTOUT_MESH_NO_SANDBOX", "1")
    return tmp_path / "home"


def test_seed_import_publish_status_print_counts_never_numbers(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["service", "seed", "--population", "2000", "--opt-out-rate", "0.05", "--seed", "9"])
    a, b = (int(n) for n in nhs_number.synthetic(2, seed=99))
    csv = tmp_path / "choices.csv"
    csv.write_text(f"nhs_number,opted_out\n{a},true\n{b},false\n")
    main(["service", "import", str(csv)])
    main(["service", "status", "--json"])
    out = capsys.readouterr().out
    doc = json.loads(out[out.index("{") :])
    assert doc["events"] == 102
    assert doc["opted_out_live"] == 101
    assert doc["published_snapshot"]["opted_out"] == 100  # the import is not published yet (001 §8.4)
    main(["service", "publish"])
    main(["service", "status"])
    out = capsys.readouterr().out
    assert "101 opt-outs in force" in out
    for n in [a, b, *nhs_number.synthetic(2000, seed=9).tolist()]:
        assert str(n) not in out


def test_import_error_exits_3_without_the_number(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text("nhs_number,opted_out\n1234567890,true\n")
    with pytest.raises(SystemExit) as info:
        main(["service", "import", str(csv)])
    assert info.value.code == 3
    err = capsys.readouterr().err
    assert "row 1" in err and "1234567890" not in err


def test_sandbox_commands_when_nothing_runs(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["sandbox", "status"])
    main(["sandbox", "stop"])
    out = capsys.readouterr().out
    assert "not running" in out and "nothing to stop" in out
    main(["sandbox", "status", "--json"])
    assert json.loads(capsys.readouterr().out)["running"] is False


def test_service_run_without_a_mailbox_says_how_to_get_one(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPTOUT_SERVICE_MESH_URL", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["service", "run", "--once"])
    assert info.value.code == 2
    assert "optout sandbox start" in capsys.readouterr().err

"""Every CLI command has help text, is in the generated CLI reference, and is described in a role guide.

The reference (docs/reference/cli.md) is rendered from the Typer app at build time by
docs/hooks/optout_reference.py, so it cannot miss a command unless the hook skips one; the guides
(docs/guides/*.md) are written by hand, so a new command fails here until a guide says what it is
for.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import typer.main

from optout.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDES = {path.name: path.read_text(encoding="utf-8") for path in sorted((DOCS / "guides").glob("*.md"))}


def _load_hook() -> Any:
    spec = importlib.util.spec_from_file_location("optout_docs_hook", DOCS / "hooks" / "optout_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOK = _load_hook()


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    # duck-typed: typer may ship its own copy of click, so isinstance(click.Group) is unreliable
    out: list[tuple[str, Any]] = []
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(cmd, "commands"):
            out.extend(_commands(cmd, full + " "))
        else:
            out.append((full, cmd))
    return out


ROOT_COMMAND = typer.main.get_command(app)
COMMANDS = _commands(ROOT_COMMAND)


def _mentions(text: str, name: str) -> bool:
    # `optout check` is mentioned by "optout check cohort.csv", not by "optout check-foo"
    return re.search(rf"\boptout {re.escape(name)}(?![\w-])", text) is not None


def test_there_are_commands() -> None:
    names = {n for n, _ in COMMANDS}
    for expected in ("apply", "nhs-number check", "check", "assess"):
        assert expected in names


def test_every_command_has_help() -> None:
    assert [n for n, c in COMMANDS if not (c.help or "").strip()] == []


def test_the_hook_sees_every_command() -> None:
    visible = [n for n, c in COMMANDS if not getattr(c, "hidden", False)]
    assert HOOK.commands() == visible


def test_every_command_is_in_the_generated_cli_reference() -> None:
    page = HOOK.render_cli_reference(DOCS)
    missing = [
        n
        for n, _ in COMMANDS
        if f"optout {n} {{#optout-{n.replace(' ', '-')}}}" not in page or f"Usage: optout {n} " not in page
    ]
    assert missing == []


def test_the_cli_reference_is_not_written_by_hand() -> None:
    source = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    assert HOOK.MARKERS["reference/cli.md"] in source
    assert "Usage:" not in source
    assert not re.search(r"^#+ optout ", source, re.M)


def test_every_command_is_described_in_a_role_guide() -> None:
    assert len(GUIDES) >= 5
    missing = [n for n, _ in COMMANDS if not any(_mentions(text, n) for text in GUIDES.values())]
    assert missing == [], "describe these commands in a guide under docs/guides/"


def test_the_mention_check_can_fail() -> None:
    assert _mentions("run `optout release disclose ID`", "release disclose")
    assert not _mentions("run `optout release disclosed`", "release disclose")
    assert not _mentions("run `optout release`", "release disclose")
    assert not _mentions("see the optout-check page", "check")

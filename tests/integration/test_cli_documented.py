"""Every CLI command has help text and a README entry (the CLI reference is complete)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer.main

from optout.cli import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


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


ROOT = typer.main.get_command(app)
COMMANDS = _commands(ROOT)


def test_there_are_commands() -> None:
    names = {n for n, _ in COMMANDS}
    for expected in ("apply", "nhs-number check", "check", "assess"):
        assert expected in names


def test_every_command_has_help() -> None:
    assert [n for n, c in COMMANDS if not (c.help or "").strip()] == []


def test_every_command_is_in_the_readme() -> None:
    assert [n for n, _ in COMMANDS if f"optout {n}" not in README] == []

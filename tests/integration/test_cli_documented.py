"""Every CLI command has help text and a README entry (the CLI reference is complete)."""

from __future__ import annotations

from pathlib import Path

import click
import typer.main

from optout.cli import app

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, full + " "))
        else:
            out.append((full, cmd))
    return out


ROOT = typer.main.get_command(app)
assert isinstance(ROOT, click.Group)
COMMANDS = _commands(ROOT)


def test_there_are_commands() -> None:
    names = {n for n, _ in COMMANDS}
    for expected in ("apply", "nhs-number check", "check", "assess"):
        assert expected in names


def test_every_command_has_help() -> None:
    assert [n for n, c in COMMANDS if not (c.help or "").strip()] == []


def test_every_command_is_in_the_readme() -> None:
    assert [n for n, _ in COMMANDS if f"optout {n}" not in README] == []

"""The documentation site builds with ``mkdocs build --strict``: no warning, no broken link or anchor.

The generated reference pages (command line, exit codes, Python API) hold everything the code
has, and nothing in the built site names the machine it was built on.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optout.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def _build(config: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # the theme's own notice, not a docs problem
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=240,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    r = _build(ROOT / "mkdocs.yml", out)
    warnings = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert r.returncode == 0 and warnings == [], "\n".join(warnings) or r.stderr[-3000:]
    return out


def _page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def _text(html: str) -> str:
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", "", html))


def test_every_page_of_the_nav_is_built(site: Path) -> None:
    for name in (
        "guides/ig-lead",
        "guides/data-engineer",
        "guides/registry-team",
        "guides/care-provider",
        "guides/service-operator",
        "reference/cli",
        "reference/flow-files",
        "reference/exit-codes",
        "reference/configuration",
        "reference/python-api",
        "glossary",
        "speed",
        "getting-started",
    ):
        assert (site / name / "index.html").is_file(), name
    assert (site / "index.html").is_file()
    assert not (site / "hooks").exists(), "the build hook is not a page"


def test_the_cli_reference_is_generated_for_every_command(site: Path) -> None:
    import typer.main

    from optout.cli import app

    html = _page(site, "reference/cli")
    text = " ".join(_text(html).split())

    def walk(group, prefix=""):
        for name, cmd in group.commands.items():
            if getattr(cmd, "hidden", False):
                continue
            yield f"{prefix}{name}", cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, f"{prefix}{name} ")

    names = list(walk(typer.main.get_command(app)))
    assert len(names) > 20
    for name, cmd in names:
        assert f'id="optout-{name.replace(" ", "-")}"' in html, name
        assert f"Usage: optout {name} " in text, name
        first_line = (cmd.help or "").strip().splitlines()[0]
        assert " ".join(first_line.split()) in text, name


def test_the_exit_codes_page_is_generated_from_the_code(site: Path) -> None:
    text = _text(_page(site, "reference/exit-codes"))
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {meaning}" in " ".join(text.split()), code
    assert "10" in text and "cannot decide" in text  # optout assess's own code, written by hand


def test_the_python_api_page_lists_every_public_name(site: Path) -> None:
    import optout

    text = _text(_page(site, "reference/python-api"))
    for name in optout.__all__:
        assert f"optout.{name}" in text, name


def test_nothing_names_the_build_machine(site: Path) -> None:
    here = str(ROOT)
    home = str(Path.home())
    for path in site.rglob("*.html"):
        content = path.read_text(encoding="utf-8")
        assert here not in content, path.relative_to(site)
        assert home == "/" or f"{home}/" not in content, path.relative_to(site)


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    # the strictness is configuration (validation: ... warn, strict: true): prove it bites
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    guide = tmp_path / "docs" / "guides" / "ig-lead.md"
    broken = "\n[gone](data-engineer.md#no-such-section) [lost](no-such-page.md)\n"
    guide.write_text(guide.read_text(encoding="utf-8") + broken, encoding="utf-8")
    r = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "no-such-section" in out and "no-such-page.md" in out


def test_a_reference_page_without_its_marker_fails_the_build(tmp_path: Path) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / "docs" / "reference" / "cli.md").write_text("# Command line reference\n", encoding="utf-8")
    r = _build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert r.returncode != 0
    assert "optout:cli-reference" in r.stdout + r.stderr


def test_the_readme_stays_short_and_links_into_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) < 10_000
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert {"docs/guides/ig-lead.md", "docs/reference/cli.md", "docs/glossary.md"} <= set(links)
    for link in links:
        assert (ROOT / link).is_file(), link
    for command in ("make demo", "make test"):
        assert command in readme

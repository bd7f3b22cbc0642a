"""MkDocs hook: the reference pages that are generated from the code, so they cannot drift.

Four markers are replaced when the site is built (``make docs``):

- ``<!-- optout:cli-reference -->`` in ``reference/cli.md``: every command of the Typer app
  (``optout.cli.app``), its ``--help`` exactly as the command line prints it, and the role guides
  that describe it (found by searching ``guides/*.md`` for ``optout <command>``);
- ``<!-- optout:exit-codes -->`` in ``reference/exit-codes.md``: ``optout.errors.EXIT_CODES``;
- ``<!-- optout:python-api -->`` in ``reference/python-api.md``: every name in ``optout.__all__``
  with its signature and the first paragraph of its docstring;
- ``<!-- optout:policy-sources -->`` in ``reference/policy-sources.md``: where each rule comes from
  (``optout.policy.provenance``: the sources, every rule with its clause and quoted words, the
  bodies that hold an exemption over time, and what has not been read yet).

A new command, exit code or public name therefore appears in the site by itself. A page that lost
its marker fails the build. The functions are plain so that tests can call them too.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HELP_WIDTH = 100

MARKERS = {
    "reference/cli.md": "<!-- optout:cli-reference -->",
    "reference/exit-codes.md": "<!-- optout:exit-codes -->",
    "reference/python-api.md": "<!-- optout:python-api -->",
    "reference/policy-sources.md": "<!-- optout:policy-sources -->",
}


# -- the command line ---------------------------------------------------------------------------


def root_command() -> Any:
    import typer.main

    from optout.cli import app

    return typer.main.get_command(app)


def walk(group: Any | None = None, parent_ctx: Any | None = None, prefix: str = "") -> Iterator[tuple]:
    """Yield ``(name, command, context, is_group)`` for every visible command, in help order.

    Duck-typed (``hasattr(cmd, "commands")``): Typer may carry its own copy of click, so an
    ``isinstance`` test against ``click.Group`` is unreliable.
    """
    if group is None:
        group = root_command()
        parent_ctx = _context(group, "optout", None)
    for name, cmd in group.commands.items():
        if getattr(cmd, "hidden", False):
            continue
        full = f"{prefix}{name}"
        ctx = _context(cmd, name, parent_ctx)
        is_group = hasattr(cmd, "commands")
        yield full, cmd, ctx, is_group
        if is_group:
            yield from walk(cmd, ctx, full + " ")


def commands() -> list[str]:
    """The names of every command that does something (groups left out), e.g. ``release disclose``."""
    return [name for name, _, _, is_group in walk() if not is_group]


def _context(cmd: Any, name: str, parent: Any | None) -> Any:
    return cmd.context_class(
        cmd, info_name=name, parent=parent, terminal_width=HELP_WIDTH, max_content_width=HELP_WIDTH
    )


def anchor(name: str) -> str:
    return "optout-" + name.replace(" ", "-")


def mentioned_in(name: str, text: str) -> bool:
    """Whether ``text`` mentions ``optout NAME`` as a command (``optout check`` is not ``optout checks``)."""
    return re.search(rf"\boptout {re.escape(name)}(?![\w-])", text) is not None


def guides(docs_dir: Path) -> list[tuple[str, str, str]]:
    """``(path relative to docs, title, text)`` of every role guide."""
    out = []
    for path in sorted((docs_dir / "guides").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), path.stem)
        out.append((f"guides/{path.name}", title, text))
    return out


def render_cli_reference(docs_dir: Path | None = None) -> str:
    """The body of ``reference/cli.md``: a command index, then each command's ``--help``."""
    root = root_command()
    root_ctx = _context(root, "optout", None)
    guide_pages = guides(docs_dir) if docs_dir is not None else []
    entries = list(walk(root, root_ctx))

    lines = ["| command | what it does |", "|---|---|"]
    for name, cmd, _, _ in entries:
        short = cmd.get_short_help_str(limit=200).replace("|", "\\|")
        lines.append(f"| [`optout {name}`](#{anchor(name)}) | {short} |")
    lines += ["", "## optout {#optout}", "", _fence(root.get_help(root_ctx)), ""]

    for name, cmd, ctx, is_group in entries:
        level = "##" if " " not in name else "###"
        lines += [f"{level} optout {name} {{#{anchor(name)}}}", ""]
        described = [f"[{title}](../{path})" for path, title, text in guide_pages if mentioned_in(name, text)]
        if described:
            lines += ["Described in: " + ", ".join(described) + ".", ""]
        lines += [_fence(cmd.get_help(ctx)), ""]
        if is_group:
            subs = ", ".join(f"[`{sub}`](#{anchor(f'{name} {sub}')})" for sub in cmd.commands)
            lines += [f"Commands: {subs}.", ""]
    return "\n".join(lines)


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}text\n{text.rstrip()}\n{ticks}"


# -- exit codes ---------------------------------------------------------------------------------


def render_exit_codes() -> str:
    from optout.errors import EXIT_CODES

    lines = ["| code | meaning |", "|---:|---|"]
    for code, meaning in sorted(EXIT_CODES.items()):
        lines.append(f"| {code} | {_escape(meaning)} |")
    return "\n".join(lines)


# -- the Python API -----------------------------------------------------------------------------


def render_python_api() -> str:
    import optout

    functions, classes, errors = [], [], []
    for name in optout.__all__:
        obj = getattr(optout, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            errors.append((name, obj))
        elif inspect.isclass(obj):
            classes.append((name, obj))
        elif callable(obj):
            functions.append((name, obj))

    lines = ["### Functions {#functions}", ""]
    for name, obj in functions:
        lines += [
            f"#### `optout.{name}` {{#optout-{name.replace('_', '-')}}}",
            "",
            _fence(f"optout.{name}{_signature(obj)}").replace("```text", "```python", 1),
            "",
            _first_paragraph(obj),
            "",
        ]
    lines += ["### Classes {#classes}", "", "| class | what it is |", "|---|---|"]
    for name, obj in classes:
        lines.append(f"| `optout.{name}` | {_escape(_first_paragraph(obj))} |")
    lines += [
        "",
        "### Errors {#errors}",
        "",
        "Every error is an `optout.OptoutError`; `exc.exit_code` is the command line's exit code, "
        "`exc.kind` the word printed before the message, `exc.hint` how to fix it.",
        "",
        "| exception | `kind` | exit code |",
        "|---|---|---:|",
    ]
    for name, obj in errors:
        lines.append(f"| `optout.{name}` | `{getattr(obj, 'kind', '')}` | {getattr(obj, 'exit_code', '')} |")
    lines += ["", f"`optout.__version__` is the installed version ({optout.__version__})."]
    return "\n".join(lines)


class _Annotation:
    """An annotation kept as the source wrote it (``str | Path``), printed without quotes."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj: Any) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"

    def plain(annotation: Any) -> Any:
        return _Annotation(annotation) if isinstance(annotation, str) else annotation

    params = [p.replace(annotation=plain(p.annotation)) for p in sig.parameters.values()]
    sig = sig.replace(parameters=params, return_annotation=plain(sig.return_annotation))
    text = str(sig)
    if len(text) <= 80:
        return text
    # one parameter a line, as a formatter would write a long signature
    parts = [str(p) for p in sig.parameters.values()]
    shown, star_done = [], False
    for param, part in zip(sig.parameters.values(), parts, strict=True):
        if param.kind is param.KEYWORD_ONLY and not star_done:
            shown.append("*")
            star_done = True
        if param.kind is param.VAR_POSITIONAL:
            star_done = True
        shown.append(part)
    body = "".join(f"\n    {part}," for part in shown)
    returns = "" if sig.return_annotation is inspect.Signature.empty else f" -> {sig.return_annotation!r}"
    return f"({body}\n){returns}"


def _first_paragraph(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


# -- the MkDocs hook ----------------------------------------------------------------------------

RENDERERS = {
    "reference/cli.md": lambda docs_dir: render_cli_reference(docs_dir),
    "reference/exit-codes.md": lambda docs_dir: render_exit_codes(),
    "reference/python-api.md": lambda docs_dir: render_python_api(),
    "reference/policy-sources.md": lambda docs_dir: render_policy_sources(),
}


def render_policy_sources() -> str:
    """Every rule with its clause, quoted words and sources, from the policy data files."""
    from optout.policy.provenance import page

    body = page().split("\n", 1)[1]  # the page's own H1 is the Markdown file's
    return body.lstrip("\n")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    src = page.file.src_uri
    if src not in MARKERS:
        return markdown
    marker = MARKERS[src]
    if marker not in markdown:
        from mkdocs.exceptions import PluginError

        raise PluginError(f"{src}: the marker {marker} is missing; the generated reference has nowhere to go")
    return markdown.replace(marker, RENDERERS[src](Path(config["docs_dir"])))

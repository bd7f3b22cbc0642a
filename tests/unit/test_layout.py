"""The folders are the architecture: no import circles, and arrows point down only.

Layers, bottom to top (DEVELOPERS.md "Layout"):

    ground floor   errors, nhs_number, dat, digest, tables, atomic, config, store, mesh, text, version,
                   migrations
    audit/         the hash-chained trail and the evidence pack
    policy/        flow files, rules, exemptions, the register of flows
    check/         the organisation's side of the check service (cohort, exchange, cleaned list, cache)
    release/ registry/   making and disclosing releases; the registry collection gate
    service/       the reference central service and the sandbox launcher (ground floor only)
    synth, doctor  development tools; the installation check (spans the rooms)
    demo           `make demo`
    web/           the web app (a front end over the rooms)
    cli/           the command line (it starts the web app: `optout web serve`)

A module may import from its own room, from any lower layer, never from a room beside it or above.
Every import counts, including those inside functions: a lazy import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

GROUND = {
    "errors",
    "nhs_number",
    "dat",
    "digest",
    "tables",
    "atomic",
    "config",
    "store",
    "mesh",
    "text",
    "version",
    "migrations",
}
RANK = {
    "ground": 0,
    "audit": 1,
    "service": 1,  # the central side: built on the ground floor only, never on the organisation's rooms
    "policy": 2,
    "check": 3,
    "release": 4,
    "registry": 4,
    "synth": 5,
    "doctor": 5,  # checks the whole installation: spans the rooms below, used by cli/ and demo
    "demo": 6,
    "web": 7,  # the web app: FastAPI pages and API over the rooms
    "cli": 8,  # above web/: `optout web serve|create-user` start and manage the web app
    "__main__": 9,
}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in (SRC / "optout").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("optout"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if not mod.startswith("optout"):
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in MODULES else mod)
    resolved = set()
    for target in found:
        while target not in MODULES and "." in target:
            target = target.rsplit(".", 1)[0]
        if target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _room(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) == 1:
        return None  # the package root (the public API)
    return "ground" if parts[1] in GROUND else parts[1]


def test_every_module_has_a_layer() -> None:
    rooms = {_room(m) for m in MODULES} - {None}
    assert rooms <= set(RANK), (
        f"give these rooms a layer here and in DEVELOPERS.md: {sorted(rooms - set(RANK))}"
    )


def test_no_import_circles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert circles == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) is not None))
def test_arrows_point_down(module: str) -> None:
    room = _room(module)
    assert room is not None
    upward = [
        target
        for target in sorted(GRAPH[module])
        if _room(target) is None or (_room(target) != room and RANK[_room(target) or ""] >= RANK[room])
    ]
    assert upward == [], f"{module} imports from a room beside or above it (or the package root): {upward}"


def test_engine_base_knows_no_implementation() -> None:
    base = GRAPH["optout.release.engines.base"]
    assert not {
        m for m in base if m.startswith("optout.release.engines.") and m != "optout.release.engines.base"
    }


def test_configuration_knows_nothing_of_the_sandbox() -> None:
    # optout.text: the actor name is free text, refused at load when it holds an NHS number
    assert GRAPH["optout.config"] <= {"optout.errors", "optout.text"}
    assert GRAPH["optout.text"] <= {"optout.errors", "optout.nhs_number"}

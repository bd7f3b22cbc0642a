"""The national data opt-out for adult social care providers (003), as data.

003 promises care providers "examples of when the opt-out applies and when it does not", "standard
copy and clauses that you can use in your privacy policies, consent forms, contracts etc" and
"checklists to audit your compliance". Here they are:

- :func:`examples`: worked examples, each a ready-made flow file (``examples/*.yaml``, the policy
  engine's own format) with what the rules answer for it and 003's words behind it. The answer
  shown is always the engine's (:func:`optout.policy.assess`); ``expected`` is only checked
  against it by a test. :func:`register_example` adds one to the register of data flows.
- :func:`wording`: blocks of standard wording to copy, each with the clauses it rests on and the
  policy's words it follows (``wording.yaml``).
- the provider's audit checklist is the ``social-care`` checklist of :mod:`optout.policy.checklist`
  (stateful: owner, status, due date, notes).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import yaml

from optout.errors import NotFoundError
from optout.policy.flow import Flow, parse_flow_text
from optout.policy.rules import Decision, assess

if TYPE_CHECKING:
    from optout.policy.register import FlowRecord
    from optout.store import Store

__all__ = ["Example", "Quote", "WordingBlock", "example", "examples", "register_example", "wording"]


@dataclass(frozen=True)
class Quote:
    clause: str
    quote: str


@dataclass(frozen=True)
class Example:
    id: str
    file: str
    title: str
    expected: str
    why: str
    quote: Quote
    text: str  # the flow file, as shipped

    @property
    def flow(self) -> Flow:
        return parse_flow_text(self.text, source=f"{self.id}.yaml")

    def decision(self) -> Decision:
        """What the rules answer for this example today (never the stored ``expected``)."""
        return assess(self.flow)


@dataclass(frozen=True)
class WordingBlock:
    id: str
    use: str
    title: str
    text: str
    clauses: tuple[str, ...]
    follows: tuple[Quote, ...]


def _words(text: Any) -> str:
    return " ".join(str(text).split())


def _read(name: str) -> str:
    return resources.files("optout.policy.socialcare").joinpath(name).read_text(encoding="utf-8")


@cache
def examples() -> tuple[Example, ...]:
    """The worked examples, in the order a provider should read them."""
    data = yaml.safe_load(_read("examples.yaml"))
    out = []
    for item in data["examples"]:
        out.append(
            Example(
                id=item["id"],
                file=item["file"],
                title=item["title"],
                expected=item["expected"],
                why=_words(item["why"]),
                quote=Quote(str(item["clause"]), _words(item["quote"])),
                text=_read(item["file"]),
            )
        )
    return tuple(out)


def example(example_id: str) -> Example:
    for ex in examples():
        if ex.id == example_id:
            return ex
    raise NotFoundError(
        f"no worked example {example_id!r}",
        hint=f"choose one of: {', '.join(e.id for e in examples())}",
    )


@cache
def wording() -> tuple[WordingBlock, ...]:
    """The standard wording blocks to copy."""
    data = yaml.safe_load(_read("wording.yaml"))
    return tuple(
        WordingBlock(
            id=b["id"],
            use=b["use"],
            title=b["title"],
            text=str(b["text"]).strip(),
            clauses=tuple(str(c) for c in b["clauses"]),
            follows=tuple(Quote(str(f["clause"]), _words(f["quote"])) for f in b.get("follows") or ()),
        )
        for b in data["blocks"]
    )


def register_example(
    store: Store,
    example_id: str,
    *,
    flow_id: str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> tuple[FlowRecord, Decision]:
    """Register a worked example as a data flow (the provider then edits it to fit)."""
    from optout.policy.register import add_flow

    ex = example(example_id)
    return add_flow(store, ex.flow, flow_id=flow_id or ex.id, actor=actor, now=now)  # type: ignore[no-any-return]

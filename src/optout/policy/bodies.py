"""Successor bodies: who holds an exemption's function, when (``bodies.yaml``).

An exemption goes with a function, not a name: 002 says cancer registration data flowing to
"PHE" is exempt; since 1 October 2021 the National Disease Registration Service was NHS Digital's,
and since 1 February 2023 it is NHS England's. A condition ``{held_by: FUNCTION}`` in the rules
matches any body that ever held the function, so a flow written with the old name and one written
with today's get the same answer.

**The answer does not depend on the date; the explanation does.** A flow may carry
``disclosure_date``. The holder is *not* judged at that date to decide, because the exemption was
granted to the function and moved with it: a recipient named by its 2019 name or by today's name is
the same register, and an unknown or missing date must never change an answer (the rules never
guess). The date is used to say who held the function then, beside who holds it today and since
when, and to flag a recipient named by a body that no longer existed on that date.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from typing import Any

import yaml


@dataclass(frozen=True)
class Body:
    id: str  # the recipient.type word
    name: str
    start: date | None = None
    end: date | None = None  # the last day it existed
    successor: str | None = None
    source: str | None = None  # a clause / source id (guidance.yaml sources)
    moved: str = ""  # where its functions went, in words

    def exists_on(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class Tenure:
    """One body holding a function from ``start`` to ``end`` (inclusive; None = open)."""

    body: str
    start: date | None
    end: date | None
    source: str | None

    def covers(self, day: date) -> bool:
        return (self.start is None or self.start <= day) and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class Function:
    id: str
    label: str
    tenures: tuple[Tenure, ...]

    @property
    def holders_ever(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.body for t in self.tenures))

    def holder_on(self, day: date) -> Tenure | None:
        for t in self.tenures:
            if t.covers(day):
                return t
        return None


def _date(value: Any) -> date | None:
    if value is None:
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value))


@cache
def _data() -> dict[str, Any]:
    text = resources.files("optout.policy").joinpath("bodies.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


@cache
def bodies() -> dict[str, Body]:
    out = {}
    for key, item in _data()["bodies"].items():
        out[key] = Body(
            id=key,
            name=str(item["name"]),
            start=_date(item.get("from")),
            end=_date(item.get("until")),
            successor=item.get("successor"),
            source=item.get("source"),
            moved=" ".join(str(item.get("moved") or "").split()),
        )
    return out


@cache
def functions() -> dict[str, Function]:
    out = {}
    for key, item in _data()["functions"].items():
        tenures = tuple(
            Tenure(str(t["body"]), _date(t.get("from")), _date(t.get("until")), t.get("source"))
            for t in item["held"]
        )
        out[key] = Function(key, " ".join(str(item["label"]).split()), tenures)
    return out


def function(function_id: str) -> Function:
    return functions()[function_id]


def name(body_id: str) -> str:
    body = bodies().get(body_id)
    return body.name if body is not None else body_id


def long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def history(fn: Function) -> str:
    """E.g. ``"Public Health England (PHE) until 30 September 2021, then ... since 1 February 2023"``."""
    bits = []
    for t in fn.tenures:
        who = name(t.body)
        if t.start is None and t.end is not None:
            bits.append(f"{who} until {long_date(t.end)}")
        elif t.start is not None and t.end is not None:
            bits.append(f"{who} from {long_date(t.start)} to {long_date(t.end)}")
        elif t.start is not None:
            bits.append(f"{who} since {long_date(t.start)}")
        else:
            bits.append(who)
    return ", then ".join(bits)


@dataclass(frozen=True)
class Holder:
    """Who holds a function: today, on the disclosure date, and the body the flow named."""

    function: str
    label: str
    now: str  # body id
    now_name: str
    since: date | None
    named: str | None  # the recipient.type the flow used
    named_is_holder_today: bool
    at_disclosure: str | None  # body id holding it on disclosure_date
    disclosure_date: date | None
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "holder": self.now,
            "holder_name": self.now_name,
            "since": self.since.isoformat() if self.since else None,
            "named": self.named,
            "holder_at_disclosure": self.at_disclosure,
            "disclosure_date": self.disclosure_date.isoformat() if self.disclosure_date else None,
            "source": self.source,
        }

    def explain(self) -> str:
        fn = function(self.function)
        since = f" since {long_date(self.since)}" if self.since else ""
        text = (
            f"This exemption is tied to {self.label}, not to an organisation's name: {history(fn)}. "
            f"The holder today: {self.now_name}{since}."
        )
        if self.named is not None and self.named in fn.holders_ever and not self.named_is_holder_today:
            text += (
                f" The flow names {name(self.named)}, an earlier holder: the answer is the same; "
                f"name {self.now_name} for a disclosure made today."
            )
        if self.disclosure_date is not None:
            when = long_date(self.disclosure_date)
            if self.at_disclosure is not None:
                text += f" The holder on the disclosure date ({when}): {name(self.at_disclosure)}."
            else:
                text += f" No holder is recorded for the disclosure date ({when})."
        return text


def holder(
    function_id: str, *, named: str | None, disclosure_date: date | None, today: date | None = None
) -> Holder:
    fn = function(function_id)
    day = today or date.today()
    now = fn.holder_on(day) or fn.tenures[-1]
    then = fn.holder_on(disclosure_date) if disclosure_date is not None else None
    return Holder(
        function=fn.id,
        label=fn.label,
        now=now.body,
        now_name=name(now.body),
        since=now.start,
        named=named,
        named_is_holder_today=named == now.body,
        at_disclosure=then.body if then is not None else None,
        disclosure_date=disclosure_date,
        source=now.source,
    )


def gone(body_id: str | None, on: date) -> Body | None:
    """The body, if the flow names one that no longer existed on ``on``."""
    if body_id is None:
        return None
    body = bodies().get(body_id)
    if body is None or body.end is None or on <= body.end:
        return None
    return body


def held_by_any(value: Any, function_id: str) -> bool | None:
    """Does a recipient.type value name a body that ever held the function? (None: unknown)."""
    if value is None:
        return None
    holders = function(function_id).holders_ever
    if isinstance(value, Iterable) and not isinstance(value, str):
        return any(v in holders for v in value)
    return value in holders

"""The one guard for free text the tool stores or prints: no NHS numbers in it.

People type free text into the tool: a flow's name, description, owner and recipient, a reason
for withdrawing a release, the recipient a release is disclosed to, a reason for accepting a
linkage risk, their own name as the actor, a collection profile's name and note, a check
request's Subject and LocalID. That text is stored in the metadata database, written into the
audit trail and evidence packs, and printed. Someone may paste a patient's NHS number into it
("Study for 943 476 5919"), and then the tool would keep and show it forever.

- :func:`guard_free_text` is called where such a value enters (flow files, the register, the
  release lifecycle, settings, profiles, check requests): a value holding an NHS number is
  refused with an error naming the *field*, never the value.
- :func:`find_nhs_number` walks nested data (``audit.record`` refuses an entry with it).
- :func:`mask` and :func:`mask_nested` hide numbers in text stored before the guard existed,
  where it is printed.

What counts as an NHS number in free text (:func:`contains_nhs_number`): ten digits in a row, or
split by spaces or hyphens (the spellings ``nhs_number.parse`` accepts: ``9434765919``,
``943 476 5919``, ``943-476-5919``, ``943 - 476 - 5919``), that pass Modulus 11 and lie in an
issued range (England, Wales and the Isle of Man; Scotland's CHI; Northern Ireland) **or in the
9xx test range**. Digits of any script count (full-width, Arabic-Indic), as do no-break spaces
and Unicode dashes. A 10-digit stretch of a longer run of digits (``94347659191``) is not a
number on its own, and neither is ``943.476.5919`` nor the fraction of a decimal (``0.9434765919``).

Test numbers (9xx) are refused too. They are never issued to patients, but free text is read by
people: "Study for 943 476 5919" looks exactly like a leak to an auditor or an IG lead, who cannot
tell a test number from a real one at a glance, and nothing needs a test number in a flow's name.
The synthetic data (``optout.synth``) uses 9xx numbers in *rows*, never in free text. Numbers in
the unallocated ranges (5xx, 8xx, ...) pass: no one has one, and refusing them would only refuse
more phone numbers and references by chance.

Hex strings (hashes, tokens: a word of only ``0-9a-f`` or only ``0-9A-F`` with at least one
letter) are not read for digits, so a SHA-256 whose digits happen to form a valid number is not
refused. Any other word is: ``NHS9434765919`` and ``patient_9434765919`` are refused.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, overload

from optout.errors import InputError, Location, UsageError

__all__ = [
    "ACTOR_FIELD",
    "ACTOR_HINT",
    "HIDDEN",
    "contains_nhs_number",
    "find_nhs_number",
    "guard_free_text",
    "guard_nested",
    "mask",
    "mask_nested",
]

HIDDEN = "[NHS number hidden]"
VALUE_CLASS = "NHS number, not shown"
HINT = (
    "take the number out; describe it without identifying a patient. Ten digits (also with spaces "
    "or hyphens) that pass the NHS number check count, test numbers (9xx) included; if it is not an "
    "NHS number (a phone number, a reference), separate its digits with '.' or '/' instead"
)
ACTOR_FIELD = "the actor name (OPTOUT_ACTOR, else the login name)"
ACTOR_HINT = "set OPTOUT_ACTOR to your name or role without the number, e.g. OPTOUT_ACTOR=ig-lead"

_DIGITS = re.compile(r"[0-9]+")
_WORD = re.compile(r"[0-9A-Za-z]+")
_HEX = re.compile(r"[0-9a-f]*[a-f][0-9a-f]*|[0-9A-F]*[A-F][0-9A-F]*")
_GAP = re.compile(r"[ \-]+")  # between groups of digits, as nhs_number.parse accepts them
_ASCII_SPACES = str.maketrans("\t\n\r\x0b\x0c", "     ")


def _fold(text: str) -> str:
    """``text`` with digits of any script as ASCII digits, spaces as ' ' and dashes as '-'.

    One character for one character, so positions in the result are positions in ``text``.
    """
    if text.isascii():
        return text.translate(_ASCII_SPACES)
    out = []
    for ch in text:
        if ch.isascii():
            out.append(" " if ch.isspace() else ch)
        elif ch.isdecimal():
            out.append(str(unicodedata.decimal(ch)))
        elif ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch) == "Pd" or ch == "\u2212":
            out.append("-")
        else:
            n = unicodedata.normalize("NFKC", ch)  # full-width letters, ligatures of one letter
            out.append(n if len(n) == 1 and n.isascii() else "_")
    return "".join(out)


def _is_issued_or_test(digits: str) -> bool:
    # imported here: nhs_number loads NumPy and Arrow, which most text never needs
    from optout.nhs_number import Range, classify_range, parse

    p = parse(digits)
    return p.value is not None and classify_range(p.value) is not Range.UNALLOCATED


def _groups(f: str) -> list[tuple[int, int]]:
    """Runs of digits that may be (part of) a number: not inside a hex word, not a fraction."""
    out: list[tuple[int, int]] = []
    for w in _WORD.finditer(f):
        if _HEX.fullmatch(w.group()):
            continue
        for d in _DIGITS.finditer(w.group()):
            s, e = w.start() + d.start(), w.start() + d.end()
            if s >= 2 and f[s - 1] == "." and f[s - 2].isdigit():
                continue  # 0.9434765919: the fraction of a decimal
            out.append((s, e))
    return out


def _spans(text: str) -> list[tuple[int, int]]:
    """Where NHS numbers are in ``text`` (start, end), in order; may overlap."""
    if sum(ch.isdecimal() for ch in text) < 10:
        return []
    f = _fold(text)
    groups = _groups(f)
    found: list[tuple[int, int]] = []
    for i, (start, end) in enumerate(groups):
        digits = f[start:end]
        j = i
        while len(digits) < 10 and j + 1 < len(groups):
            nxt = groups[j + 1]
            if not _GAP.fullmatch(f[groups[j][1] : nxt[0]]):
                break
            j += 1
            digits += f[nxt[0] : nxt[1]]
        if len(digits) == 10 and _is_issued_or_test(digits):
            found.append((start, groups[j][1]))
    return found


def contains_nhs_number(text: str) -> bool:
    """Whether ``text`` holds what this module counts as an NHS number (see the module doc)."""
    return bool(_spans(text))


def mask(text: str) -> str:
    """``text`` with every NHS number in it replaced by ``[NHS number hidden]``."""
    spans = _spans(text)
    if not spans:
        return text
    parts: list[str] = []
    pos = 0
    for start, end in spans:
        if start < pos:  # overlaps the previous one: extend it
            parts[-1] = HIDDEN
            pos = max(pos, end)
            continue
        parts.append(text[pos:start])
        parts.append(HIDDEN)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def mask_nested(obj: Any) -> Any:
    """A copy of nested dicts/lists/tuples with every string (and key) masked; other values kept."""
    if isinstance(obj, str):
        return mask(obj)
    if isinstance(obj, Mapping):
        return {(mask(k) if isinstance(k, str) else k): mask_nested(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mask_nested(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(mask_nested(v) for v in obj)
    return obj


def find_nhs_number(obj: Any, path: str = "value") -> str | None:
    """The path (``details.files[2]``) of the first value or key in nested data holding an NHS
    number, or None. Strings, integers and floats are read; booleans and None are not."""
    if isinstance(obj, bool) or obj is None:
        return None
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if isinstance(k, str) and contains_nhs_number(k):
                return f"{path} (a key)"
            found = find_nhs_number(v, f"{path}.{k}")
            if found is not None:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            found = find_nhs_number(v, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    if isinstance(obj, (str, int, float)):
        return path if contains_nhs_number(str(obj)) else None
    return None


@overload
def guard_free_text(
    field: str,
    value: str,
    *,
    where: Location | None = ...,
    error: type[InputError] | type[UsageError] = ...,
    hint: str | None = ...,
) -> str: ...


@overload
def guard_free_text(
    field: str,
    value: None,
    *,
    where: Location | None = ...,
    error: type[InputError] | type[UsageError] = ...,
    hint: str | None = ...,
) -> None: ...


def guard_free_text(
    field: str,
    value: str | None,
    *,
    where: Location | None = None,
    error: type[InputError] | type[UsageError] = InputError,
    hint: str | None = None,
) -> str | None:
    """``value`` unchanged, or ``error`` when it holds an NHS number.

    ``field`` names what the value is, as the user knows it: ``"'recipient.name'"`` for a key of
    a flow file, ``"--to"`` for an option. The message names the field and never the value.
    ``error`` is :class:`~optout.errors.InputError` (exit 3) for a value read from a file and
    :class:`~optout.errors.UsageError` (exit 2) for an option, setting or argument. ``where``
    (file, line, column) is kept, with its value class set.
    """
    if value is None or not contains_nhs_number(value):
        return value
    raise _refusal(field, where, error, hint)


def guard_nested(
    obj: Any,
    path: str,
    *,
    where: Location | None = None,
    error: type[InputError] | type[UsageError] = InputError,
    hint: str | None = None,
) -> None:
    """:func:`guard_free_text` for every string in nested data; the field is named by its path
    (``path.recipient.name``)."""
    found = find_nhs_number(obj, path)
    if found is not None:
        raise _refusal(f"'{found}'", where, error, hint)


def _refusal(
    field: str, where: Location | None, error: type[InputError] | type[UsageError], hint: str | None
) -> InputError | UsageError:
    loc = dataclasses.replace(where, value_class=VALUE_CLASS) if where is not None else None
    return error(
        f"{field} holds what looks like an NHS number; optout does not store or print NHS numbers "
        "in free text",
        where=loc,
        hint=hint or HINT,
    )

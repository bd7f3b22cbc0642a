"""The request and reply files of the check service, and the names we give a request.

Facts about the national "Check for National Data Opt-outs" service (see the project's design
notes; 002 "applying via the check service over MESH"):

- the request is a ``.dat`` file: no header, one NHS number per line followed by a comma, LF line
  ends; one invalid number makes the service reject the *whole* file with the single line
  ``The file contains one or more invalid NHS Numbers.`` — so we validate before sending;
- the MESH Subject and LocalID are required and may hold only letters, digits, ``-`` and ``_``
  (anything else, e.g. a ``:``, and no reply ever comes);
- the reply is a ``SUCCESS`` notification (small JSON body) and then the cleaned list (same format
  as the request, listing only the people *without* an opt-out); both carry our LocalID.

Everything here is pure (no MESH, no store) so it can be tested on its own.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from optout.dat import SERVICE_REJECTION, encode_dat
from optout.errors import UsageError
from optout.text import contains_nhs_number

__all__ = [
    "MAX_LOCAL_ID",
    "SAFE_TEXT",
    "ReplyKind",
    "classify_reply",
    "dat_bytes",
    "default_subject",
    "format_duration",
    "new_local_id",
    "parse_duration",
    "require_safe",
]

SAFE_TEXT = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_LOCAL_ID = 64  # our store's column; MESH allows more
MODES = ("one-off", "cache")


def require_safe(text: str, *, what: str) -> str:
    """Subject and LocalID: letters, digits, ``-`` and ``_`` only, or the service never replies."""
    if not text or not SAFE_TEXT.fullmatch(text):
        raise UsageError(
            f"the {what} may hold only letters, digits, '-' and '_' (the check service silently "
            "ignores a request whose Subject or LocalID holds anything else, e.g. a ':' or a space)",
            hint=f"choose a {what} like optout-check-2026-03",
        )
    if what == "LocalID" and len(text) > MAX_LOCAL_ID:
        raise UsageError(f"the LocalID is longer than {MAX_LOCAL_ID} characters", hint="choose a shorter one")
    return text


def new_local_id(mode: str, *, now: datetime | None = None, token: str | None = None) -> str:
    """A unique LocalID ``optout-<mode>-<UTC time>-<random>``.

    For example ``optout-oneoff-20260301T093000Z-3f9a1c2b``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    when = (now or datetime.now(UTC)).astimezone(UTC)
    token = token if token is not None else secrets.token_hex(4)
    local_id = f"optout-{mode.replace('-', '')}-{when:%Y%m%dT%H%M%SZ}-{token}"
    return require_safe(local_id, what="LocalID")


def default_subject(mode: str) -> str:
    """A safe Subject naming what the request is for (no spaces: they are not allowed)."""
    return "optout-cache-refresh" if mode == "cache" else "optout-one-off-check"


def dat_bytes(numbers: np.ndarray) -> bytes:
    """The request body: ``DDDDDDDDDD,`` + LF per number (leading zeros kept, for CHI numbers)."""
    x = np.asarray(numbers, dtype=np.int64)
    if x.size and ((x < 0) | (x >= 10_000_000_000)).any():
        raise ValueError("dat_bytes: values must be 10-digit numbers")
    return encode_dat(x)


# --------------------------------------------------------------------------- durations

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|min|s|sec)?", re.IGNORECASE)
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0, "sec": 1.0, None: 1.0}


def parse_duration(text: str, *, what: str = "--wait") -> timedelta:
    """``2h``, ``90m``, ``1h30m``, ``45s``, ``1d``, ``300`` (seconds) -> timedelta."""
    raw = text.strip().replace(" ", "")
    if not raw:
        raise UsageError(f"{what} is empty", hint="give a duration like 2h, 30m, 1h30m or 90s")
    total = 0.0
    pos = 0
    for m in _DURATION.finditer(raw):
        if m.start() != pos or not m.group(0):
            break
        unit = m.group(2).lower() if m.group(2) else None
        total += float(m.group(1)) * _UNITS[unit]
        pos = m.end()
    if pos != len(raw):
        raise UsageError(
            f"{what} {text!r} is not a duration", hint="give a duration like 2h, 30m, 1h30m, 90s or 1d"
        )
    return timedelta(seconds=total)


def format_duration(d: timedelta) -> str:
    secs = max(0, int(d.total_seconds()))
    days, rest = divmod(secs, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if h:
        parts.append(f"{h}h")
    if m:
        parts.append(f"{m}m")
    if s or not parts:
        parts.append(f"{s}s")
    return "".join(parts)


# --------------------------------------------------------------------------- replies


class ReplyKind:
    NOTIFICATION = "notification"  # SUCCESS, small JSON body
    CLEANED_LIST = "cleaned-list"  # the .dat: the people without an opt-out
    REJECTION = "rejection"  # "The file contains one or more invalid NHS Numbers."
    REPORT = "report"  # a MESH non-delivery / error report: the request never reached the service


@dataclass(frozen=True)
class Classified:
    kind: str
    detail: str = ""


def classify_reply(
    *, message_type: str | None, subject: str | None, body: bytes, status: str | None = None
) -> Classified:
    """Tell a MESH report, the service's rejection, its notification and the cleaned list apart."""
    if (message_type or "").upper() == "REPORT":
        return Classified(ReplyKind.REPORT, f"MESH report (status {status or 'unknown'})")
    stripped = body[:4096].strip()  # the head decides; no copy of a 100 MB cleaned list
    if stripped == SERVICE_REJECTION:
        return Classified(ReplyKind.REJECTION, SERVICE_REJECTION.decode())
    if (subject or "").strip().upper() == "SUCCESS" or stripped.startswith(b"{"):
        return Classified(ReplyKind.NOTIFICATION, "SUCCESS notification")
    return Classified(ReplyKind.CLEANED_LIST)


def notification_summary(body: bytes) -> dict[str, Any]:
    """The notification's JSON (counts and ids only are kept; anything else is dropped)."""
    import json

    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"unparsed": True, "bytes": len(body)}
    if not isinstance(doc, dict):
        return {"unparsed": True, "bytes": len(body)}
    out: dict[str, Any] = {}
    for k, v in doc.items():
        number = isinstance(v, bool | float) or (isinstance(v, int) and abs(v) < 1_000_000_000)
        text = (
            isinstance(v, str)
            and len(v) <= 80
            and not v.replace(" ", "").isdigit()
            and not contains_nhs_number(v)  # "invalid number 943 476 5919": dropped, never audited
        )
        if number or text:
            out[str(k)[:64]] = v
    return out

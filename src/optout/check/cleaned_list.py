"""The cleaned list: the check service's reply, read into an allow-list.

Policy 001 §8 (summary): the service "returns a 'cleaned list' of those that do not have a
national data opt-out i.e. it removes the NHS numbers for those with a national data opt-out".
So the file lists the people whose data MAY go out; everyone else is withheld (fail closed).

File forms accepted:

- the service's ``.dat`` reply: no header, one NHS number per line followed by a comma, LF or
  CRLF line ends (``9434765919,``);
- a one-column CSV (an optional header line, then one NHS number per row).

With it we need the time of the check (001 §8.4: data must be disclosed within 20 days of a
check made directly with the service; 13 days when it came from a temporary cache). It comes
from ``checked_at=`` or from the sidecar ``<file>.json`` that ``optout check`` writes.

The set of opted-out people (submitted minus returned) is never computed here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from optout.dat import encode_dat, read_dat_bytes, read_number_file, sorted_unique, write_dat
from optout.errors import InputError, IntegrityError, Location, UsageError

__all__ = [
    "CACHE_WINDOW",
    "ONE_OFF_WINDOW",
    "SIDECAR_FORMAT",
    "AllowList",
    "encode_dat",
    "parse_checked_at",
    "read_cleaned_list",
    "read_dat_bytes",
    "read_number_file",
    "sorted_unique",
    "write_dat",
]

SIDECAR_FORMAT = "optout-cleaned-list/1"
ONE_OFF_WINDOW = timedelta(days=20)  # 001 §8.4: "20 days to process and disclose the data"
CACHE_WINDOW = timedelta(days=13)  # 001 §8.4: cache "13 days to process and disclose the data"


@dataclass(frozen=True)
class AllowList:
    """The people whose records may be released: normalised NHS numbers WITHOUT an opt-out."""

    numbers: np.ndarray  # sorted, unique int64
    checked_at: datetime  # tz-aware UTC
    source: str  # "one-off" | "cache"
    sha256: str
    origin: str
    local_id: str | None = None
    cohort: np.ndarray | None = None  # sorted unique int64 of the submitted cohort, when known

    @property
    def deadline(self) -> datetime:
        """001 §8.4: disclose within 20 days of a direct check, 13 days of a cache refresh."""
        return self.checked_at + (CACHE_WINDOW if self.source == "cache" else ONE_OFF_WINDOW)

    def __repr__(self) -> str:  # never show the numbers
        return (
            f"AllowList(size={self.numbers.shape[0]}, source={self.source!r}, "
            f"checked_at={self.checked_at.isoformat()}, sha256={self.sha256[:12]}...)"
        )


def parse_checked_at(value: str | datetime, *, what: str = "--checked-at") -> datetime:
    """A tz-aware UTC datetime from ISO-8601 text; naive times are refused (which zone?)."""
    if isinstance(value, datetime):
        dt = value
    else:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise UsageError(
                f"{what} is not an ISO-8601 time",
                hint="write it like 2026-03-01T09:30:00Z (UTC) or 2026-03-01T10:30:00+01:00",
            ) from None
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise UsageError(
            f"{what} has no time zone",
            hint="add Z for UTC or the offset, e.g. 2026-03-01T09:30:00Z; the disclosure deadline "
            "(001 §8.4) depends on it",
        )
    return dt.astimezone(UTC)


def _read_sidecar(path: Path) -> dict[str, object] | None:
    side = path.with_name(path.name + ".json")
    if not side.exists():
        return None
    try:
        meta = json.loads(side.read_text("utf-8"))
    except (OSError, ValueError):
        raise InputError(
            f"{side.name} (the cleaned list's sidecar) is not readable JSON",
            where=Location(file=side),
            hint="collect the reply again with `optout check collect`, or move the sidecar away and "
            "give --checked-at",
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise InputError(
            f"{side.name} is not an optout cleaned-list sidecar",
            where=Location(file=side),
            hint=f'its "format" must be "{SIDECAR_FORMAT}"',
        )
    return meta


def read_cleaned_list(
    path: str | Path,
    *,
    checked_at: datetime | str | None = None,
    cohort: str | Path | None = None,
) -> AllowList:
    """Read a cleaned list (and its sidecar, and the submitted cohort when given)."""
    path = Path(path)
    numbers, sha = read_number_file(path)
    meta = _read_sidecar(path)
    local_id: str | None = None
    when: datetime | None = None
    mode = "one-off"
    if meta is not None:
        if meta.get("sha256") and meta["sha256"] != sha:
            raise IntegrityError(
                f"{path.name} does not match its sidecar (SHA-256 differs): it changed after it was "
                "collected",
                where=Location(file=path),
                hint="collect the cleaned list again; never edit it by hand",
            )
        if meta.get("checked_at"):
            when = parse_checked_at(str(meta["checked_at"]), what=f"{path.name}.json checked_at")
        local_id = str(meta["local_id"]) if meta.get("local_id") else None
        mode = str(meta.get("mode") or "one-off")
    if checked_at is not None:
        when = parse_checked_at(checked_at)
    if when is None:
        raise UsageError(
            f"when was {path.name} checked? The disclosure deadline (001 §8.4: 20 days from the "
            "check) cannot be worked out without it",
            hint="give --checked-at 2026-03-01T09:30:00Z (the time the request was sent), or "
            "collect the list with `optout check`, which writes it in the sidecar",
        )
    cohort_arr: np.ndarray | None = None
    if cohort is not None:
        # the cohort as `optout check` read it: a .dat, a plain list, or a table whose NHS-number
        # column is detected by name (invalid rows were withheld, so they were never submitted)
        from optout.check.cohort import read_cohort

        cohort_arr = read_cohort(cohort).numbers
        extra = np.setdiff1d(numbers, cohort_arr, assume_unique=True)
        if extra.size:
            raise InputError(
                f"the cleaned list has {extra.size} number(s) that are not in the cohort "
                f"{Path(cohort).name}: they cannot be the answer to that request",
                where=Location(file=path),
                hint="give the cohort file that was submitted for this cleaned list",
            )
    return AllowList(
        numbers=numbers,
        checked_at=when,
        source="cache" if mode == "cache" else "one-off",
        sha256=sha,
        origin=path.name,
        local_id=local_id,
        cohort=cohort_arr,
    )

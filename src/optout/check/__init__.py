"""The organisation side of the "Check for National Data Opt-outs" service (001 §8).

Two ways of using the service, as 001 §8 describes them:

- **one-off cleaned list** — :func:`check_cohort` sends the NHS numbers of the people whose data
  is to be disclosed and writes the returned cleaned list (those *without* an opt-out) with its
  sidecar; disclose within 20 days of the check (001 §8.4). "Most suitable for one-off and
  infrequent disclosures of data."
- **temporary cache** — :func:`refresh_cache` sends everyone the organisation has a
  legitimate relationship with and keeps the answer encrypted for at most 7 days; disclose within
  13 days of the refresh. "Most suitable for large scale and frequent disclosures of data."

``collect`` fetches the reply to a request sent with ``wait=None``; ``resume`` carries on with a
request after a crash. Request state lives in the metadata store (:mod:`optout.check.state`).

The names are imported on first use (PEP 562): ``optout apply`` reads a cleaned list
(:mod:`optout.check.cleaned_list`) without loading MESH, the audit trail and SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optout.check.cohort import Cohort, InvalidClass, cohort_from_numbers, read_cohort
    from optout.check.exchange import (
        DEFAULT_WAIT,
        CheckResult,
        check_cohort,
        collect,
        list_requests,
        refresh_cache,
        resume,
    )
    from optout.check.request import new_local_id, parse_duration

_WHERE = {
    "Cohort": "optout.check.cohort",
    "InvalidClass": "optout.check.cohort",
    "cohort_from_numbers": "optout.check.cohort",
    "read_cohort": "optout.check.cohort",
    "DEFAULT_WAIT": "optout.check.exchange",
    "CheckResult": "optout.check.exchange",
    "check_cohort": "optout.check.exchange",
    "collect": "optout.check.exchange",
    "list_requests": "optout.check.exchange",
    "refresh_cache": "optout.check.exchange",
    "resume": "optout.check.exchange",
    "new_local_id": "optout.check.request",
    "parse_duration": "optout.check.request",
}

__all__ = [
    "DEFAULT_WAIT",
    "CheckResult",
    "Cohort",
    "InvalidClass",
    "check_cohort",
    "cohort_from_numbers",
    "collect",
    "list_requests",
    "new_local_id",
    "parse_duration",
    "read_cohort",
    "refresh_cache",
    "resume",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:  # a submodule (optout.check.exchange, ...), as the eager imports made them
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'optout.check' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

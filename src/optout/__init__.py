"""optout: apply the National Data Opt-out (England) to data releases.

Public API (everything else is private and may change):

Each name is imported on first use (PEP 562), so ``import optout`` (and the command line, which
imports its package) does not load every room and its libraries (SQLAlchemy, DuckDB, Polars,
MESH, Jinja2) before it needs them: ``optout apply`` starts in a fraction of the time.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optout.version import __version__

if TYPE_CHECKING:  # what the names are, for type checkers and readers
    from optout.audit import verify as verify_audit_trail
    from optout.audit.evidence import export_evidence
    from optout.check import check_cohort, refresh_cache
    from optout.check.cache import load_allow_list as load_cache
    from optout.check.cleaned_list import AllowList, read_cleaned_list
    from optout.errors import (
        InputError,
        IntegrityError,
        NotFoundError,
        OptoutError,
        OutputError,
        PendingError,
        PolicyRefusal,
        TransportError,
        UsageError,
    )
    from optout.nhs_number import NHSNumber
    from optout.policy import Decision, Flow, assess, load_flow
    from optout.registry.gate import collect as collect_submission
    from optout.registry.gate import load_profile
    from optout.release import ReleaseReport, apply_opt_outs

# public name -> (module, attribute)
_WHERE: dict[str, tuple[str, str]] = {
    "AllowList": ("optout.check.cleaned_list", "AllowList"),
    "Decision": ("optout.policy", "Decision"),
    "Flow": ("optout.policy", "Flow"),
    "InputError": ("optout.errors", "InputError"),
    "IntegrityError": ("optout.errors", "IntegrityError"),
    "NHSNumber": ("optout.nhs_number", "NHSNumber"),
    "NotFoundError": ("optout.errors", "NotFoundError"),
    "OptoutError": ("optout.errors", "OptoutError"),
    "OutputError": ("optout.errors", "OutputError"),
    "PendingError": ("optout.errors", "PendingError"),
    "PolicyRefusal": ("optout.errors", "PolicyRefusal"),
    "ReleaseReport": ("optout.release", "ReleaseReport"),
    "TransportError": ("optout.errors", "TransportError"),
    "UsageError": ("optout.errors", "UsageError"),
    "apply_opt_outs": ("optout.release", "apply_opt_outs"),
    "assess": ("optout.policy", "assess"),
    "check_cohort": ("optout.check", "check_cohort"),
    "collect_submission": ("optout.registry.gate", "collect"),
    "export_evidence": ("optout.audit.evidence", "export_evidence"),
    "load_cache": ("optout.check.cache", "load_allow_list"),
    "load_flow": ("optout.policy", "load_flow"),
    "load_profile": ("optout.registry.gate", "load_profile"),
    "read_cleaned_list": ("optout.check.cleaned_list", "read_cleaned_list"),
    "refresh_cache": ("optout.check", "refresh_cache"),
    "verify_audit_trail": ("optout.audit", "verify"),
}

__all__ = [
    "AllowList",
    "Decision",
    "Flow",
    "InputError",
    "IntegrityError",
    "NHSNumber",
    "NotFoundError",
    "OptoutError",
    "OutputError",
    "PendingError",
    "PolicyRefusal",
    "ReleaseReport",
    "TransportError",
    "UsageError",
    "__version__",
    "apply_opt_outs",
    "assess",
    "check_cohort",
    "collect_submission",
    "export_evidence",
    "load_cache",
    "load_flow",
    "load_profile",
    "read_cleaned_list",
    "refresh_cache",
    "verify_audit_trail",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:  # a submodule (optout.audit, ...), as the eager imports made them
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module 'optout' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

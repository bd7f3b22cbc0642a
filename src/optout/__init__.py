"""optout: apply the National Data Opt-out (England) to data releases.

Public API (everything else is private and may change):
"""

from __future__ import annotations

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
from optout.version import __version__

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

"""optout: apply the National Data Opt-out (England) to data releases.

Public API (everything else is private and may change):
"""

from __future__ import annotations

__version__ = "0.1.0"

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

__all__ = [
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
    "TransportError",
    "UsageError",
    "__version__",
    "assess",
    "load_flow",
]

"""The reference central "Check for National Data Opt-outs" service (the central side).

``Register`` holds preference events per NHS number and publishes a snapshot every 24 hours
(001 §8.3, §8.4); ``Responder`` answers check requests on the service's MESH mailbox from the
latest published snapshot, the way the national service does. Used by ``optout service ...``,
``optout sandbox start``, ``make demo`` and the tests; never by the organisation side.
"""

from optout.service.register import PUBLISH_EVERY, Register, RegisterStatus, Snapshot
from optout.service.responder import REJECTION, Responder, format_dat, parse_request

__all__ = [
    "PUBLISH_EVERY",
    "REJECTION",
    "Register",
    "RegisterStatus",
    "Responder",
    "Snapshot",
    "format_dat",
    "parse_request",
]

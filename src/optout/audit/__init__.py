"""Proof: the append-only, hash-chained audit trail (:mod:`.trail`) and the evidence pack an IG
lead hands to an auditor or uses for the DSPT (:mod:`.evidence`, loaded on demand).

``from optout import audit; audit.record(...)`` is the trail's API.
"""

from __future__ import annotations

from optout.audit.trail import (
    GENESIS,
    Entry,
    Problem,
    Verification,
    canonical,
    check_chain,
    entries,
    entries_between,
    entry_hash,
    now_iso,
    record,
    record_change,
    verify,
)

__all__ = [
    "GENESIS",
    "Entry",
    "Problem",
    "Verification",
    "canonical",
    "check_chain",
    "entries",
    "entries_between",
    "entry_hash",
    "now_iso",
    "record",
    "record_change",
    "verify",
]

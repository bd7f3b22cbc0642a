"""Tampering with the audit log as a determined insider would: drop the append-only triggers
(migration 0002) first, then change history directly in the database file."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_for_tampering(db: str | Path) -> sqlite3.Connection:
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    return con

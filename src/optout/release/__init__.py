"""Releases: making one, its lifecycle, and the linkage check.

- making a release (001 §8.1 whole-record removal into an atomic folder): :mod:`.make`
  (``apply_opt_outs``), :mod:`.plan` (tables, keys, links, the 001 §8.2 choice), :mod:`.engines`
  (DuckDB, the pure-Python reference), :mod:`.manifest` (``release.json``), :mod:`.report`;
- its lifecycle — prepared -> disclosed | expired | withdrawn, the 20/13-day deadlines of 001 §8.4
  and the recipient check: :mod:`.lifecycle`; recorded (``preparing``) before its folder is
  visible, and settled (``prepared`` or ``failed``) after a crash: :mod:`.recover`;
- the linkage check over files released without the opt-out (001 §8.1): :mod:`.linkcheck`.
"""

from __future__ import annotations

from optout.release.make import ENGINES, REPORT_FOR, apply_opt_outs
from optout.release.report import ReleaseReport, TableReport

__all__ = ["ENGINES", "REPORT_FOR", "ReleaseReport", "TableReport", "apply_opt_outs"]

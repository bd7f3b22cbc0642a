"""Collection for national registries and audits (000, e.g. CRANE): the collection gate.

Opted out => nothing recorded; no consent => the registry's minimum dataset only. The registry's
rules are data (``profiles/*.yaml``); :mod:`.gate` applies them.
"""

from __future__ import annotations

from optout.registry.gate import collect, load_profile

__all__ = ["collect", "load_profile"]

"""Benchmark stages: one module each, found by name. Adding a stage = adding one module here.

A stage module defines:

- ``NAME``   short id used on the command line (``--stages apply_api,floor``) and in results.json;
- ``TITLE``  one line for the printed table;
- ``ORDER``  int: stages run in this order;
- ``GROUP``  stages in one group are compared with each other; the group's stage with
  ``IS_FLOOR = True`` is the floor every other stage's ``seconds`` is divided by (the ratio);
- ``run(ctx: Context) -> dict``  does the work inside a fresh process and returns at least
  ``{"seconds": float}`` (the time compared; the harness also records the process's wall time
  and peak RSS). Release stages return ``{"rows_out": {table: n}}`` too: the harness checks that
  every release stage removed exactly the same rows.

Optional: ``IS_FLOOR`` (default False), ``skip(ctx) -> str | None`` (a reason not to run at this
size), ``REPEAT`` (runs per invocation; the fastest is reported), ``DEFAULT`` (False: run only
when named with ``--stages``).
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def all_stages() -> list[ModuleType]:
    mods = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    mods = [m for m in mods if hasattr(m, "NAME") and hasattr(m, "run")]
    return sorted(mods, key=lambda m: (m.ORDER, m.NAME))


def get(name: str) -> ModuleType:
    for m in all_stages():
        if name == m.NAME:
            return m
    raise KeyError(name)

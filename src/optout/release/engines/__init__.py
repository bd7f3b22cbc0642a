"""The engines that apply an allow-list to a release plan, and the registry that names them.

An engine implements :class:`optout.release.engines.base.Engine`. The base class knows none of
its implementations; this registry does. Each entry is loaded on first use, so an engine whose
library is heavy or optional (DuckDB, PySpark) is imported only when it is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from optout.errors import UsageError
from optout.release.engines.base import Engine

__all__ = ["ENGINES", "Engine", "get_engine", "register_engine"]

# name -> "module:attribute" of a callable returning an Engine
_REGISTRY: dict[str, str] = {
    "duckdb": "optout.release.engines.duckdb:DuckDBEngine",
    "reference": "optout.release.engines.reference:ReferenceEngine",
    "spark": "optout.release.engines.spark:SparkEngine",
}


def register_engine(name: str, target: str) -> None:
    """Name an engine (``"package.module:Class"``); a later registration of the name replaces it."""
    if ":" not in target:
        raise ValueError("register_engine: target must be 'module:attribute'")
    _REGISTRY[name] = target


def engine_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


ENGINES = engine_names()  # the engines known at import time ("duckdb" is the default)


def _factory(name: str) -> Callable[..., Engine]:
    module, _, attr = _REGISTRY[name].partition(":")
    factory: Callable[..., Engine] = getattr(importlib.import_module(module), attr)
    return factory


def get_engine(name: str, **kwargs: object) -> Engine:
    if name not in _REGISTRY:
        choices = ", ".join(f"--engine {n}" for n in _REGISTRY)
        raise UsageError(f"unknown engine {name!r}", hint=f"use one of: {choices} (duckdb is the default)")
    return _factory(name)(**kwargs)

"""The engines that apply an allow-list to a release plan, and the registry that names them.

An engine implements :class:`optout.release.engines.base.Engine`. The base class knows none of
its implementations; this registry does. Each entry is loaded on first use, so an engine whose
library is heavy or optional (DuckDB, Polars, PySpark) is imported only when it is asked for.

*Embedded* engines run inside this process on this machine (``polars``, the default, ``duckdb``,
``reference``); the others drive something outside it (``spark``: a JVM, maybe a cluster). Every
embedded engine is held to the reference engine by the equivalence tests (tests/generative).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from optout.errors import UsageError
from optout.release.engines.base import Engine

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "Engine",
    "embedded_engine_names",
    "engine_names",
    "get_engine",
    "load_engine",
    "register_engine",
]

# the fastest engine that gives the reference engine's answers (docs/speed.md)
DEFAULT_ENGINE = "polars"

# name -> "module:attribute" of a callable returning an Engine
_REGISTRY: dict[str, str] = {
    "duckdb": "optout.release.engines.duckdb:DuckDBEngine",
    "polars": "optout.release.engines.polars:PolarsEngine",
    "reference": "optout.release.engines.reference:ReferenceEngine",
    "spark": "optout.release.engines.spark:SparkEngine",
}
_EXTERNAL: set[str] = {"spark"}  # not embedded (see the module docstring)


def register_engine(name: str, target: str, *, embedded: bool = True) -> None:
    """Name an engine (``"package.module:Class"``); a later registration of the name replaces it.

    ``embedded=False`` for an engine that drives something outside this process."""
    if ":" not in target:
        raise ValueError("register_engine: target must be 'module:attribute'")
    _REGISTRY[name] = target
    if embedded:
        _EXTERNAL.discard(name)
    else:
        _EXTERNAL.add(name)


def engine_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def embedded_engine_names() -> tuple[str, ...]:
    """The engines that run in this process (the equivalence tests run every one of them)."""
    return tuple(n for n in _REGISTRY if n not in _EXTERNAL)


ENGINES = engine_names()  # the engines known at import time (DEFAULT_ENGINE is the default)


def _factory(name: str) -> Callable[..., Engine]:
    module, _, attr = _REGISTRY[name].partition(":")
    factory: Callable[..., Engine] = getattr(importlib.import_module(module), attr)
    return factory


def load_engine(name: str) -> Callable[..., Engine]:
    """Import an engine's module (and its libraries) without making one; its class (factory)."""
    return _factory(name)


def get_engine(name: str, **kwargs: object) -> Engine:
    if name not in _REGISTRY:
        choices = ", ".join(f"--engine {n}" for n in _REGISTRY)
        raise UsageError(
            f"unknown engine {name!r}", hint=f"use one of: {choices} ({DEFAULT_ENGINE} is the default)"
        )
    return _factory(name)(**kwargs)

"""Dashboard panels that other areas contribute (the checklist's progress, for one).

An area registers a function at import time::

    from optout.web.panels import Panel, dashboard_panel

    @dashboard_panel(order=50)
    def checklist_progress(request, store, settings, user):
        return Panel("Compliance checklist", "checklist/_panel.html", {"done": 3, "total": 6})

The function returns a :class:`Panel` (or None to show nothing); the dashboard includes the
panel's template with its context (plus ``request``, ``user``). A panel that raises is shown as
"could not be loaded" and never breaks the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PanelFn = Callable[..., "Panel | None"]


@dataclass
class Panel:
    title: str
    template: str
    context: dict[str, Any] = field(default_factory=dict)
    href: str | None = None  # "see all" link


_PANELS: list[tuple[int, str, PanelFn]] = []


def dashboard_panel(order: int = 100) -> Callable[[PanelFn], PanelFn]:
    """Register a dashboard panel function (lower ``order`` shows first)."""

    def deco(fn: PanelFn) -> PanelFn:
        name = f"{fn.__module__}.{fn.__qualname__}"
        _PANELS[:] = [p for p in _PANELS if p[1] != name]  # re-import safe
        _PANELS.append((order, name, fn))
        _PANELS.sort(key=lambda p: (p[0], p[1]))
        return fn

    return deco


def dashboard_panels() -> list[tuple[str, PanelFn]]:
    """The registered panels, in order: (name, function)."""
    return [(name, fn) for _order, name, fn in _PANELS]

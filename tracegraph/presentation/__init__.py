"""How runs look: durations, text Gantt charts, outcome colours and HTML, for every output tracegraph has."""

from __future__ import annotations

__all__ = ()

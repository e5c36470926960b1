"""The web UI and JSON API: the Starlette app, its pages, SVG charts and diagrams, and static files."""

from __future__ import annotations

__all__ = ()

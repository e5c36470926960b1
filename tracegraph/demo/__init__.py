"""`tracegraph demo`: example graphs run against the local dashboard."""

from __future__ import annotations

__all__ = ()

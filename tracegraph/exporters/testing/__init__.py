"""The test capture (`tracegraph_capture`), its pytest plugin, and spans as rows for notebooks."""

from __future__ import annotations

__all__ = ()

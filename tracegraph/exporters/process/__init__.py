"""The export process (opt-in): spans cross to a child process that encodes and sends them."""

from __future__ import annotations

__all__ = ()

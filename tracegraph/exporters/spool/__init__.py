"""The disk spool: spans go to local segment files first, then to the backend."""

from __future__ import annotations

__all__ = ()

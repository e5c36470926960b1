"""`configure()` and what it is built from: settings from arguments and `OTEL_*` variables, where span
processors go, and the count of spans lost."""

from __future__ import annotations

__all__ = ()

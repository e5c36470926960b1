"""Running the dashboard: the server (foreground or thread), its connection limits and guards,
and which server holds a store."""

from __future__ import annotations

__all__ = ()

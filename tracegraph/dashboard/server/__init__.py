"""Running the dashboard: the app on one port, the server (foreground or thread), sign-in, limits and guards."""

from __future__ import annotations

__all__ = ()

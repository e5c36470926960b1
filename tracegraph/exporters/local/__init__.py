"""Outputs on this machine: JSON Lines span files, the console timeline, and whole-or-nothing writes."""

from __future__ import annotations

__all__ = ()

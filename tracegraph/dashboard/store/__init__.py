"""The DuckDB store and what is read from it: runs, outlines, details, statistics, comparisons, reports."""

from __future__ import annotations

__all__ = ()

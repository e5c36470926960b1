"""The DuckDB store: its tables and batches, writes (group commit, deduplication), and what is read back."""

from __future__ import annotations

__all__ = ()

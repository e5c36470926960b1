"""Metric views and temporality, and the version-gated merge of pre-aggregated durations into the SDK."""

from __future__ import annotations

__all__ = ()

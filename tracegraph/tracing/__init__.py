"""Tracing layer: span names and attributes, scrubbing, metrics and the `NodeTimeline` model."""

from __future__ import annotations

from .timeline import NodeError, NodeRecord, NodeTimeline

__all__ = ('NodeError', 'NodeRecord', 'NodeTimeline')

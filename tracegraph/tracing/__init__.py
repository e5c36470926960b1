"""Tracing layer: span names and attributes, scrubbing, metrics and the `NodeTimeline` model."""

from __future__ import annotations

from .scrubbing import ScrubbingOptions
from .settings import InstrumentationSettings
from .timeline import NodeError, NodeRecord, NodeTimeline

__all__ = ('InstrumentationSettings', 'NodeError', 'NodeRecord', 'NodeTimeline', 'ScrubbingOptions')

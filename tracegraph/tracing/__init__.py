"""Tracing layer: span names and attributes, scrubbing, metrics and the `NodeTimeline` model."""

from __future__ import annotations

from .instrumentation_settings import InstrumentationSettings
from .scrubbing import ScrubbingOptions
from .timeline import NodeError, NodeRecord, NodeTimeline

__all__ = ('InstrumentationSettings', 'NodeError', 'NodeRecord', 'NodeTimeline', 'ScrubbingOptions')

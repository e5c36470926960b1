"""tracegraph: typed async graphs and state machines in which every run is observable."""

from __future__ import annotations

from .tracing import NodeTimeline

__all__ = ('NodeTimeline',)
__version__ = '0.1.0'

"""tracegraph: typed async graphs and state machines in which every run is observable."""

from __future__ import annotations

from ._version import __version__
from .exceptions import GraphRuntimeError, GraphSetupError
from .graph import Graph
from .history import EndStep, HistoryStep, NodeStep
from .nodes import BaseNode, Edge, End, GraphRunContext
from .persistence import EndSnapshot, NodeSnapshot, Snapshot
from .persistence.in_mem import FullStatePersistence, SimpleStatePersistence
from .run import GraphRun, GraphRunResult
from .tracing import InstrumentationSettings, NodeTimeline, ScrubbingOptions

__all__ = (
    '__version__',
    'Graph',
    'GraphRun',
    'GraphRunResult',
    'BaseNode',
    'End',
    'GraphRunContext',
    'Edge',
    'EndStep',
    'HistoryStep',
    'NodeStep',
    'GraphSetupError',
    'GraphRuntimeError',
    'NodeSnapshot',
    'EndSnapshot',
    'Snapshot',
    'FullStatePersistence',
    'SimpleStatePersistence',
    'InstrumentationSettings',
    'ScrubbingOptions',
    'NodeTimeline',
)

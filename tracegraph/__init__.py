"""tracegraph: typed async graphs and state machines in which every run is observable.

The names below are imported on first use (PEP 562), so that importing a submodule alone stays cheap: pytest loads
`tracegraph.exporters.testing.pytest_plugin` in every run of every project that has tracegraph installed, and
that must not import the engine, pydantic and OpenTelemetry. `from tracegraph import Graph` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
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

_LAZY: dict[str, str] = {
    'Graph': 'graph',
    'GraphRun': 'run',
    'GraphRunResult': 'run',
    'BaseNode': 'nodes',
    'End': 'nodes',
    'GraphRunContext': 'nodes',
    'Edge': 'nodes',
    'EndStep': 'history',
    'HistoryStep': 'history',
    'NodeStep': 'history',
    'GraphSetupError': 'exceptions',
    'GraphRuntimeError': 'exceptions',
    'NodeSnapshot': 'persistence',
    'EndSnapshot': 'persistence',
    'Snapshot': 'persistence',
    'FullStatePersistence': 'persistence.in_mem',
    'SimpleStatePersistence': 'persistence.in_mem',
    'InstrumentationSettings': 'tracing',
    'ScrubbingOptions': 'tracing',
    'NodeTimeline': 'tracing',
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'{__name__}.{module}'), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

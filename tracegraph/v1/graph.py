"""pydantic_graph 1.x's `graph` module: `Graph` with the 0.0.54+ iteration, and the run classes (tracegraph's own)."""

from __future__ import annotations

from typing import Any, ClassVar

from .. import graph as _graph
from ..graph import GraphRun, GraphRunResult
from ..history import StateT
from ..nodes import DepsT, RunEndT

__all__ = ('Graph', 'GraphRun', 'GraphRunResult')


class Graph(_graph.Graph[StateT, DepsT, RunEndT]):
    """`tracegraph.Graph` whose runs yield their start node first (`async for`), as pydantic_graph 0.0.54+ does.

    Everything else is `tracegraph.Graph`; pass `yield_start_node=False` for the classic iteration.
    """

    default_yield_start_node: ClassVar[bool] = True


def __getattr__(name: str) -> Any:
    return getattr(_graph, name)

"""The node types under their pydantic_graph 1.x module name (`pydantic_graph.basenode`); they live in `nodes`."""

from __future__ import annotations

from .nodes import (
    BaseNode,
    DepsT,
    Edge,
    End,
    GraphRunContext,
    NodeDef,
    NodeRunEndT,
    RunEndT,
    StateT,
    generate_snapshot_id,
)

__all__ = (
    'GraphRunContext',
    'BaseNode',
    'End',
    'Edge',
    'NodeDef',
    'DepsT',
    'StateT',
    'RunEndT',
    'NodeRunEndT',
    'generate_snapshot_id',
)

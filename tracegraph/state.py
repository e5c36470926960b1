"""The classic `pydantic_graph.state` module's names, for code that imports them from there."""

from __future__ import annotations

from .history import CustomNodeSchema, EndStep, HistoryStep, NodeStep, StateT, deep_copy_state, nodes_schema_var

__all__ = ('StateT', 'NodeStep', 'EndStep', 'HistoryStep', 'deep_copy_state', 'nodes_schema_var', 'CustomNodeSchema')

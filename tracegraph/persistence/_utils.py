"""Helpers of the persistence package, under the names pydantic_graph 1.x gives them (`persistence._utils`)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from .._utils import now_utc
from ..history import CustomNodeSchema as _HistoryNodeSchema
from ..history import nodes_schema_var
from ..nodes import BaseNode

__all__ = (
    'CustomNodeSchema',
    'nodes_type_context',
    'set_nodes_type_context',
    'now_utc',
    'snapshot_traceparent',
    'recording_traceparent',
)


class CustomNodeSchema(_HistoryNodeSchema):
    """Pydantic schema of a snapshot's `node`: any node of the graph, tagged with its `node_id` in JSON."""

    missing_nodes_message = (
        'Unable to build a Pydantic schema for `BaseNode` without setting `nodes_type_context`. '
        'You should build Pydantic schemas for snapshots using `StatePersistence.set_types()`.'
    )


nodes_type_context: ContextVar[Sequence[type[BaseNode[Any, Any, Any]]]] = nodes_schema_var
"""The node classes a snapshot's `node` field may hold while a schema is built: one variable for histories and
snapshots alike."""

snapshot_traceparent: ContextVar[str | None] = ContextVar('tracegraph_snapshot_traceparent', default=None)
"""The `traceparent` a snapshot made now records: set by the engine around each call it makes to a persistence,
so a persistence written by a user records it without doing anything."""


@contextmanager
def set_nodes_type_context(nodes: Sequence[type[BaseNode[Any, Any, Any]]]) -> Generator[None]:
    """Let pydantic build schemas of snapshots holding any of `nodes` inside the `with` block."""
    token = nodes_type_context.set(nodes)
    try:
        yield
    finally:
        nodes_type_context.reset(token)


@contextmanager
def recording_traceparent(traceparent: str | None) -> Generator[None]:
    """Snapshots made inside the `with` block record `traceparent`."""
    token = snapshot_traceparent.set(traceparent)
    try:
        yield
    finally:
        snapshot_traceparent.reset(token)

"""A run's history: one `NodeStep` per node run, an `EndStep` at the end, and their JSON form."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, Union, cast

import pydantic
from pydantic_core import core_schema
from typing_extensions import TypeVar

from . import _utils
from .nodes import BaseNode, End, RunEndT

__all__ = (
    'StateT',
    'NodeStep',
    'EndStep',
    'HistoryStep',
    'deep_copy_state',
    'nodes_schema_var',
    'CustomNodeSchema',
    'omitting_none',
)

StateT = TypeVar('StateT', default=None)
"""Type of a graph's state."""


def deep_copy_state(state: StateT) -> StateT:
    """The default way to snapshot a run's state for its history: `copy.deepcopy` (None is kept as is)."""
    return state if state is None else copy.deepcopy(state)


class _NodeSchema:
    """Pydantic schema of the `node` of a `NodeStep`: any node of the graph, tagged with its `node_id` in JSON."""

    missing_nodes_message = (
        'Unable to build a Pydantic schema for `NodeStep` or `HistoryStep` without setting `nodes_schema_var`. '
        'You probably want to use `graph.history_type_adapter`, `graph.dump_history` or `graph.load_history`.'
    )
    """The error when no graph set the nodes: the classic text's start, which callers match, and the way out."""

    def __get_pydantic_core_schema__(self, _source: Any, _handler: pydantic.GetCoreSchemaHandler) -> Any:
        try:
            nodes = nodes_schema_var.get()
        except LookupError:
            raise RuntimeError(self.missing_nodes_message) from None
        adapters: dict[str, pydantic.TypeAdapter[Any]] = {n.get_id(): pydantic.TypeAdapter(n) for n in nodes}
        known = ', '.join(f'`{node_id}`' for node_id in adapters)

        def validate(value: Any) -> Any:
            if isinstance(value, BaseNode):
                node: BaseNode[Any, Any, Any] = value  # pyright: ignore[reportUnknownVariableType]
                if node.get_id() not in adapters:
                    raise ValueError(f'Node `{node.get_id()}` is not in the graph; expected one of {known}.')
                return node
            if not isinstance(value, dict) or 'node_id' not in value:
                raise ValueError('A serialized node must be an object with a `node_id` key.')
            data: dict[str, Any] = dict(value)  # pyright: ignore[reportUnknownArgumentType]
            node_id = str(data.pop('node_id'))
            adapter = adapters.get(node_id)
            if adapter is None:
                raise ValueError(f'Unknown node id {node_id!r}; expected one of {known}.')
            return adapter.validate_python(data)

        def serialize(node: Any, info: core_schema.SerializationInfo) -> dict[str, Any]:
            node_id: str = node.get_id()
            adapter = adapters.get(node_id) or pydantic.TypeAdapter[Any](type(node))  # pyright: ignore[reportUnknownArgumentType]
            data: dict[str, Any] = adapter.dump_python(node, mode='json' if info.mode == 'json' else 'python')
            data['node_id'] = node_id
            return data

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(serialize, info_arg=True),
        )


CustomNodeSchema = _NodeSchema
"""The classic name of the `node` field's schema, for code that builds its own history models."""


def omitting_none(tp: Any, *names: str, unless: str | None = None) -> Any:
    """`tp`, whose fields `names` are left out of its serialized form while None.

    tracegraph's own fields (trace ids, traceparents) are absent from the classic formats, so an untraced run dumps to
    exactly upstream's bytes. With `unless`, they are left out always, but for a dump whose `context` holds that key
    with a true value. A wrap serializer at the adapter rather than `Field(exclude_if=...)`, which needs pydantic 2.12.
    """

    def serialize(
        value: Any, serialize_fields: core_schema.SerializerFunctionWrapHandler, info: core_schema.SerializationInfo
    ) -> Any:
        data = serialize_fields(value)
        if isinstance(data, dict):
            context = cast('object', info.context)
            keep = (
                unless is not None and isinstance(context, dict) and bool(cast('dict[str, Any]', context).get(unless))
            )
            for name in names:
                if name in data and (data[name] is None or (unless is not None and not keep)):
                    del data[name]
        return data  # pyright: ignore[reportUnknownVariableType]

    return Annotated[tp, pydantic.WrapSerializer(serialize)]


nodes_schema_var: ContextVar[Sequence[type[BaseNode[Any, Any, Any]]]] = ContextVar('tracegraph_nodes_schema')
"""The node classes a `NodeStep` schema may hold; set while a graph builds its `history_type_adapter`."""


@dataclass
class NodeStep(Generic[StateT, RunEndT]):
    """One node run: the state after it, the node, when it started and how long it took.

    Appended to the history after the node's `run` returned (a node that raises appends no step), as in the classic
    engine. `trace_id` and `span_id` say which span ran it; like upstream's, a step compares and prints without them,
    and `dump_history` leaves them out unless asked (`trace_ids=True`), so a history dumps to the classic bytes.
    """

    state: StateT
    """The state of the graph after the node has been run, snapshotted with `snapshot_state`."""
    node: Annotated[BaseNode[StateT, Any, RunEndT], _NodeSchema()]
    """The node that ran."""
    start_ts: datetime = field(default_factory=_utils.now_utc)
    """When the node started (UTC)."""
    duration: float | None = None
    """How long the node's `run` took, in seconds."""
    kind: Literal['node'] = 'node'
    """Discriminator of `HistoryStep`."""
    snapshot_state: Annotated[Callable[[StateT], StateT], pydantic.Field(exclude=True, repr=False)] = field(
        default=deep_copy_state, repr=False
    )
    """How `state` is copied when the step is made, so later changes to the run's state don't reach it."""
    trace_id: str | None = field(default=None, compare=False, repr=False)
    """32-hex id of the trace whose span ran this node, None when nothing was recording."""
    span_id: str | None = field(default=None, compare=False, repr=False)
    """16-hex id of the span that ran this node, None when nothing was recording."""

    def __post_init__(self) -> None:
        self.state = self.snapshot_state(self.state)

    def data_snapshot(self) -> BaseNode[StateT, Any, RunEndT]:
        """A deep copy of `node`, e.g. to summarise a history without sharing objects with it."""
        return copy.deepcopy(self.node)


@dataclass
class EndStep(Generic[RunEndT]):
    """The end of a run: the `End` a node returned, and when."""

    result: End[RunEndT]
    """The `End` returned by the last node."""
    ts: datetime = field(default_factory=_utils.now_utc)
    """When the run ended (UTC)."""
    kind: Literal['end'] = 'end'
    """Discriminator of `HistoryStep`."""

    def data_snapshot(self) -> End[RunEndT]:
        """A deep copy of `result`."""
        return copy.deepcopy(self.result)


HistoryStep = Union[NodeStep[StateT, RunEndT], EndStep[RunEndT]]
"""One step of a run's history."""

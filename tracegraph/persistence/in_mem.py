"""Persistence in memory: the last snapshot only (the default), or every snapshot."""

from __future__ import annotations

import copy
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import pydantic

from .. import exceptions
from ..nodes import BaseNode, End
from . import (
    BaseStatePersistence,
    EndSnapshot,
    NodeSnapshot,
    RunEndT,
    Snapshot,
    SnapshotStatus,
    StateT,
    build_snapshot_list_type_adapter,
    find_runnable,
    mark_finished,
    mark_running,
    recording_run,
)

__all__ = ('SimpleStatePersistence', 'FullStatePersistence')


def _recording(snapshot: NodeSnapshot[Any, Any]) -> AbstractAsyncContextManager[None]:
    """The in-memory `record_run`: `snapshot` itself marked running, then success or error with its duration."""

    async def start() -> None:
        mark_running(snapshot)

    async def finish(duration: float, status: SnapshotStatus) -> None:
        mark_finished(snapshot, duration, status)

    return recording_run(start, finish)


@dataclass
class SimpleStatePersistence(BaseStatePersistence[StateT, RunEndT]):
    """Holds the last snapshot only: what a run given no persistence uses."""

    last_snapshot: Snapshot[StateT, RunEndT] | None = None
    """The last snapshot."""

    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        self.last_snapshot = NodeSnapshot(state=state, node=next_node)

    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        if self.last_snapshot is None or self.last_snapshot.id != snapshot_id:
            await self.snapshot_node(state, next_node)

    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        self.last_snapshot = EndSnapshot(state=state, result=end)

    def record_run(self, snapshot_id: str) -> AbstractAsyncContextManager[None]:
        return _recording(find_runnable([self.last_snapshot] if self.last_snapshot else [], snapshot_id))

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        last = self.last_snapshot
        if isinstance(last, NodeSnapshot) and last.status == 'created':
            last.status = 'pending'
            return copy.deepcopy(last)
        return None

    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        raise NotImplementedError('load_all is not supported by SimpleStatePersistence: use FullStatePersistence')


@dataclass
class FullStatePersistence(BaseStatePersistence[StateT, RunEndT]):
    """Holds every snapshot of a run in `history`; `dump_json` / `load_json` move them to and from JSON."""

    deep_copy: bool = True
    """Copy states and nodes into the snapshots, so later changes to them do not reach the history."""
    history: list[Snapshot[StateT, RunEndT]] = field(default_factory=list[Snapshot[StateT, RunEndT]])
    """Every snapshot of the run, in order."""
    _snapshots_type_adapter: pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]] | None = field(
        default=None, init=False, repr=False
    )

    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        node = next_node.deep_copy() if self.deep_copy else next_node
        self.history.append(NodeSnapshot(state=self._prep_state(state), node=node))

    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        if not any(s.id == snapshot_id for s in self.history):
            await self.snapshot_node(state, next_node)

    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        result = end.deep_copy_data() if self.deep_copy else end
        self.history.append(EndSnapshot(state=self._prep_state(state), result=result))

    def record_run(self, snapshot_id: str) -> AbstractAsyncContextManager[None]:
        return _recording(find_runnable(self.history, snapshot_id))

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        for snapshot in self.history:
            if isinstance(snapshot, NodeSnapshot) and snapshot.status == 'created':
                snapshot.status = 'pending'
                return copy.deepcopy(snapshot)
        return None

    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        return self.history

    def should_set_types(self) -> bool:
        return self._snapshots_type_adapter is None

    def set_types(self, state_type: type[StateT], run_end_type: type[RunEndT]) -> None:
        self._snapshots_type_adapter = build_snapshot_list_type_adapter(state_type, run_end_type)

    def dump_json(self, *, indent: int | None = None) -> bytes:
        """The history as JSON (the types must be set: run the graph, or call `set_graph_types`, first)."""
        return self._adapter().dump_json(self.history, indent=indent)

    def load_json(self, json_data: str | bytes | bytearray) -> None:
        """Replace the history with the snapshots in `json_data`."""
        self.history = self._adapter().validate_json(json_data)

    def _adapter(self) -> pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]]:
        if self._snapshots_type_adapter is None:
            raise exceptions.GraphRuntimeError(
                'FullStatePersistence has no types yet: call `persistence.set_graph_types(graph)` (a run does) first.'
            )
        return self._snapshots_type_adapter

    def _prep_state(self, state: StateT) -> StateT:
        return state if not self.deep_copy or state is None else copy.deepcopy(state)

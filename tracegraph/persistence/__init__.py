"""Snapshots of a run, and the persistence that stores them: the pydantic_graph 0.0.40–1.x run API.

A run given `persistence=` records a `NodeSnapshot` (status `created`) before each node runs, marks it `running`
and then `success` or `error` around the node (`record_run`), and ends with an `EndSnapshot`. A run interrupted
after any snapshot is continued, in this process or another, by `Graph.iter_from_persistence`.

Every snapshot made while a run is traced also records the W3C `traceparent` of the run's span (`traceparent`,
written to JSON only when set), so the run that resumes it links to the trace it continues. A persistence written
by a user gets this for free: the engine sets it for the snapshots made during its calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from time import perf_counter
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, Union

import pydantic
from typing_extensions import TypeVar

from .. import exceptions
from ..history import omitting_none
from ..nodes import BaseNode, End
from . import _utils
from .ownership import Owner

if TYPE_CHECKING:
    from ..graph import Graph

__all__ = (
    'StateT',
    'RunEndT',
    'NodeSnapshot',
    'EndSnapshot',
    'Snapshot',
    'BaseStatePersistence',
    'SnapshotStatus',
    'build_snapshot_list_type_adapter',
    'UNSET_SNAPSHOT_ID',
)

StateT = TypeVar('StateT', default=Any)
"""Type of a run's state."""
RunEndT = TypeVar('RunEndT', default=Any)
"""Type of a run's output."""

UNSET_SNAPSHOT_ID = '__unset__'
"""The `id` a snapshot is made with before it takes its node's snapshot id."""

SnapshotStatus = Literal['created', 'pending', 'running', 'success', 'error']
"""Where a snapshot is in its life: `created` (not run yet), `pending` (handed out by `load_next`, not run yet),
`running`, `success` (its node returned), `error` (its node raised)."""


class _SnapshotIds:
    """What both snapshot kinds do when made: take their node's snapshot id and the current run's traceparent."""

    id: str
    traceparent: str | None
    node: Any

    def __post_init__(self) -> None:
        if self.id == UNSET_SNAPSHOT_ID:
            self.id = self.node.get_snapshot_id()
        if self.traceparent is None:
            self.traceparent = _utils.snapshot_traceparent.get()


@dataclass(kw_only=True)
class NodeSnapshot(_SnapshotIds, Generic[StateT, RunEndT]):
    """A node to run next, with the state it will run on."""

    state: StateT
    """The state of the graph before the node is run."""
    node: Annotated[BaseNode[StateT, Any, RunEndT], _utils.CustomNodeSchema()]
    """The node to run next."""
    start_ts: datetime | None = None
    """When the node started running, None until it does."""
    duration: float | None = None
    """How long the node ran, in seconds, once it has."""
    status: SnapshotStatus = 'created'
    """Where the snapshot is in its life."""
    kind: Literal['node'] = 'node'
    """Discriminator of `Snapshot`."""
    id: str = UNSET_SNAPSHOT_ID
    """The snapshot's id: its node's `get_snapshot_id()`."""
    traceparent: str | None = field(default=None, compare=False, repr=False)
    """W3C `traceparent` of the span that made the snapshot, None when nothing traced it (tracegraph's own field: in
    the JSON when set, left out of equality and repr, so a snapshot compares as upstream's)."""
    attempt: int | None = field(default=None, compare=False, repr=False)
    """Which run of the node the last start was, once it started again after its process died; None for the first
    (tracegraph's own field, written to JSON only when set)."""


@dataclass(kw_only=True)
class EndSnapshot(_SnapshotIds, Generic[StateT, RunEndT]):
    """The end of a run: the final state and the `End` a node returned."""

    state: StateT
    """The state of the graph at the end of the run."""
    result: End[RunEndT]
    """The `End` the run ended with."""
    ts: datetime = field(default_factory=_utils.now_utc)
    """When the run ended."""
    kind: Literal['end'] = 'end'
    """Discriminator of `Snapshot`."""
    id: str = UNSET_SNAPSHOT_ID
    """The snapshot's id: the `End`'s `get_snapshot_id()`."""
    traceparent: str | None = field(default=None, compare=False, repr=False)
    """W3C `traceparent` of the span that made the snapshot, None when nothing traced it (tracegraph's own field: in
    the JSON when set, left out of equality and repr, so a snapshot compares as upstream's)."""

    @property
    def node(self) -> End[RunEndT]:
        """`result`, so that `[s.node for s in snapshots]` works for every snapshot."""
        return self.result


Snapshot = Union[NodeSnapshot[StateT, RunEndT], EndSnapshot[StateT, RunEndT]]
"""A snapshot of a run: a node to run, or the end."""


class BaseStatePersistence(ABC, Generic[StateT, RunEndT]):
    """Where a run's snapshots are stored; subclass it to store them elsewhere (a database, an object store).

    Use one instance per run. The engine calls `snapshot_node` / `snapshot_node_if_new` before a node runs,
    `record_run` around it, `snapshot_end` at the end, and `load_next` to resume.
    """

    @abstractmethod
    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        """Store a `NodeSnapshot` of `state` with `next_node` to run next."""
        raise NotImplementedError

    @abstractmethod
    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        """`snapshot_node`, unless a snapshot with `snapshot_id` is stored already (checked atomically)."""
        raise NotImplementedError

    @abstractmethod
    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        """Store an `EndSnapshot` of `state` and `end`."""
        raise NotImplementedError

    @abstractmethod
    def record_run(self, snapshot_id: str) -> AbstractAsyncContextManager[None]:
        """Record the run of a snapshot's node: `running` (with `start_ts`) on entry, then `success` or `error`
        (with `duration`) on exit.

        Raises:
            GraphNodeStatusError: the snapshot's status is not `created` or `pending`.
            LookupError: no snapshot has `snapshot_id`.
        """
        raise NotImplementedError

    @abstractmethod
    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        """Hand out the first `created` snapshot, marking it `pending`; None when there is none."""
        raise NotImplementedError

    @abstractmethod
    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        """Every stored snapshot, in order (not used by the engine; for the application's convenience)."""
        raise NotImplementedError

    async def release_run(self) -> None:
        """Stop driving the run, so that another object or process may resume it; the engine calls it when a run
        leaves its `async with` (ended or interrupted). Nothing by default: only a persistence with an owner lock has
        something to let go."""

    def close(self) -> None:
        """Let go of what the object holds open (connections, locks, the run it drives); it opens them again if used
        after. Nothing by default."""

    def set_graph_types(self, graph: Graph[StateT, Any, RunEndT]) -> None:
        """Take the state and output types from `graph` (calls `set_types` when `should_set_types()`)."""
        if self.should_set_types():
            with _utils.set_nodes_type_context(graph.get_nodes()):
                self.set_types(*graph.inferred_types)

    def should_set_types(self) -> bool:
        """Whether `set_types` still has to be called; False unless a subclass needs the types."""
        return False

    def set_types(self, state_type: type[StateT], run_end_type: type[RunEndT]) -> None:
        """Receive the state and output types, e.g. to build `build_snapshot_list_type_adapter(...)`."""


def next_attempt(snapshot: NodeSnapshot[Any, Any]) -> int:
    """Which run of its node the next start of `snapshot` is: 1, or one more than the last when a process that died
    had started it (runs are at-least-once: a node interrupted by a crash runs again on resume)."""
    return 1 if snapshot.start_ts is None else (snapshot.attempt or 1) + 1


def mark_running(snapshot: NodeSnapshot[Any, Any]) -> None:
    """The start of a snapshot's node run: `running`, from now, with its attempt counted when it is not the first."""
    attempt = next_attempt(snapshot)
    snapshot.status = 'running'
    snapshot.start_ts = _utils.now_utc()
    if attempt > 1:
        snapshot.attempt = attempt


def mark_finished(snapshot: Snapshot[Any, Any], duration: float, status: SnapshotStatus) -> None:
    """The end of a snapshot's node run: `status` (`success` or `error`) after `duration` seconds."""
    assert isinstance(snapshot, NodeSnapshot), 'record_run started only a node snapshot'
    snapshot.duration = duration
    snapshot.status = status


@asynccontextmanager
async def recording_run(
    start: Callable[[], Awaitable[object]],
    finish: Callable[[float, SnapshotStatus], Awaitable[object]],
    owner: Owner | None = None,
) -> AsyncGenerator[None]:
    """Every persistence's `record_run`: take the run's `owner` lock (when it has one), `start` the snapshot (mark it
    running where it is stored), then `finish` it with the node's duration and `success`, or `error` if it raised.

    Raises:
        GraphNodeStatusError: another process holds `owner`: it is running this run.
    """
    if owner is not None:
        claim(owner)
    await start()
    started = perf_counter()
    try:
        yield
    except Exception:
        await finish(perf_counter() - started, 'error')
        raise
    await finish(perf_counter() - started, 'success')


def claim(owner: Owner) -> None:
    """Take the run's `owner` lock to run a node of it.

    Raises:
        GraphNodeStatusError: another process holds `owner`: it is running this run.
    """
    if not owner.try_take():
        raise exceptions.GraphNodeStatusError('running')


def find_runnable(snapshots: Iterable[Snapshot[StateT, RunEndT]], snapshot_id: str) -> NodeSnapshot[StateT, RunEndT]:
    """The node snapshot `snapshot_id` among `snapshots`, checked to be runnable (for `record_run`).

    Raises:
        LookupError: no snapshot has `snapshot_id`.
        GraphRuntimeError: it is the run's end snapshot.
        GraphNodeStatusError: its status is not `created` or `pending`.
    """
    snapshot = next((s for s in snapshots if s.id == snapshot_id), None)
    if snapshot is None:
        raise LookupError(f'No snapshot found with id={snapshot_id!r}')
    if not isinstance(snapshot, NodeSnapshot):
        raise exceptions.GraphRuntimeError(f'Only node snapshots can be run; {snapshot_id!r} is the end of the run.')
    exceptions.GraphNodeStatusError.check(snapshot.status)
    return snapshot


def take_next(snapshots: list[Snapshot[StateT, RunEndT]], owner: Owner) -> NodeSnapshot[StateT, RunEndT] | None:
    """The snapshot `load_next` hands out (marked `pending`, `owner` taken): the first `created` one; else the last
    snapshot when a process that died left it `running` or `pending` (its node runs again: at-least-once); else None.

    Raises:
        GraphNodeStatusError: the run is alive in another holder of `owner` (which has that snapshot, or is about to
            store it), so it is not taken over.
    """
    found = next((s for s in snapshots if isinstance(s, NodeSnapshot) and s.status == 'created'), None)
    if found is None:
        last = snapshots[-1] if snapshots else None
        if not (isinstance(last, NodeSnapshot) and last.status in ('running', 'pending')):
            return None
        found = last
    if not owner.try_take():
        raise exceptions.GraphNodeStatusError(found.status if found.status != 'created' else 'running')
    found.status = 'pending'
    return found


def build_snapshot_list_type_adapter(
    state_t: type[StateT], run_end_t: type[RunEndT]
) -> pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]]:
    """A pydantic `TypeAdapter` of a list of snapshots; call it in `set_types`, where the nodes are known."""
    snapshot_t = Annotated[
        Union[
            omitting_none(NodeSnapshot[state_t, run_end_t], 'traceparent', 'attempt'),
            omitting_none(EndSnapshot[state_t, run_end_t], 'traceparent'),
        ],
        pydantic.Discriminator('kind'),
    ]
    return pydantic.TypeAdapter(list[snapshot_t])  # pyright: ignore[reportInvalidTypeForm]

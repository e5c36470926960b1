"""Driving a graph: a run in progress (`GraphRun`, which runs each node step) and a finished one (`GraphRunResult`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from time import perf_counter_ns as _perf_ns
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from . import _utils, exceptions
from .history import EndStep, HistoryStep, NodeStep, StateT
from .nodes import BaseNode, DepsT, End, GraphRunContext, RunEndT
from .persistence import EndSnapshot
from .persistence._utils import recording_traceparent
from .persistence.in_mem import SimpleStatePersistence
from .tracing import attributes as attr
from .tracing.outcome import error_type, step_outcome
from .tracing.propagation import current_traceparent
from .tracing.runtrace import NodeStepTrace, RunTrace
from .tracing.timeline import NodeError, NodeRecord, NodeTimeline, RunOutcome

if TYPE_CHECKING:
    from .graph import Graph
    from .persistence import BaseStatePersistence

__all__ = ('GraphRun', 'GraphRunResult')

T = TypeVar('T', default=Any)


# `_utils.now_utc()` without its call: run on every node step.
_now = datetime.now
_UTC = timezone.utc
_new_object: Callable[[type[Any]], Any] = object.__new__


def _node_id_in(graph: Graph[Any, Any, Any], node: BaseNode[Any, Any, Any] | End[Any]) -> str:
    """The id of `node` in `graph`, checked as the classic engine checks it (a step tries its class first).

    Raises:
        GraphRuntimeError: `node` is `End`, or its id is not in the graph.
    """
    if isinstance(node, End):
        raise exceptions.GraphRuntimeError(f'Cannot call `next` with an `End` node: {node!r}.')
    node_id = node.get_id()  # as in the classic engine, something that is not a node fails here
    if node_id not in graph.node_defs:
        raise exceptions.GraphRuntimeError(f'Node `{node}` is not in the graph.')
    return node_id


class _AfterRunTrace(RunTrace):
    """What node steps run through once their run's `async with` was left: nothing recorded, nothing kept.

    One instance serves every finished run, so it keeps nothing of a step.
    """

    def fail_step(
        self,
        step: NodeStepTrace | None,
        node_id: str,
        start: datetime,
        duration: float,
        error: BaseException,
        state: object,
    ) -> None:
        pass


_AFTER_RUN = _AfterRunTrace()


class _NotStored(BaseException):
    """Carries an error of storing a step's successor past `record_run`, which would mark the step `error` for an
    `Exception` (a `BaseException` is what every `record_run`, the user's too, lets through without recording)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


async def _ready(node: T) -> T:
    return node


class GraphRun(Generic[StateT, DepsT, RunEndT]):
    """A run of a graph in progress: `async for node in run`, or drive it with `await run.next(node)`.

    Get one from `async with graph.iter(start_node, ...) as run:`.

    Example:
        ```python
        from __future__ import annotations

        import asyncio
        from dataclasses import dataclass

        from tracegraph import BaseNode, End, Graph, GraphRunContext


        @dataclass
        class Countdown(BaseNode[None, None, str]):
            n: int

            async def run(self, ctx: GraphRunContext) -> Countdown | End[str]:
                return Countdown(self.n - 1) if self.n > 1 else End('liftoff')


        countdown = Graph(nodes=[Countdown])


        async def main() -> None:
            async with countdown.iter(Countdown(3)) as run:
                async for node in run:
                    print(node)
            print(run.result.output)


        asyncio.run(main())
        #> Countdown(n=2)
        #> Countdown(n=1)
        #> End(data='liftoff')
        #> liftoff
        ```
    """

    def __init__(
        self,
        graph: Graph[StateT, DepsT, RunEndT],
        start_node: BaseNode[StateT, DepsT, RunEndT],
        *,
        history: list[HistoryStep[StateT, RunEndT]] | None = None,
        state: StateT = None,
        deps: DepsT = None,
        auto_instrument: bool = True,
        trace: RunTrace | None = None,
        persistence: BaseStatePersistence[StateT, RunEndT] | None = None,
        snapshot_id: str | None = None,
        traceparent: str | None = None,
        yield_start_node: bool = False,
        attempt: int = 1,
    ) -> None:
        """Create a run of `graph` starting at `start_node`; `Graph.iter` is the usual way to get one.

        Args:
            graph: the graph to run.
            start_node: the first node to run.
            history: the history so far (appended to in place; non-empty when resuming), given by a classic
                (`history=`) run; None for a 0.0.40+ run, which keeps its steps in a new list.
            state: the state shared by the run's nodes.
            deps: the dependencies handed to the run's nodes.
            auto_instrument: kept for the classic signature; `Graph.iter` decides the instrumentation.
            trace: the run's trace, from `Instrumentation.start_run`; one that records nothing when None.
            persistence: where the run's snapshots go (the 0.0.40+ API); None for a classic `history=` run.
            snapshot_id: the id of the snapshot `start_node` was restored from, when resuming from persistence.
            traceparent: the traceparent of the run's span (the 1.x signature), when `trace` records none.
            yield_start_node: `async for` yields the start node first, before running it (pydantic_graph 0.0.54+).
            attempt: which run of its snapshot the start node's step is, when resuming from persistence.
        """
        self.graph = graph
        self.history = [] if history is None else history
        self.state = state
        self.deps = deps
        self._next_node: BaseNode[StateT, DepsT, RunEndT] | End[RunEndT] = start_node
        self._trace = trace if trace is not None else RunTrace()
        if traceparent is not None and self._trace.traceparent is None:
            self._given_traceparent = traceparent
        self._steps_trace = self._trace
        """What node steps run through: the run's trace, and one recording nothing once the run was left."""
        if persistence is not None or yield_start_node:  # the 1.x behaviours; the class defaults otherwise
            self.persistence = persistence
            self._snapshot_id = snapshot_id
            self._attempt = attempt
            self._yield_start_node = yield_start_node
            self._special = True
        if history:
            self._history_start = len(history)
        if history is not None:
            self._classic = True
        self._started_at = _utils.now_utc()

    persistence: BaseStatePersistence[StateT, RunEndT] | None = None
    """Where the run's snapshots go; None for a classic (`history=`) run."""
    _snapshot_id: str | None = None
    _attempt: int = 1
    """Which run of its snapshot the next persisted step is: above 1 only for a resumed run's first step."""
    _yield_start_node: bool = False
    _special: bool = False
    """Whether `__anext__` has a 1.x behaviour to apply (`persistence` or `yield_start_node`)."""
    _history_start: int = 0
    _classic: bool = False
    """Whether the run was given a `history=` (the 0.0.36-0.0.39 API): only its `repr` differs."""
    _given_traceparent: str | None = None
    _ended_at: datetime | None = None
    _outcome: RunOutcome = 'running'

    @property
    def next_node(self) -> BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]:
        """The node `next()` runs when called without one: the start node, then the last node returned."""
        return self._next_node

    @property
    def result(self) -> GraphRunResult[StateT, RunEndT] | None:
        """The run's result once a node has returned `End`, otherwise None."""
        if not isinstance(self._next_node, End):
            return None
        return GraphRunResult(
            self._next_node.data, self.state, self.history, self._trace.trace_id, self.persistence, _run=self
        )

    @property
    def trace_id(self) -> str | None:
        """32-hex id of the run's trace, None when nothing is recording it."""
        return self._trace.trace_id

    @property
    def traceparent(self) -> str | None:
        """The W3C `traceparent` of the run span (to hand to outgoing calls), None when the run has no span.

        The run span is the one tracegraph opened, or the `span=` the run was given (whether or not the graph is
        instrumented), so a caller that passes its own span always gets that span's traceparent back.
        """
        return self._trace.traceparent or self._given_traceparent

    def _traceparent(self, *, required: bool = True) -> str | None:
        """`traceparent`, as pydantic_graph 1.x spells it (pydantic_ai calls it); with `required`, a run without a span
        is an error.

        Raises:
            GraphRuntimeError: `required` and the run has no span.
        """
        traceparent = self.traceparent
        if traceparent is None and required:
            raise exceptions.GraphRuntimeError('No span was created for this graph run')
        return traceparent

    @property
    def run_id(self) -> str:
        """The run's id, as in its spans' `tracegraph.run.id` attribute."""
        return self._trace.run_id

    async def next(
        self: GraphRun[StateT, DepsT, T], node: BaseNode[StateT, DepsT, T] | None = None
    ) -> BaseNode[StateT, DepsT, T] | End[T]:
        """Run `node` (default: `next_node`) and return the node it returned, or `End` when the run is over.

        Raises:
            GraphRuntimeError: no `node` was given and the run has already ended, or `node` is not in the graph.
        """
        if node is None:
            if isinstance(self._next_node, End):
                if self.persistence is not None:  # 0.0.40+: the `End` reaches the node check
                    raise TypeError(f'`next` must be called with a `BaseNode` instance, got {self._next_node!r}.')
                raise exceptions.GraphRuntimeError('This graph run has already ended.')
            node = self._next_node
        if self.persistence is not None:
            return await self._persisted_step(self.persistence, node)
        return await self._step(node)

    async def _step(
        self: GraphRun[StateT, DepsT, T],
        node: BaseNode[StateT, DepsT, T],
        snapshot_id: str | None = None,
        attempt: int = 1,
    ) -> BaseNode[StateT, DepsT, T] | End[T]:
        """Run `node` through the run's trace, append its `NodeStep` (and the `EndStep` when it ended the run) to the
        history, and make what it returned `next_node`.

        As in the classic engine, the step is appended after the node ran, with the state as the node left it; a node
        that raises appends no step. This is every node step's path, so it reads each attribute once.

        Raises:
            GraphRuntimeError: `node` is `End` or not in the graph, or its `run` returned neither a node nor `End`.
        """
        graph = self.graph
        node_ids = graph._node_ids  # pyright: ignore[reportPrivateUsage] - the engine's index of its graph
        node_id = node_ids.get(type(node))
        if node_id is None:
            node_id = _node_id_in(graph, node)
        state = self.state
        trace = self._steps_trace
        ctx = GraphRunContext(state, self.deps)
        # One clock read for the history and the span; the node's duration starts after the span was opened.
        start = _now(_UTC)
        step = trace.start_step(node, node_id, state, start, snapshot_id, attempt) if trace.recording else None
        t0 = _perf_ns()
        try:
            result = await node.run(ctx)
        except BaseException as error:
            trace.fail_step(step, node_id, start, (_perf_ns() - t0) / 1e9, error, state)
            raise
        duration = (_perf_ns() - t0) / 1e9
        ended = isinstance(result, End)
        # The class lookup first: `isinstance` against the ABC `BaseNode` is a Python-level call.
        if ended or type(result) in node_ids or isinstance(result, BaseNode):
            bad_return = None
            if step is not None:
                trace.end_step(step, result, state, duration)
        else:
            bad_return = exceptions.GraphRuntimeError(
                f'Invalid node return type: `{type(result).__name__}`. Expected `BaseNode` or `End`.'
            )
            trace.fail_step(step, node_id, start, duration, bad_return, state)
        snapshot = graph.snapshot_state
        # `NodeStep(...)` without its `__init__` and `__post_init__` frames: the same `__dict__`, in field order.
        node_step: NodeStep[StateT, T] = _new_object(NodeStep)
        node_step.__dict__ = {
            'state': snapshot(state),
            'node': node,
            'start_ts': start,
            'duration': duration,
            'kind': 'node',
            'snapshot_state': snapshot,
            'trace_id': None if step is None else step.trace_id,
            'span_id': None if step is None else step.span_id,
        }
        history = self.history
        history.append(node_step)
        if bad_return is not None:
            # As the classic engine does: the node ran (its step is in the history), what it returned is what is wrong.
            raise bad_return
        if ended:
            history.append(EndStep(result=result))
        self._next_node = result
        return result

    async def _persisted_step(
        self: GraphRun[StateT, DepsT, T], persistence: BaseStatePersistence[StateT, T], node: BaseNode[StateT, DepsT, T]
    ) -> BaseNode[StateT, DepsT, T] | End[T]:
        """One step of a persisted run: snapshot the node unless it is, record its run, snapshot what came next."""
        snapshot_id = node.get_snapshot_id()
        # Snapshots made during these calls record the run span's traceparent, whatever the persistence.
        with recording_traceparent(self._trace.traceparent or current_traceparent()):
            if snapshot_id != self._snapshot_id:
                await persistence.snapshot_node_if_new(snapshot_id, self.state, node)
                self._snapshot_id = snapshot_id
            if not isinstance(node, BaseNode):
                raise TypeError(f'`next` must be called with a `BaseNode` instance, got {node!r}.')
            _node_id_in(self.graph, node)  # before the snapshot is marked running
            attempt, self._attempt = self._attempt, 1
            try:
                async with persistence.record_run(snapshot_id):
                    result = await self._step(node, snapshot_id, attempt)
                    # The next snapshot is stored before this one is marked `success`: a process that dies in between
                    # leaves this one `running` with its successor stored, and the resume takes the successor. Its id
                    # is made first, so a persistence that stores a copy of the node stores that id.
                    next_snapshot_id = result.get_snapshot_id()
                    try:
                        if isinstance(result, End):
                            await persistence.snapshot_end(self.state, result)
                        else:
                            await persistence.snapshot_node(self.state, result)
                    except Exception as error:
                        raise _NotStored(error) from None
            except _NotStored as not_stored:
                # The node did not fail, its successor could not be stored (a full disk, a lost database): the
                # snapshot stays `running`, not `error`, so a resume runs the node again once the store works.
                raise not_stored.error from None
            self._snapshot_id = next_snapshot_id
        return result

    def __aiter__(self) -> AsyncIterator[BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]]:
        return self

    def __anext__(self) -> Awaitable[BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]]:
        """Run the next node; stops after the node that returned `End` (which is yielded last).

        Not a coroutine function: it hands `async for` the step's own coroutine, one coroutine less per step.
        """
        node = self._next_node
        if self._special:  # one check on the common path for both 1.x behaviours
            if self._yield_start_node:
                self._yield_start_node = False
                self._special = self.persistence is not None
                return _ready(node)
            if self.persistence is not None:
                if isinstance(node, End):
                    raise StopAsyncIteration
                return self.next(node)
        if isinstance(node, End):
            raise StopAsyncIteration
        return self._step(node)

    def __repr__(self) -> str:
        if self._classic:
            return f'<GraphRun name={self.graph.name or "<unnamed>"} step={len(self.history) + 1}>'
        return f'<GraphRun graph={self.graph.name or "[unnamed]"}>'

    def _finish(self, error: BaseException | None) -> None:
        """The run's `async with` was left (with `error`, if any): end its trace and decide its outcome."""
        node = self._next_node
        ended = isinstance(node, End)
        self._ended_at = _utils.now_utc()
        self._outcome = self._trace.finish(ended, error, node.data if ended else None)
        # Nodes run after this (the classic API allows it) are not part of the run's trace any more.
        self._steps_trace = _AFTER_RUN

    def _repr_html_(self) -> str:
        """Jupyter shows a run as the SVG Gantt chart of its timeline."""
        return self.timeline._repr_html_()  # pyright: ignore[reportPrivateUsage] - the notebook protocol's name

    @property
    def timeline(self) -> NodeTimeline:
        """The run's node steps so far as a `NodeTimeline` (outcome `running` until the run's `async with` exits)."""
        steps = [s for s in self.history[self._history_start :] if isinstance(s, NodeStep)]
        records: list[NodeRecord] = []
        for i, step in enumerate(steps):
            duration = step.duration or 0.0
            if i + 1 < len(steps):
                next_node: str | None = steps[i + 1].node.get_id()
            elif isinstance(self._next_node, End):
                next_node = attr.END_NODE_ID
            else:
                next_node = self._next_node.get_id()
            records.append(
                NodeRecord(
                    step=i + 1,
                    node_id=step.node.get_id(),
                    span_id=step.span_id,
                    start=step.start_ts,
                    end=step.start_ts + timedelta(seconds=duration),
                    duration=duration,
                    outcome='completed',
                    next_node=next_node,
                )
            )
        if (failed := self._trace.failed_step) is not None:
            error = failed.error
            records.append(
                NodeRecord(
                    step=len(records) + 1,
                    node_id=failed.node_id,
                    span_id=failed.span_id,
                    start=failed.start,
                    end=failed.start + timedelta(seconds=failed.duration),
                    duration=failed.duration,
                    outcome=step_outcome(error),
                    next_node=None,
                    error=NodeError(type=error_type(error), message=str(error)),
                )
            )
        return NodeTimeline(
            run_id=self.run_id,
            trace_id=self.trace_id,
            graph=self.graph.name or 'unnamed_graph',
            outcome=self._outcome,
            start=self._started_at,
            end=self._ended_at,
            nodes=records,
        )


@dataclass(init=False)
class GraphRunResult(Generic[StateT, RunEndT]):
    """A finished run: its output, final state and history (classic) or persistence (0.0.40+)."""

    output: RunEndT
    """The data of the `End` the run ended with."""
    state: StateT
    """The run's state at the end."""
    history: list[HistoryStep[StateT, RunEndT]] = field(repr=False)
    """Every step of the run."""
    trace_id: str | None = field(default=None, repr=False)
    """32-hex id of the run's trace, None when nothing recorded it."""

    def __init__(
        self,
        output: RunEndT,
        state: StateT,
        history: list[HistoryStep[StateT, RunEndT]] | BaseStatePersistence[StateT, RunEndT] | None = None,
        trace_id: str | None = None,
        persistence: BaseStatePersistence[StateT, RunEndT] | None = None,
        traceparent: str | None = None,
        *,
        _run: GraphRun[StateT, Any, RunEndT] | None = None,
    ) -> None:
        """A result: the classic `(output, state, history)` or 1.x's `(output, state, persistence, traceparent=...)`."""
        if history is not None and not isinstance(history, list):
            history, persistence = None, history
        self.output = output
        self.state = state
        self.history = history if history is not None else []
        self.trace_id = trace_id
        self._persistence = persistence
        self._given_traceparent = traceparent
        self._run = _run

    @property
    def persistence(self) -> BaseStatePersistence[StateT, RunEndT]:
        """Where the run's snapshots went: the run's own, or for a classic run a `SimpleStatePersistence` of its end."""
        if self._persistence is None:
            self._persistence = SimpleStatePersistence(EndSnapshot(state=self.state, result=End(self.output)))
        return self._persistence

    @property
    def traceparent(self) -> str | None:
        """The W3C `traceparent` of the run span, None when the run had no span."""
        return self._run.traceparent if self._run is not None else self._given_traceparent

    def _traceparent(self, *, required: bool = True) -> str | None:
        """`traceparent`, as pydantic_graph 1.x spells it; with `required`, a run with no span is an error."""
        if self.traceparent is None and required:
            raise exceptions.GraphRuntimeError('No span was created for this graph run.')
        return self.traceparent

    def _repr_html_(self) -> str:
        """Jupyter shows a run as the SVG Gantt chart of its timeline."""
        return self.timeline._repr_html_()  # pyright: ignore[reportPrivateUsage] - the notebook protocol's name

    @property
    def timeline(self) -> NodeTimeline:
        """The run as a `NodeTimeline`.

        Raises:
            ValueError: for a result not made by a run.
        """
        if self._run is None:
            raise ValueError('This result was not made by a graph run, so it has no timeline.')
        return self._run.timeline

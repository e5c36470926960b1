"""Driving a graph: a run in progress (`GraphRun`, which runs each node step) and a finished one (`GraphRunResult`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta, timezone
from time import perf_counter_ns as _perf_ns
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from . import _utils, exceptions
from .history import EndStep, HistoryStep, NodeStep, StateT
from .nodes import BaseNode, DepsT, End, GraphRunContext, RunEndT
from .persistence._utils import snapshot_traceparent
from .run_result import GraphRunResult
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


_DoneStep = tuple[str, 'str | None', datetime, float]
"""A node step that returned a node or `End`, as the run's timeline shows it: node id, span id, start, duration."""


class _StoredStep(Generic[StateT, RunEndT]):
    """A step of a persisted run, from its snapshot marked running (`record_run` entered) to its successor stored.

    From its beginning to its end the run span's traceparent is in `snapshot_traceparent` (set once: the step runs in
    one task, so one token), and the snapshots made then record it, whichever persistence makes them.
    """

    __slots__ = ('_persistence', '_run', '_token', 'attempt', 'recording', 'snapshot_id')

    def __init__(
        self,
        run: GraphRun[StateT, Any, RunEndT],
        persistence: BaseStatePersistence[StateT, RunEndT],
        snapshot_id: str,
        traceparent: str | None,
    ) -> None:
        self._run = run
        self._persistence = persistence
        self._token = snapshot_traceparent.set(traceparent)
        self.snapshot_id = snapshot_id
        self.attempt = 1
        self.recording: AbstractAsyncContextManager[None] | None = None

    async def fail(self, error: BaseException) -> None:
        """The node raised `error` (or returned something that is not a node): `record_run` sees it."""
        await self._leave(type(error), error)

    async def succeed(self, result: BaseNode[StateT, Any, RunEndT] | End[RunEndT]) -> None:
        """The node returned `result`: store it, then mark the step's snapshot `success`.

        The successor is stored first: a process that dies in between leaves this snapshot `running` with its
        successor stored, and the resume takes the successor. Its id is made first, so a persistence that stores a
        copy of the node stores that id.
        """
        run = self._run
        next_snapshot_id = result.get_snapshot_id()
        try:
            if isinstance(result, End):
                await self._persistence.snapshot_end(run.state, result)
            else:
                await self._persistence.snapshot_node(run.state, result)
        except Exception as error:
            # The node did not fail, its successor could not be stored (a full disk, a lost database): the snapshot
            # stays `running`, not `error`, so a resume runs the node again once the store works.
            await self._leave(_NotStored, _NotStored(error))
            raise
        await self._leave(None, None)
        run._snapshot_id = next_snapshot_id  # pyright: ignore[reportPrivateUsage]

    async def _leave(self, error_type: type[BaseException] | None, error: BaseException | None) -> None:
        """Leave `record_run` as `async with` would, and end the step; its own error is raised by the step, not here."""
        assert self.recording is not None, 'a stored step is left once, after it began'
        recording, self.recording = self.recording, None
        try:
            await recording.__aexit__(error_type, error, None if error is None else error.__traceback__)
        finally:
            self.end()

    def end(self) -> None:
        """Take the traceparent out of `snapshot_traceparent` again."""
        snapshot_traceparent.reset(self._token)


async def _begin_stored_step(
    run: GraphRun[StateT, Any, RunEndT],
    persistence: BaseStatePersistence[StateT, RunEndT],
    node: BaseNode[StateT, Any, RunEndT],
) -> _StoredStep[StateT, RunEndT]:
    """Store `node`'s snapshot unless it is stored, check it can run, and mark it running.

    Raises:
        TypeError: `node` is not a node.
        GraphRuntimeError: `node` is not in the graph (checked before its snapshot is marked running).
    """
    stored = _StoredStep(run, persistence, node.get_snapshot_id(), run.traceparent or current_traceparent())
    try:
        if stored.snapshot_id != run._snapshot_id:  # pyright: ignore[reportPrivateUsage]
            await persistence.snapshot_node_if_new(stored.snapshot_id, run.state, node)
            run._snapshot_id = stored.snapshot_id  # pyright: ignore[reportPrivateUsage]
        if not isinstance(node, BaseNode):
            raise TypeError(f'`next` must be called with a `BaseNode` instance, got {node!r}.')
        _node_id_in(run.graph, node)
        stored.attempt, run._attempt = run._attempt, 1  # pyright: ignore[reportPrivateUsage]
        recording = persistence.record_run(stored.snapshot_id)
        await recording.__aenter__()
        stored.recording = recording
    except BaseException:
        stored.end()
        raise
    return stored


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
                (`history=`) run; None for a 0.0.40+ run, which keeps its steps in a new list unless it is persisted.
            state: the state shared by the run's nodes.
            deps: the dependencies handed to the run's nodes.
            auto_instrument: False to run the nodes without spans or metrics, whatever `trace` records.
            trace: the run's trace, from `Instrumentation.start_run`; one that records nothing when None.
            persistence: where the run's snapshots go (the 0.0.40+ API); None for a classic `history=` run.
            snapshot_id: the id of the snapshot `start_node` was restored from, when resuming from persistence.
            traceparent: the traceparent of the run's span (the 1.x signature), when `trace` records none: what
                `traceparent` returns and what the run's snapshots record.
            yield_start_node: `async for` yields the start node first, before running it (pydantic_graph 0.0.54+).
            attempt: which run of its snapshot the start node's step is, when resuming from persistence.
        """
        self.graph = graph
        self.persistence = persistence
        self.history = [] if history is None else history
        self.state = state
        self.deps = deps
        self._next_node: BaseNode[StateT, DepsT, RunEndT] | End[RunEndT] = start_node
        self._trace = trace if trace is not None and auto_instrument else RunTrace()
        if traceparent is not None and self._trace.traceparent is None:
            self._given_traceparent = traceparent
        self._steps_trace = self._trace
        """What node steps run through: the run's trace, and one recording nothing once the run was left."""
        self._snapshot_id = snapshot_id
        self._attempt = attempt
        self._yield_start_node = yield_start_node
        # A persisted run's steps are its snapshots; the classic history is kept only when nothing else records them.
        self._keeps_history = persistence is None
        self._classic = history is not None
        self._done: list[_DoneStep] = []
        """The timeline's record of the steps of a run that keeps no history."""
        self._history_start = len(self.history)
        self._ctx = GraphRunContext(state, deps)
        self._started_at = _utils.now_utc()

    persistence: BaseStatePersistence[StateT, RunEndT] | None
    """Where the run's snapshots go; None for a run that keeps a classic history."""
    _snapshot_id: str | None
    """The id of the snapshot of the node about to run, once it is stored (a persisted run)."""
    _attempt: int
    """Which run of its snapshot the next persisted step is: above 1 only for a resumed run's first step."""
    _yield_start_node: bool
    """Whether `async for` yields the start node before running it; cleared once it did."""
    _classic: bool
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
        return await self._step(node)

    async def _step(
        self: GraphRun[StateT, DepsT, T], node: BaseNode[StateT, DepsT, T]
    ) -> BaseNode[StateT, DepsT, T] | End[T]:
        """Run `node` through the run's trace and record its step; what it returned becomes `next_node`.

        The one path of every node step, persisted or not. A persisted run stores the node's snapshot (unless it is
        stored), runs the node inside the persistence's `record_run` and stores its successor; a run that keeps a
        history appends the `NodeStep` (and the `EndStep` when it ended the run) after the node ran, with the state
        as the node left it, as the classic engine does.

        Raises:
            GraphRuntimeError: `node` is `End` or not in the graph, or its `run` returned neither a node nor `End`.
            TypeError: in a persisted run, `node` is not a node (as pydantic_graph 0.0.40+ says it).
        """
        graph = self.graph
        persistence = self.persistence
        stored = None if persistence is None else await _begin_stored_step(self, persistence, node)
        node_ids = graph._node_ids  # pyright: ignore[reportPrivateUsage] - the engine's index of its graph
        node_id = node_ids.get(type(node))
        if node_id is None:
            node_id = _node_id_in(graph, node)
        state = self.state
        trace = self._steps_trace
        deps = self.deps
        ctx = self._ctx
        # One context for the run's steps while it holds the run's state and deps (a node may reassign its fields).
        if ctx.state is not state or ctx.deps is not deps:
            ctx = self._ctx = GraphRunContext(state, deps)
        # One clock read for the history and the span; the node's duration starts after the span was opened.
        start = _now(_UTC)
        if not trace.recording:
            step = None
        elif stored is None:
            step = trace.start_step(node, node_id, state, start)
        else:
            step = trace.start_step(node, node_id, state, start, stored.snapshot_id, stored.attempt)
        t0 = _perf_ns()
        try:
            result = await node.run(ctx)
        except BaseException as error:
            trace.fail_step(step, node_id, start, (_perf_ns() - t0) / 1e9, error, state)
            if stored is not None:
                await stored.fail(error)
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
        span_id = None if step is None else step.span_id
        if self._keeps_history:  # the step's one record: its `NodeStep`, or its snapshots and a line of the timeline
            # As the classic engine does: a node that returned something wrong ran, so its step is in the history.
            history = self.history
            history.append(
                NodeStep(
                    state,
                    node,
                    start,
                    duration,
                    'node',
                    graph.snapshot_state,
                    None if step is None else step.trace_id,
                    span_id,
                )
            )
            if ended and bad_return is None:
                history.append(EndStep(result=result))
        elif bad_return is None:
            self._done.append((node_id, span_id, start, duration))
        if bad_return is not None:
            if stored is not None:
                await stored.fail(bad_return)
            raise bad_return
        self._next_node = result
        if stored is not None:
            await stored.succeed(result)
        return result

    def __aiter__(self) -> AsyncIterator[BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]]:
        return self

    def __anext__(self) -> Awaitable[BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]]:
        """Run the next node; stops after the node that returned `End` (which is yielded last).

        Not a coroutine function: it hands `async for` the step's own coroutine, one coroutine less per step.
        """
        node = self._next_node
        if self._yield_start_node:
            self._yield_start_node = False
            return _ready(node)
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
        if self._keeps_history:
            steps = self.history[self._history_start :]
            done = [
                (s.node.get_id(), s.span_id, s.start_ts, s.duration or 0.0) for s in steps if isinstance(s, NodeStep)
            ]
        else:
            done = self._done
        records: list[NodeRecord] = []
        for i, (node_id, span_id, start, duration) in enumerate(done):
            if i + 1 < len(done):
                next_node: str | None = done[i + 1][0]
            elif isinstance(self._next_node, End):
                next_node = attr.END_NODE_ID
            else:
                next_node = self._next_node.get_id()
            end = start + timedelta(seconds=duration)
            records.append(
                NodeRecord(
                    step=i + 1,
                    node_id=node_id,
                    span_id=span_id,
                    start=start,
                    end=end,
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

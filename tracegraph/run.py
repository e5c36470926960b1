"""Driving a graph: one node step (`run_step`), a run in progress (`GraphRun`) and a finished one (`GraphRunResult`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from time import perf_counter, time_ns
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from . import _utils, exceptions
from .history import EndStep, HistoryStep, NodeStep, StateT
from .nodes import BaseNode, DepsT, End, GraphRunContext, RunEndT
from .tracing import attributes as attr
from .tracing.instrument import RunTrace, is_interruption
from .tracing.timeline import NodeError, NodeRecord, NodeTimeline, RunOutcome

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ('GraphRun', 'GraphRunResult', 'run_step')

T = TypeVar('T', default=Any)


def _next_id(result: object) -> str:
    if isinstance(result, End):
        return attr.END_NODE_ID
    if isinstance(result, BaseNode):
        return result.get_id()
    raise exceptions.GraphRuntimeError(
        f'Invalid node return type: `{type(result).__name__}`. Expected `BaseNode` or `End`.'
    )


def _qualified_name(cls: type) -> str:
    # The name OpenTelemetry's `record_exception` writes as `exception.type`, so both timelines agree.
    module = cls.__module__
    return cls.__qualname__ if module in (None, 'builtins') else f'{module}.{cls.__qualname__}'


def _ns_to_utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


@dataclass(kw_only=True)
class _FailedStep:
    node_id: str
    start_ts: datetime
    duration: float
    span_id: str | None
    error: BaseException


async def run_step(
    graph: Graph[StateT, DepsT, T],
    node: BaseNode[StateT, DepsT, T],
    history: list[HistoryStep[StateT, T]],
    *,
    state: StateT,
    deps: DepsT,
    trace: RunTrace | None,
    graph_run: GraphRun[StateT, DepsT, T] | None = None,
) -> BaseNode[StateT, DepsT, Any] | End[T]:
    """Run `node`, append its `NodeStep` (and the `EndStep` when it ends the run) to `history`, return what it returned.

    Raises:
        GraphRuntimeError: `node` is `End` or not in the graph, or its `run` returned neither a node nor `End`.
    """
    if isinstance(node, End):
        raise exceptions.GraphRuntimeError(f'Cannot call `next` with an `End` node: {node!r}.')
    node_id = node.get_id()
    if node_id not in graph.node_defs:
        raise exceptions.GraphRuntimeError(f'Node `{node}` is not in the graph.')
    ctx = GraphRunContext(state, deps)
    result: BaseNode[StateT, DepsT, Any] | End[T]
    # The state is snapshotted before the node runs, so the step shows what the node started from.
    if trace is None:
        step = NodeStep(state=state, node=node, snapshot_state=graph.snapshot_state)
        start = perf_counter()
        try:
            result = await node.run(ctx)
            if not isinstance(result, (End, BaseNode)):
                _next_id(result)  # raises the error naming the type
        except BaseException as error:
            if graph_run is not None:
                graph_run._record_failure(node_id, step.start_ts, perf_counter() - start, None, error)
            raise
        step.duration = perf_counter() - start
    else:
        start_ns = time_ns()
        step = NodeStep(state=state, node=node, start_ts=_ns_to_utc(start_ns), snapshot_state=graph.snapshot_state)
        try:
            result, ids = await trace.run_node(node, node_id, ctx, _next_id, start_ns)
        except BaseException as error:
            if graph_run is not None:
                failed = trace.last_step
                duration = (time_ns() - start_ns) / 1e9 if failed is None else failed.duration
                graph_run._record_failure(node_id, step.start_ts, duration, failed and failed.span_id, error)
            raise
        step.duration = ids.duration
        step.trace_id = ids.trace_id
        step.span_id = ids.span_id
    history.append(step)
    if isinstance(result, End):
        history.append(EndStep(result=result))
    return result


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
        history: list[HistoryStep[StateT, RunEndT]],
        state: StateT,
        deps: DepsT,
        auto_instrument: bool = True,
    ) -> None:
        """Create a run of `graph` starting at `start_node`; `Graph.iter` is the usual way to get one.

        Args:
            graph: the graph to run.
            start_node: the first node to run.
            history: the history so far (appended to in place); non-empty when resuming.
            state: the state shared by the run's nodes.
            deps: the dependencies handed to the run's nodes.
            auto_instrument: kept for compatibility; instrumentation is decided by `Graph.iter`.
        """
        self.graph = graph
        self.history = history
        self.state = state
        self.deps = deps
        self._next_node: BaseNode[StateT, DepsT, RunEndT] | End[RunEndT] = start_node
        self._trace: RunTrace | None = None
        self._history_start = len(history)
        self._started_at = _utils.now_utc()
        self._ended_at: datetime | None = None
        self._outcome: RunOutcome = 'running'
        self._failed: _FailedStep | None = None
        self._run_id: str | None = None

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
            self._next_node.data, state=self.state, history=self.history, trace_id=self.trace_id, _run=self
        )

    @property
    def trace_id(self) -> str | None:
        """32-hex id of the run's trace, None when nothing is recording it."""
        return self._trace.trace_id if self._trace is not None else None

    @property
    def run_id(self) -> str:
        """The run's id, as in its spans' `tracegraph.run.id` attribute."""
        if self._trace is not None:
            return self._trace.run_id
        if self._run_id is None:
            self._run_id = _utils.uuid4_hex()
        return self._run_id

    async def next(
        self: GraphRun[StateT, DepsT, T], node: BaseNode[StateT, DepsT, T] | None = None
    ) -> BaseNode[StateT, DepsT, T] | End[T]:
        """Run `node` (default: `next_node`) and return the node it returned, or `End` when the run is over.

        Raises:
            GraphRuntimeError: the run has already ended, or `node` is not in the graph.
        """
        if isinstance(self._next_node, End) or self._ended_at is not None:
            raise exceptions.GraphRuntimeError('This graph run has already ended.')
        if node is None:
            node = self._next_node
        self._next_node = await run_step(
            self.graph, node, self.history, state=self.state, deps=self.deps, trace=self._trace, graph_run=self
        )
        return self._next_node

    def __aiter__(self) -> AsyncIterator[BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]]:
        return self

    async def __anext__(self) -> BaseNode[StateT, DepsT, RunEndT] | End[RunEndT]:
        """Run the next node; stops after the node that returned `End` (which is yielded last)."""
        node = self._next_node
        if isinstance(node, End):
            raise StopAsyncIteration
        # `next()` inlined: one coroutine less per step.
        if self._ended_at is not None:
            raise exceptions.GraphRuntimeError('This graph run has already ended.')
        self._next_node = await run_step(
            self.graph, node, self.history, state=self.state, deps=self.deps, trace=self._trace, graph_run=self
        )
        return self._next_node

    def __repr__(self) -> str:
        return f'<GraphRun name={self.graph.name or "<unnamed>"} step={len(self.history) + 1}>'

    def _record_failure(
        self, node_id: str, start_ts: datetime, duration: float, span_id: str | None, error: BaseException
    ) -> None:
        self._failed = _FailedStep(node_id=node_id, start_ts=start_ts, duration=duration, span_id=span_id, error=error)

    def _finish(self, error: BaseException | None) -> None:
        ended = isinstance(self._next_node, End)
        output = self._next_node.data if isinstance(self._next_node, End) else None
        self._ended_at = _utils.now_utc()
        if self._trace is not None:
            self._outcome = self._trace.finish(ended=ended, error=error, output=output)
        elif self._failed is not None or (error is not None and not is_interruption(error)):
            self._outcome = 'failed'
        else:
            self._outcome = 'completed' if ended and error is None else 'interrupted'

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
        if (failed := self._failed) is not None:
            error = failed.error
            records.append(
                NodeRecord(
                    step=len(records) + 1,
                    node_id=failed.node_id,
                    span_id=failed.span_id,
                    start=failed.start_ts,
                    end=failed.start_ts + timedelta(seconds=failed.duration),
                    duration=failed.duration,
                    outcome='interrupted' if is_interruption(error) else 'failed',
                    next_node=None,
                    error=NodeError(type=_qualified_name(type(error)), message=str(error)),
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


@dataclass
class GraphRunResult(Generic[StateT, RunEndT]):
    """A finished run: its output, final state and history."""

    output: RunEndT
    """The data of the `End` the run ended with."""
    state: StateT
    """The run's state at the end."""
    history: list[HistoryStep[StateT, RunEndT]] = field(repr=False)
    """Every step of the run."""
    trace_id: str | None = field(default=None, repr=False)
    """32-hex id of the run's trace, None when nothing recorded it."""
    _run: GraphRun[StateT, Any, RunEndT] | None = field(default=None, repr=False, compare=False)

    @property
    def timeline(self) -> NodeTimeline:
        """The run as a `NodeTimeline`.

        Raises:
            ValueError: for a result not made by a run.
        """
        if self._run is None:
            raise ValueError('This result was not made by a graph run, so it has no timeline.')
        return self._run.timeline

"""Driving a graph: one node step (`run_step`), a run in progress (`GraphRun`) and a finished one (`GraphRunResult`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from . import _utils, exceptions
from .history import EndStep, HistoryStep, NodeStep, StateT
from .nodes import BaseNode, DepsT, End, GraphRunContext, RunEndT
from .tracing import attributes as attr
from .tracing.outcome import step_outcome
from .tracing.runtrace import RunTrace
from .tracing.timeline import NodeError, NodeRecord, NodeTimeline, RunOutcome

if TYPE_CHECKING:
    from .graph import Graph

__all__ = ('GraphRun', 'GraphRunResult', 'run_step')

T = TypeVar('T', default=Any)


def _qualified_name(cls: type) -> str:
    # The name OpenTelemetry's `record_exception` writes as `exception.type`, so both timelines agree.
    module = cls.__module__
    return cls.__qualname__ if module in (None, 'builtins') else f'{module}.{cls.__qualname__}'


def ns_to_utc(ns: int) -> datetime:
    """Nanoseconds since the epoch as a UTC-aware datetime."""
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


async def run_step(
    graph: Graph[StateT, DepsT, T],
    node: BaseNode[StateT, DepsT, T],
    history: list[HistoryStep[StateT, T]],
    *,
    state: StateT,
    deps: DepsT,
    trace: RunTrace,
) -> BaseNode[StateT, DepsT, Any] | End[T]:
    """Run `node` through `trace`, then append its `NodeStep` (and the `EndStep` when it ended the run) to `history`.

    As in the classic engine, the step is appended after the node ran, with the state as the node left it; a node
    that raises appends no step.

    Raises:
        GraphRuntimeError: `node` is `End` or not in the graph, or its `run` returned neither a node nor `End`.
    """
    if isinstance(node, End):
        raise exceptions.GraphRuntimeError(f'Cannot call `next` with an `End` node: {node!r}.')
    node_id = node.get_id()
    if node_id not in graph.node_defs:
        raise exceptions.GraphRuntimeError(f'Node `{node}` is not in the graph.')
    ctx = GraphRunContext(state, deps)
    step = trace.start_step(node, node_id, state)
    try:
        result = await node.run(ctx)
    except BaseException as error:
        trace.fail_step(step, error, state)
        raise
    bad_return: exceptions.GraphRuntimeError | None = None
    if isinstance(result, End):
        trace.end_step(step, attr.END_NODE_ID, state)
    elif isinstance(result, BaseNode):
        trace.end_step(step, result.get_id(), state)
    else:
        bad_return = exceptions.GraphRuntimeError(
            f'Invalid node return type: `{type(result).__name__}`. Expected `BaseNode` or `End`.'
        )
        trace.fail_step(step, bad_return, state)
    history.append(
        NodeStep(
            state=state,
            node=node,
            start_ts=ns_to_utc(step.start_ns),
            duration=step.duration,
            snapshot_state=graph.snapshot_state,
            trace_id=step.trace_id,
            span_id=step.span_id,
        )
    )
    if bad_return is not None:
        # As the classic engine does: the node ran (its step is in the history), what it returned is what is wrong.
        raise bad_return
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
        trace: RunTrace | None = None,
    ) -> None:
        """Create a run of `graph` starting at `start_node`; `Graph.iter` is the usual way to get one.

        Args:
            graph: the graph to run.
            start_node: the first node to run.
            history: the history so far (appended to in place); non-empty when resuming.
            state: the state shared by the run's nodes.
            deps: the dependencies handed to the run's nodes.
            auto_instrument: kept for the classic signature; `Graph.iter` decides the instrumentation.
            trace: the run's trace, from `Instrumentation.start_run`; one that records nothing when None.
        """
        self.graph = graph
        self.history = history
        self.state = state
        self.deps = deps
        self._next_node: BaseNode[StateT, DepsT, RunEndT] | End[RunEndT] = start_node
        self._trace = trace if trace is not None else RunTrace()
        self._steps_trace = self._trace
        """What node steps run through: the run's trace, and one recording nothing once the run was left."""
        self._history_start = len(history)
        self._started_at = _utils.now_utc()
        self._ended_at: datetime | None = None
        self._outcome: RunOutcome = 'running'

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
        return self._trace.trace_id

    @property
    def traceparent(self) -> str | None:
        """The W3C `traceparent` of the run span (to hand to outgoing calls), None when nothing is recording it."""
        return self._trace.traceparent

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
                raise exceptions.GraphRuntimeError('This graph run has already ended.')
            node = self._next_node
        self._next_node = await run_step(
            self.graph, node, self.history, state=self.state, deps=self.deps, trace=self._steps_trace
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
        self._next_node = await run_step(
            self.graph, node, self.history, state=self.state, deps=self.deps, trace=self._steps_trace
        )
        return self._next_node

    def __repr__(self) -> str:
        return f'<GraphRun name={self.graph.name or "<unnamed>"} step={len(self.history) + 1}>'

    def _finish(self, error: BaseException | None) -> None:
        """The run's `async with` was left (with `error`, if any): end its trace and decide its outcome."""
        node = self._next_node
        ended = isinstance(node, End)
        self._ended_at = _utils.now_utc()
        self._outcome = self._trace.finish(ended=ended, error=error, output=node.data if ended else None)
        # Nodes run after this (the classic API allows it) are not part of the run's trace any more.
        self._steps_trace = RunTrace(run_id=self._trace.run_id)

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
            error, step = failed.error, failed.step
            start = ns_to_utc(step.start_ns)
            records.append(
                NodeRecord(
                    step=len(records) + 1,
                    node_id=step.node_id,
                    span_id=step.span_id,
                    start=start,
                    end=start + timedelta(seconds=step.duration),
                    duration=step.duration,
                    outcome=step_outcome(error),
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

"""How a run begins and ends: `RunScope`, the async context manager `Graph.iter` returns.

Entering it enters the caller's `span=` (if any), opens the run's trace and hands over the `GraphRun`; leaving it
ends the run (interrupted, failed or completed) and then leaves the caller's span, which sees the run's exception.
A class rather than an `asynccontextmanager` generator: a short run pays for its scope once per run, and the
generator's machinery (an async generator, an `ExitStack`, a `StopAsyncIteration` at exit) cost more than the
run's own work.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic

from opentelemetry.context import Context

from .history import HistoryStep, NodeStep, StateT
from .nodes import BaseNode, DepsT, RunEndT
from .run import GraphRun
from .tracing.instrument import Instrumentation, span_of
from .tracing.runtrace import RunTrace

if TYPE_CHECKING:
    from .graph import Graph
    from .persistence import BaseStatePersistence

__all__ = ('RunScope', 'Resume')


@dataclass(frozen=True, kw_only=True)
class Resume:
    """How `iter_from_persistence` continues a run: the snapshot it starts from and the trace it continues."""

    snapshot_id: str
    resumed_from: tuple[str, str] | None
    parent: Context | None
    attempt: int = 1
    """Which run of the snapshot the first step is (above 1 when a process died while running it)."""


class RunScope(Generic[StateT, DepsT, RunEndT]):
    """`async with` it to run a graph: its `GraphRun` while inside, the run ended (and its trace) once left."""

    __slots__ = (
        '_deps', '_graph', '_history', '_instrumentation', '_persistence', '_resume', '_run', '_span', '_start_node',
        '_state', '_yield_start_node',
    )  # fmt: skip

    def __init__(
        self,
        graph: Graph[StateT, DepsT, RunEndT],
        start_node: BaseNode[StateT, DepsT, RunEndT],
        *,
        instrumentation: Instrumentation | None,
        history: list[HistoryStep[StateT, RunEndT]] | None,
        state: StateT,
        deps: DepsT,
        persistence: BaseStatePersistence[StateT, RunEndT] | None,
        span: AbstractContextManager[Any] | None,
        yield_start_node: bool,
        resume: Resume | None,
    ) -> None:
        """Hold what the run starts from; nothing is entered or opened before `async with`."""
        self._graph = graph
        self._start_node = start_node
        self._instrumentation = instrumentation
        self._span = span
        self._history = history
        self._state = state
        self._deps = deps
        self._persistence = persistence
        self._yield_start_node = yield_start_node
        self._resume = resume
        self._run: GraphRun[StateT, DepsT, RunEndT] | None = None

    async def __aenter__(self) -> GraphRun[StateT, DepsT, RunEndT]:
        if self._run is not None:
            raise RuntimeError('A run scope is entered once: call `graph.iter(...)` again for another run.')
        graph, start_node, span, history, resume = (
            self._graph,
            self._start_node,
            self._span,
            self._history,
            self._resume,
        )
        entered = span.__enter__() if span is not None else None
        try:
            trace = (
                self._instrumentation.start_run(
                    graph_name=graph.name or 'unnamed_graph',
                    start_node_id=start_node.get_id(),
                    given_span=span,
                    entered_span=entered,
                    resumed_from=(_last_span(history) if history else None) if resume is None else resume.resumed_from,
                    parent=None if resume is None else resume.parent,
                    graph_edges=graph._edges_json,  # pyright: ignore[reportPrivateUsage]
                )
                if self._instrumentation is not None
                else RunTrace.adopting(span_of(span, entered))
            )
            # Not `GraphRun[StateT, DepsT, RunEndT](...)`: subscripting at run time builds a generic alias per run.
            self._run = GraphRun(
                graph,
                start_node,
                history=history,
                state=self._state,
                deps=self._deps,
                trace=trace,
                persistence=self._persistence,
                snapshot_id=None if resume is None else resume.snapshot_id,
                attempt=1 if resume is None else resume.attempt,
                yield_start_node=self._yield_start_node,
            )
        except BaseException as error:
            _leave(span, error)
            raise
        return self._run

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        run = self._run
        assert run is not None, 'a run scope was left without being entered'
        span = self._span
        try:
            run._finish(exc)  # pyright: ignore[reportPrivateUsage] - the scope owns the run's lifetime
            if self._persistence is not None:  # ended or interrupted, the run may now be resumed elsewhere
                await self._persistence.release_run()
        except BaseException as error:
            _leave(span, error)
            raise
        # The caller's span sees the run's exception after the run ended, and may suppress it (as `ExitStack` lets).
        return None if span is None else span.__exit__(exc_type, exc, tb)


def _leave(span: AbstractContextManager[Any] | None, error: BaseException) -> None:
    """Leave the caller's span (if any) with `error`, which starting or ending the run raised."""
    if span is not None:
        span.__exit__(type(error), error, error.__traceback__)


def _last_span(history: Sequence[HistoryStep[Any, Any]]) -> tuple[str, str] | None:
    """(trace id, span id) of the last node step of a resumed history, when a span ran it."""
    for step in reversed(history):
        if isinstance(step, NodeStep):
            return (step.trace_id, step.span_id) if step.trace_id and step.span_id else None
    return None

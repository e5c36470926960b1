"""A finished run: `GraphRunResult`, its output and final state, and its history (classic) or persistence (0.0.40+)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic

from . import exceptions
from .history import HistoryStep, StateT
from .nodes import End, RunEndT
from .persistence import EndSnapshot
from .persistence.in_mem import SimpleStatePersistence
from .tracing.timeline import NodeTimeline

if TYPE_CHECKING:
    from .persistence import BaseStatePersistence
    from .run import GraphRun

__all__ = ('GraphRunResult',)


@dataclass(init=False)
class GraphRunResult(Generic[StateT, RunEndT]):
    """A finished run: its output, final state and history (classic) or persistence (0.0.40+)."""

    output: RunEndT
    """The data of the `End` the run ended with."""
    state: StateT
    """The run's state at the end."""
    history: list[HistoryStep[StateT, RunEndT]] = field(repr=False)
    """Every step of the run."""
    trace_id: str | None = field(default=None, repr=False, compare=False)
    """32-hex id of the run's trace, None when nothing recorded it (left out of equality, as upstream has none)."""

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

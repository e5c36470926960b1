"""The seam between the engine and the tracing layer: `RunTrace`, the trace of one run, and its node steps.

The engine drives every run through a `RunTrace`. It times each node step itself, on one clock, and tells the trace:
`start_step` before the node runs and `end_step` after it returned — both only when `recording` is true, as
OpenTelemetry code asks `span.is_recording()` before it builds costly attributes — and `fail_step` when it raised;
`finish` when the run's `async with` is left. This base class records nothing: it is what a run gets when no
OpenTelemetry SDK is configured (as a non-recording span is in OpenTelemetry), so the untraced run is the same code
as the traced one, minus two calls. `tracing.instrument` subclasses it to record spans and metrics.
The tracing layer never imports the engine: nodes, states and outputs are plain objects here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from opentelemetry.trace import Span

from .attributes import Outcome
from .clock import datetime_to_ns
from .ids import uuid4_hex
from .outcome import is_interruption, run_outcome
from .propagation import traceparent_of

__all__ = ('RunTrace', 'NodeStepTrace', 'FailedStep')


class NodeStepTrace:
    """What a recording trace keeps of one node step between `start_step` and `end_step`: its span."""

    __slots__ = ('node_id', 'span', 'span_id', 'start_ns', 'state_before', 'token', 'trace_id')

    def __init__(self, node_id: str, start_ns: int) -> None:
        self.node_id = node_id
        self.start_ns = start_ns
        """When the step started, in nanoseconds since the epoch (the engine's clock read)."""
        self.trace_id: str | None = None
        """32-hex id of the trace of the node span (sampled or not), None when no valid span was made."""
        self.span_id: str | None = None
        """16-hex id of the node span (sampled or not), None when no valid span was made."""
        self.span: Span | None = None
        self.token: object = None
        self.state_before: object = None


@dataclass(frozen=True, kw_only=True)
class FailedStep:
    """The node step that raised, and what it raised."""

    node_id: str
    start: datetime
    duration: float
    """Seconds."""
    span_id: str | None
    error: BaseException


class RunTrace:
    """The trace of one run; this base records nothing and costs next to nothing.

    Example:
        ```python
        from tracegraph.tracing.runtrace import RunTrace

        trace = RunTrace()
        print(trace.recording, trace.finish(ended=True, error=None, output=1))
        #> False completed
        ```
    """

    trace_id: str | None = None
    """32-hex id of the run's trace, None when nothing records it."""
    span: Span | None = None
    """The run span, None when nothing records it."""

    steps: int = 0
    """Node steps started so far (counted by a trace that records them)."""
    failure: BaseException | None = None
    """The exception a node step raised, unless it was an interruption."""
    failed_step: FailedStep | None = None
    """The last node step that raised, with its exception."""
    _run_id: str | None = None

    # No `__init__`: the fields above are class defaults, and an untraced run makes one of these per run.

    @classmethod
    def adopting(cls, span: Span | None) -> RunTrace:
        """A trace that records nothing but reports `span` (a caller's `span=`) as the run's span, when given."""
        trace = cls()
        if span is not None:
            trace.span = span
            context = span.get_span_context()
            if context.is_valid:
                trace.trace_id = f'{context.trace_id:032x}'
        return trace

    @property
    def run_id(self) -> str:
        """The run's id (`tracegraph.run.id`)."""
        if self._run_id is None:
            self._run_id = uuid4_hex()
        return self._run_id

    @property
    def traceparent(self) -> str | None:
        """The W3C `traceparent` of the run span, None when nothing records it."""
        return traceparent_of(self.span)

    recording: bool = False
    """Whether the trace records node steps; the engine calls `start_step` / `end_step` only when it does."""

    def start_step(
        self,
        node: object,
        node_id: str,
        state: object,
        start: datetime,
        snapshot_id: str | None = None,
        attempt: int = 1,
    ) -> NodeStepTrace:
        """A node step begins (called only when `recording`): `node` (id `node_id`) is about to run on `state`.

        Args:
            node: the node, recorded as its input.
            node_id: its id.
            state: the run's state before the node runs.
            start: when the step started (UTC), the engine's one clock read for the step.
            snapshot_id: the id of the persistence snapshot the step runs, when the run is persisted.
            attempt: which run of that snapshot this is (above 1 when a process died while running it).
        """
        return NodeStepTrace(node_id, datetime_to_ns(start))

    def end_step(self, step: NodeStepTrace, next_node: object, state: object, duration: float) -> None:
        """The step's node returned `next_node` (a node, or the run's `End`) after `duration` seconds; `state` is
        as the node left it (called only when `recording`)."""

    def fail_step(
        self,
        step: NodeStepTrace | None,
        node_id: str,
        start: datetime,
        duration: float,
        error: BaseException,
        state: object,
    ) -> None:
        """The step's node raised `error` (or was interrupted by it) after `duration` seconds.

        `step` is what `start_step` returned, None when the trace is not recording.
        """
        span_id = step.span_id if step is not None else None
        self.failed_step = FailedStep(node_id=node_id, start=start, duration=duration, span_id=span_id, error=error)
        if not is_interruption(error):
            self.failure = error

    def finish(self, ended: bool, error: BaseException | None, output: object) -> Outcome:
        """The run's `async with` was left: with `error` (if any), after reaching `End` with `output` when `ended`.

        Returns:
            The run's outcome, decided by `run_outcome`.
        """
        return run_outcome(ended, error, self.failure)

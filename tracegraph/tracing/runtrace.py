"""The seam between the engine and the tracing layer: `RunTrace`, the trace of one run, and its node steps.

The engine drives every run through a `RunTrace`: `start_step` before a node runs, `end_step` or `fail_step` after,
`finish` when the run's `async with` is left. This base class records nothing — it is what a run gets when no
OpenTelemetry SDK is configured (as a non-recording span is in OpenTelemetry) — so the engine has one code path and
the untraced run is the same code as the traced one. `tracing.instrument` subclasses it to record spans and metrics.
The tracing layer never imports the engine: nodes, states and outputs are plain objects here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from time import perf_counter_ns

from opentelemetry.trace import Span

from .attributes import Outcome
from .ids import uuid4_hex
from .outcome import is_interruption, run_outcome
from .propagation import traceparent_of

__all__ = ('RunTrace', 'NodeStepTrace', 'FailedStep')


_now = datetime.now
_UTC = timezone.utc
_perf_ns = perf_counter_ns


class NodeStepTrace:
    """One node step as its run's trace saw it: when it started, how long it ran, and the span that ran it.

    Only the times are set on every step; the span's fields keep their class defaults when nothing records it.
    """

    duration: float = 0.0
    """Seconds the node's `run` took, set when the step ends."""
    trace_id: str | None = None
    """32-hex id of the trace of the node span, None when nothing recorded the step."""
    span_id: str | None = None
    """16-hex id of the node span, None when nothing recorded the step."""
    start_ns: int = 0
    """When the step started, in nanoseconds since the epoch (set when a span records the step)."""
    span: Span | None = None
    token: object = None
    state_before: object = None

    def __init__(self, node_id: str, start_ts: datetime, perf_start_ns: int) -> None:
        self.node_id = node_id
        self.start_ts = start_ts
        """When the step started (UTC)."""
        self.perf_start_ns = perf_start_ns
        """When the step started on the `perf_counter_ns` clock, which durations are measured on."""

    def stop(self) -> int:
        """Set `duration` from the clock; returns it in nanoseconds."""
        duration_ns = _perf_ns() - self.perf_start_ns
        self.duration = duration_ns / 1e9
        return duration_ns


@dataclass(frozen=True, kw_only=True)
class FailedStep:
    """The node step that raised, and what it raised."""

    step: NodeStepTrace
    error: BaseException


class RunTrace:
    """The trace of one run; this base records nothing and costs next to nothing.

    Example:
        ```python
        from tracegraph.tracing.runtrace import RunTrace

        trace = RunTrace()
        step = trace.start_step('node input', 'Increment', state=None)
        trace.end_step(step, 'End', state=None)
        print(step.duration >= 0, step.span_id, trace.finish(ended=True, error=None, output=1))
        #> True None completed
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
    _step: NodeStepTrace | None = None

    def __init__(self, run_id: str | None = None) -> None:
        """Start the trace of a run whose id is `run_id` (a new one, made when first read, when None).

        The fields above start as class defaults: an untraced run makes one of these per run.
        """
        if run_id is not None:
            self._run_id = run_id

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

    def start_step(self, node: object, node_id: str, state: object, snapshot_id: str | None = None) -> NodeStepTrace:
        """A node step begins: `node` (id `node_id`) is about to run with the run's `state`.

        `snapshot_id` is the id of the persistence snapshot the step runs, when the run is persisted. The returned
        record is read when the step ends; this base reuses one record per run (a run's steps are sequential),
        since a no-op step is run on every node of every untraced run.
        """
        step = self._step
        if step is None:
            step = self._step = NodeStepTrace(node_id, _now(_UTC), _perf_ns())
        else:
            step.node_id = node_id
            step.start_ts = _now(_UTC)
            step.perf_start_ns = _perf_ns()
        return step

    def end_step(self, step: NodeStepTrace, next_node: object, state: object) -> None:
        """The step's node returned `next_node` (a node, or the run's `End`); `state` is as the node left it."""
        step.duration = (_perf_ns() - step.perf_start_ns) / 1e9

    def fail_step(self, step: NodeStepTrace, error: BaseException, state: object) -> None:
        """The step's node raised `error` (or was interrupted by it)."""
        step.stop()
        kept = NodeStepTrace(step.node_id, step.start_ts, step.perf_start_ns)  # the record may be reused
        kept.duration, kept.trace_id, kept.span_id, kept.start_ns = (
            step.duration,
            step.trace_id,
            step.span_id,
            step.start_ns,
        )
        self.failed_step = FailedStep(step=kept, error=error)
        if not is_interruption(error):
            self.failure = error

    def finish(self, *, ended: bool, error: BaseException | None, output: object) -> Outcome:
        """The run's `async with` was left: with `error` (if any), after reaching `End` with `output` when `ended`.

        Returns:
            The run's outcome, decided by `run_outcome`.
        """
        return run_outcome(ended=ended, error=error, failure=self.failure)

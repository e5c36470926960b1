"""Spans and metrics of graph runs, through the plain OpenTelemetry API.

`Instrumentation.start_run` is called once per run and returns its `RunTrace`: a `RecordingRunTrace` when a real
tracer or meter provider is configured, otherwise the base `RunTrace`, which records nothing, so the run does no
tracing work at all (and the engine still has a single code path).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from pydantic_core import to_jsonable_python

from .._version import __version__
from . import attributes as attr
from . import semconv
from .clock import datetime_to_ns
from .instrumentation_settings import InstrumentationSettings
from .live_providers import live_meter_provider, live_tracer_provider
from .logfire_schemas import INPUT_SCHEMA, RUN_SCHEMA, state_schema
from .metric_instruments import Instruments, meter_taps, tee
from .outcome import error_type, is_interruption, run_outcome, step_outcome
from .preaggregated import PendingCounter
from .runtrace import NodeStepTrace, RunTrace
from .scrubbing import Scrubber, ScrubbingOptions

__all__ = ('Instrumentation', 'RecordingRunTrace', 'span_of')


def span_of(given: object, entered: object) -> Span | None:
    """The OpenTelemetry span behind a `span=` argument: the object itself, what entering it returned, or the
    span a logfire span wraps; None for any other context manager."""
    for candidate in (entered, given):
        if isinstance(candidate, Span):
            return candidate
        inner = getattr(candidate, '_span', None)
        if isinstance(inner, Span):
            return inner
    return None


_now_ns = time.time_ns
"""The clock of the spans' own ends and the run span's start: the SDK's (`time.time_ns`), which a node's spans use."""

_STEP_COUNT_INTERVAL_NS = 1_000_000_000
"""How long node steps may wait to be added to the `tracegraph.run.steps` counter (they all are when the run ends)."""


class Instrumentation:
    """A graph's instrumentation settings, with the tracers and instruments it has asked its providers for."""

    def __init__(self, settings: InstrumentationSettings) -> None:
        """Wrap `settings`; nothing is asked of any provider before the first run."""
        self.settings = settings
        scrub = settings.scrub
        self.scrubber = Scrubber(None if scrub is False else ScrubbingOptions() if scrub is True else scrub)
        self._tracers: dict[int, tuple[trace.TracerProvider, trace.Tracer, bool]] = {}
        self._instruments: dict[int, tuple[otel_metrics.MeterProvider, Instruments]] = {}

    def _tracer(self) -> tuple[trace.Tracer, bool] | None:
        """The tracer of the provider in use, and whether that provider is Logfire's (looked at once per provider)."""
        provider = live_tracer_provider(self.settings.tracer_provider)
        if provider is None:
            return None
        cached = self._tracers.get(id(provider))
        if cached is None or cached[0] is not provider:
            is_logfire = type(provider).__module__.split('.')[0] == 'logfire'
            cached = (provider, provider.get_tracer(attr.INSTRUMENTATION_SCOPE, __version__), is_logfire)
            self._tracers[id(provider)] = cached
        return cached[1], cached[2]

    def _metrics(self) -> Instruments | None:
        if not self.settings.metrics:
            return None
        provider = live_meter_provider(self.settings.meter_provider)
        if meter_taps and self.settings.meter_provider is None:
            providers = [*([provider] if provider is not None else []), *meter_taps]
            return tee(providers)  # a test capture is tapped in: resolved per run, not cached
        if provider is None:
            return None
        cached = self._instruments.get(id(provider))
        if cached is None or cached[0] is not provider:
            cached = (provider, Instruments(provider))
            self._instruments[id(provider)] = cached
        return cached[1]

    def start_run(
        self,
        *,
        graph_name: str,
        start_node_id: str,
        given_span: AbstractContextManager[object] | None = None,
        entered_span: object = None,
        resumed_from: tuple[str, str] | None = None,
        parent: otel_context.Context | None = None,
        run_span: bool = True,
        graph_edges: str | None = None,
    ) -> RunTrace:
        """Open the run's span (or adopt the given one) and make it current.

        Args:
            graph_name: the graph's name.
            start_node_id: id of the node the run starts at.
            given_span: the `span=` argument, already entered.
            entered_span: what entering `given_span` returned.
            resumed_from: (trace id, span id) of the last step of a resumed history, when it has one.
            parent: the context the run span is a child of (default: the current one); a resumed run given the
                context of the run it continues joins that run's trace.
            run_span: False for node steps run outside a run (`Graph.next`): their spans are children of the
                current span, and no run span or run metrics are recorded.
            graph_edges: the graph's declared edges as JSON, recorded on the run span (`attributes.GRAPH_EDGES`).

        Returns:
            A `RecordingRunTrace`, or the base `RunTrace` (which records nothing) when no provider would record.
        """
        found = self._tracer()
        instruments = self._metrics()
        if found is None and instruments is None:
            return RunTrace.adopting(span_of(given_span, entered_span))
        return RecordingRunTrace(
            self,
            tracer=found[0] if found else None,
            for_logfire=found[1] if found else False,
            instruments=instruments,
            graph_name=graph_name,
            start_node_id=start_node_id,
            adopted=span_of(given_span, entered_span) if given_span is not None else None,
            given_is_span=isinstance(given_span, Span),
            resumed_from=resumed_from,
            parent=parent,
            run_span=run_span,
            graph_edges=graph_edges,
        )


class RecordingRunTrace(RunTrace):
    """The spans and metrics of one run: its run span, a child span per node step, and the durations."""

    def __init__(
        self,
        instrumentation: Instrumentation,
        *,
        tracer: trace.Tracer | None,
        instruments: Instruments | None,
        graph_name: str,
        for_logfire: bool = False,
        start_node_id: str,
        adopted: Span | None,
        given_is_span: bool,
        resumed_from: tuple[str, str] | None,
        parent: otel_context.Context | None = None,
        run_span: bool = True,
        graph_edges: str | None = None,
    ) -> None:
        """Start tracing a run; see `Instrumentation.start_run`."""
        super().__init__()
        self._inst = instrumentation
        self._tracer = tracer
        self._instruments = instruments
        self._has_run = run_span
        self.graph_name = graph_name
        self._start = time.perf_counter()
        self._owns_span = adopted is None
        # A span passed in already started is not an exception-recording context manager: we record for it.
        self._record_on_run_span = adopted is None or given_is_span
        self._token: object | None = None
        settings = instrumentation.settings
        self._record_state_mode = settings.state
        self._input_limit = settings.max_attribute_length if settings.include_node_input else None
        # What every node span of the run carries; each step adds its node id and step (and, for Logfire, its
        # message). The `logfire.*` attributes only when the spans go to Logfire's SDK: others would store them.
        self._for_logfire = for_logfire
        self._node_attrs: dict[str, Any] = {attr.GRAPH_NAME: graph_name, attr.RUN_ID: self.run_id}
        if for_logfire:
            self._node_attrs[attr.LOGFIRE_MSG_TEMPLATE] = attr.NODE_SPAN_TEMPLATE
            self._node_attrs[attr.LOGFIRE_SPAN_TYPE] = 'span'
            if settings.include_node_input:
                self._node_attrs[attr.LOGFIRE_JSON_SCHEMA] = INPUT_SCHEMA
        self._state_schema = state_schema(settings.include_node_input, settings.state) if for_logfire else None
        self._semconv: frozenset[str] | None = frozenset(settings.semconv) or None
        if self._semconv is not None:
            self._node_attrs.update(semconv.node_attributes(self._semconv))
        self._trace_hex_cache: tuple[int, str] | None = None
        self._uncounted_steps = 0
        self._steps_counted_at = time.perf_counter_ns()
        self.context: otel_context.Context | None = None
        """The run span's context, the parent of every node span (None: the current context at each step)."""
        self._sampled = True
        """Whether the node spans' parent is sampled (with no run span, the current context's is assumed to be)."""
        self._start_ns = 0
        """When the run span started, on the SDK's clock: no node span starts before it (0: not ours to contain)."""
        if tracer is None or not run_span:
            return

        run_attrs: dict[str, Any] = {
            attr.GRAPH_NAME: graph_name,
            attr.RUN_ID: self.run_id,
            attr.RUN_START_NODE: start_node_id,
        }
        if graph_edges is not None:
            run_attrs[attr.GRAPH_EDGES] = graph_edges
        if for_logfire:
            run_attrs[attr.LOGFIRE_MSG_TEMPLATE] = attr.RUN_SPAN_TEMPLATE
            run_attrs[attr.LOGFIRE_MSG] = f'run graph {graph_name}'
            run_attrs[attr.LOGFIRE_SPAN_TYPE] = 'span'
        if self._semconv is not None:
            run_attrs.update(semconv.run_start_attributes(self._semconv, settings.agent_name or graph_name, parent))
        links: list[Link] = []
        # The caller's trace is looked up only for a resumed run: a fresh one never links.
        current_trace = trace.get_current_span(parent).get_span_context().trace_id if resumed_from is not None else 0
        if resumed_from is not None and resumed_from[0] != f'{current_trace:032x}':
            run_attrs[attr.RUN_RESUMED_FROM] = resumed_from[0]
            # on each node span too: the run span ends last, and a part still running is a part all the same
            self._node_attrs[attr.RUN_RESUMED_FROM] = resumed_from[0]
            links.append(Link(trace.SpanContext(int(resumed_from[0], 16), int(resumed_from[1], 16), is_remote=True)))
        if adopted is not None:
            span = adopted
            # The adopted span keeps its own message: only tracegraph's attributes are added.
            for key, value in run_attrs.items():
                if not key.startswith('logfire.'):
                    adopted.set_attribute(key, value)
            for link in links:
                adopted.add_link(link.context, {attr.RUN_RESUMED_FROM: resumed_from[0] if resumed_from else ''})
        else:
            self._start_ns = _now_ns()
            span = tracer.start_span(
                f'run graph {graph_name}',
                context=parent,
                kind=SpanKind.INTERNAL,
                attributes=run_attrs,
                links=links,
                start_time=self._start_ns,
                record_exception=False,
                set_status_on_exception=False,
            )
        self.span = span
        self.context = trace.set_span_in_context(span)
        self._sampled = span.get_span_context().trace_flags.sampled
        if span.is_recording():
            self.trace_id = f'{span.get_span_context().trace_id:032x}'
        # Current while the caller's `async with` body runs, so spans it opens between steps nest under the run.
        self._token = otel_context.attach(self.context)

    recording = True

    def start_step(
        self,
        node: object,
        node_id: str,
        state: object,
        start: datetime,
        snapshot_id: str | None = None,
        attempt: int = 1,
    ) -> NodeStepTrace:
        """Open the step's node span (a child of the run span) and make it current while the node runs."""
        self.steps += 1
        # The engine's start (its history's, exact to the microsecond) may fall before the run span's own start,
        # read in nanoseconds: a node span never starts before its run span.
        step = NodeStepTrace(node_id, max(datetime_to_ns(start), self._start_ns))
        tracer = self._tracer
        if tracer is None:
            return step
        # What names the step is given at start, so that a sampler sees it.
        span_attrs = {**self._node_attrs, attr.NODE_ID: node_id, attr.NODE_STEP: self.steps}
        if snapshot_id is not None:
            span_attrs[attr.SNAPSHOT_ID] = snapshot_id
            span_attrs[attr.NODE_ATTEMPT] = attempt
        # What is costly to build (the scrubbed input) is built only for a span that records. Under a sampled run
        # span the node span will record (ParentBased, the SDK's default), and attributes given at start cost the
        # SDK less than ones set after; under an unsampled one it is built only if a sampler recorded it anyway.
        details_at_start = self._sampled
        if details_at_start:
            self._add_step_details(span_attrs, node)
        span = tracer.start_span(
            f'run node {node_id}',
            context=self.context,
            kind=SpanKind.INTERNAL,
            attributes=span_attrs,
            start_time=step.start_ns,
            record_exception=False,
            set_status_on_exception=False,
        )
        step.span = span
        span_ctx = span.get_span_context()
        if span_ctx.is_valid:
            step.trace_id = self._trace_hex(span_ctx.trace_id)
            step.span_id = f'{span_ctx.span_id:016x}'
        step.token = otel_context.attach(trace.set_span_in_context(span))
        if not span.is_recording():
            return step
        if not details_at_start:
            details: dict[str, Any] = {}
            self._add_step_details(details, node)
            span.set_attributes(details)
        if self._record_state_mode != 'none':
            step.state_before = to_jsonable_python(state, fallback=repr, serialize_unknown=True)
        return step

    def _add_step_details(self, span_attrs: dict[str, Any], node: object) -> None:
        """Add the node span's costly attributes: its input (scrubbed), and its message under Logfire."""
        if self._for_logfire:
            span_attrs[attr.LOGFIRE_MSG] = f'run node {span_attrs[attr.NODE_ID]}'
        if self._input_limit is not None:
            span_attrs[attr.NODE_INPUT] = self._inst.scrubber.dumps(node, self._input_limit)
        if self._semconv is not None:
            node_input = span_attrs.get(attr.NODE_INPUT)
            given = semconv.input_attributes(self._semconv, node_input if isinstance(node_input, str) else None)
            span_attrs.update(given)
            if self.steps == 1 and self.span is not None and given:
                self.span.set_attributes(given)  # the run's input is its start node's

    def end_step(self, step: NodeStepTrace, next_node: object, state: object, duration: float) -> None:
        """End the node span as completed, naming the node that comes next, and record the step's duration."""
        span = step.span
        end_ns = _now_ns()  # the spans' clock, read after the node returned: its spans ended before
        if span is not None:
            # A node names itself with `get_id()`; the run's `End` has none.
            get_id: Callable[[], str] | None = getattr(next_node, 'get_id', None)
            # Two single sets cost the SDK less than one `set_attribute` call with a dict.
            span.set_attribute(attr.NODE_NEXT, get_id() if get_id is not None else attr.END_NODE_ID)
            span.set_attribute(attr.NODE_OUTCOME, 'completed')
        if self._instruments is not None:
            # While the node span is current: the duration's exemplar names the node span.
            self._record_step_metrics(self._instruments, span, end_ns, step.node_id, 'completed', duration)
        if span is not None:
            self._end_node_span(step, span, state, end_ns)

    def fail_step(
        self,
        step: NodeStepTrace | None,
        node_id: str,
        start: datetime,
        duration: float,
        error: BaseException,
        state: object,
    ) -> None:
        """End the node span as failed (the exception recorded, status ERROR) or interrupted."""
        super().fail_step(step, node_id, start, duration, error, state)
        outcome = step_outcome(error)
        span = step.span if step is not None else None
        if outcome == 'failed':
            self._record_failure(error)
            if span is not None:
                self._record_exception(span, error)
        if span is not None:
            span.set_attribute(attr.NODE_OUTCOME, outcome)
        end_ns = _now_ns()  # as in `end_step`: after every span the node opened
        if self._instruments is not None:
            self._record_step_metrics(self._instruments, span, end_ns, node_id, outcome, duration)
        if step is not None and span is not None:
            self._end_node_span(step, span, state, end_ns)

    def _end_node_span(self, step: NodeStepTrace, span: Span, state: object, end_ns: int) -> None:
        if self._record_state_mode != 'none' and span.is_recording():  # not yet ended: whether it records
            self._record_state(span, step.state_before, state)
        otel_context.detach(step.token)  # pyright: ignore[reportArgumentType]
        span.end(end_time=end_ns)

    def _trace_hex(self, trace_id: int) -> str:
        # Every node span of a run shares the run's trace: format its id once.
        cached = self._trace_hex_cache
        if cached is None or cached[0] != trace_id:
            cached = self._trace_hex_cache = (trace_id, f'{trace_id:032x}')
        return cached[1]

    def _record_step_metrics(
        self, instruments: Instruments, span: Span | None, end_ns: int, node_id: str, outcome: str, duration: float
    ) -> None:
        attrs = instruments.node_attributes(self.graph_name, node_id, outcome)
        instruments.node_duration.record(duration, attrs, span, end_ns)
        steps = instruments.run_steps
        if isinstance(steps, PendingCounter):  # summed until the next collection: counted at every step
            steps.add(1, instruments.graph_attributes(self.graph_name))
            return
        # Elsewhere steps are counted in batches: an SDK counter add costs as much as a small span's attributes.
        # The count is at most a second behind, and complete when the run ends.
        self._uncounted_steps += 1
        now = time.perf_counter_ns()
        if not self._has_run or now - self._steps_counted_at >= _STEP_COUNT_INTERVAL_NS:
            self._count_steps(instruments, now)

    def _count_steps(self, instruments: Instruments, now: int) -> None:
        if self._uncounted_steps:
            instruments.run_steps.add(self._uncounted_steps, instruments.graph_attributes(self.graph_name))
            self._uncounted_steps = 0
        self._steps_counted_at = now

    def _record_state(self, span: Span, before: object, state: object) -> None:
        scrubber = self._inst.scrubber
        # Diffed before scrubbing, so a secret that changed shows as changed (its values scrubbed).
        after = to_jsonable_python(state, fallback=repr, serialize_unknown=True)
        limit = self._inst.settings.max_attribute_length
        if self._state_schema is not None:
            span.set_attribute(attr.LOGFIRE_JSON_SCHEMA, self._state_schema)
        if self._record_state_mode == 'full':
            span.set_attribute(attr.STATE_BEFORE, scrubber.dumps_jsonable(scrubber.scrub(before), limit))
            span.set_attribute(attr.STATE_AFTER, scrubber.dumps_jsonable(scrubber.scrub(after), limit))
            return
        diff: dict[str, Any] = {}
        if isinstance(before, dict) and isinstance(after, dict):
            old_fields: dict[str, Any] = before  # pyright: ignore[reportUnknownVariableType]
            new_fields: dict[str, Any] = after  # pyright: ignore[reportUnknownVariableType]
            for key in old_fields.keys() | new_fields.keys():
                old, new = old_fields.get(key), new_fields.get(key)
                if old != new:
                    diff[key] = {'old': old, 'new': new}
        elif before != after:
            diff['state'] = {'old': before, 'new': after}
        span.set_attribute(attr.STATE_DIFF, scrubber.dumps_jsonable(scrubber.scrub(dict(sorted(diff.items()))), limit))

    def _record_failure(self, error: BaseException) -> None:
        """Record `error` as the run's failure on the run span (once, however often it is reported)."""
        if self._recorded_failure is error:
            return
        self._recorded_failure = error
        if self.span is not None and self._record_on_run_span:
            self._record_exception(self.span, error)

    def _record_exception(self, span: Span, error: BaseException) -> None:
        """`span.record_exception` and an ERROR status, with the secrets in the message and stack trace scrubbed."""
        if not span.is_recording():
            return  # the stack trace is formatted and scrubbed only for a span that keeps it
        scrub = self._inst.scrubber.text
        span.add_event(
            'exception',
            {
                'exception.type': error_type(error),
                'exception.message': scrub(str(error)),
                'exception.stacktrace': scrub(''.join(traceback.format_exception(error))),
                'exception.escaped': 'True',
            },
        )
        span.set_status(Status(StatusCode.ERROR, scrub(f'{type(error).__name__}: {error}')))

    _recorded_failure: BaseException | None = None

    def finish(self, ended: bool, error: BaseException | None, output: object) -> attr.Outcome:
        """End the run: set its outcome and output, end the span if it is ours, record the run's duration."""
        outcome = run_outcome(ended, error, self.failure)
        if error is not None and not is_interruption(error):
            self._record_failure(error)
        if self.span is not None:
            span = self.span
            end_attrs: dict[str, Any] = {attr.RUN_STEPS: self.steps, attr.RUN_OUTCOME: outcome}
            if ended and outcome == 'completed' and span.is_recording():
                settings = self._inst.settings
                end_attrs[attr.RUN_OUTPUT] = self._inst.scrubber.dumps(output, settings.max_attribute_length)
                if self._for_logfire:
                    end_attrs[attr.LOGFIRE_JSON_SCHEMA] = RUN_SCHEMA
            if self._semconv is not None:
                failure = (error or self.failure) if outcome == 'failed' else None
                end_attrs.update(
                    semconv.run_end_attributes(
                        self._semconv, end_attrs.get(attr.RUN_OUTPUT), error_type(failure) if failure else None
                    )
                )
            span.set_attributes(end_attrs)  # one call, one lock
        # Recorded while the run span is current, so an exemplar of this point links to the run's trace.
        if self._instruments is not None:
            self._count_steps(self._instruments, time.perf_counter_ns())
            if self._has_run:
                self._instruments.run_duration.record(
                    time.perf_counter() - self._start,
                    self._instruments.run_attributes(self.graph_name, outcome),
                    self.span,
                    time.time_ns(),
                )
        if self.span is not None:
            if self._token is not None:
                otel_context.detach(self._token)  # pyright: ignore[reportArgumentType]
                self._token = None
            if self._owns_span:
                self.span.end()
        return outcome

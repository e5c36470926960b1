"""In-memory capture of tracegraph's spans and metrics, for tests (the `tracegraph_capture` pytest fixture).

OpenTelemetry lets a process set its global `TracerProvider` and `MeterProvider` only once, while a test
suite wants a fresh capture per test, and other tests may configure Logfire (`capfire`) later. So the first
capture makes ONE pipeline for the whole process, sets neither global provider, and every capture after it plugs
into that pipeline:

- traces: a `TracerProvider` whose only processor is a switch forwarding to the active capture, which runs record
  to while no global provider is set; once one is (e.g. by `logfire.configure()`), the switch is added to it;
- metrics: a `MeterProvider` tapped in beside the global one, with an in-memory reader using delta temporality; a
  capture drains the reader when it starts and sums the deltas it collects afterwards, so it sees only what its
  own test recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from ...tracing import attributes as attr
from ...tracing.live_providers import record_without_a_global_provider
from ...tracing.metric_instruments import meter_taps
from ...tracing.timeline import NodeTimeline
from ..metrics.views import delta_temporality, metric_views
from ..providers import AttachedProcessors, global_host
from .spantables import spans_arrow, spans_pandas

__all__ = ('TelemetryCapture', 'MetricPoint')


@dataclass(frozen=True, kw_only=True)
class MetricPoint:
    """One metric stream (name + attributes) summed over everything recorded while a capture was active."""

    name: str
    unit: str
    attributes: dict[str, Any]
    kind: Literal['sum', 'histogram', 'gauge']
    value: float
    """Counter total, histogram sum, or last gauge value."""
    count: int = 0
    """Number of histogram measurements (0 for counters and gauges)."""
    explicit_bounds: tuple[float, ...] = ()
    bucket_counts: tuple[int, ...] = ()


class _SwitchProcessor(SpanProcessor):
    """Forwards spans to the capture that is active now, and drops them when none is."""

    def __init__(self) -> None:
        self.target: TelemetryCapture | None = None

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        target = self.target
        if target is not None:
            target.take_span(span)

    def shutdown(self) -> None:
        self.target = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@dataclass(kw_only=True)
class _Pipeline:
    switch: _SwitchProcessor
    own: TracerProvider
    """Records tracegraph's runs while the process has no global tracer provider; never set as the global one."""
    reader: InMemoryMetricReader
    """The capture's reader, of a MeterProvider tapped in beside the global one (never set as the global one)."""
    attached_to: object | None = None
    """The global provider the switch was last added to."""


_pipeline: _Pipeline | None = None
_pipeline_lock = threading.Lock()


def _stable(attributes: Any) -> dict[str, Any]:
    values = dict(attributes or {})
    trace = values.get('exception.stacktrace')
    if isinstance(trace, str) and trace.strip():
        values['exception.stacktrace'] = trace.strip().splitlines()[-1]
    return values


def _global_pipeline() -> _Pipeline:
    """The process's one capture pipeline, routed for the capture starting now.

    Nothing global is set: OpenTelemetry lets a process set its global providers once, and a capture that took them
    would hide every later test's runs from `logfire.configure()` (Logfire's `capfire`). Runs record to the
    capture's own provider while the process has no global one; once it has one, the switch is added to it, again
    whenever its SDK provider was replaced (each `logfire.configure()` makes a new one).
    """
    global _pipeline
    with _pipeline_lock:
        if _pipeline is None:
            switch = _SwitchProcessor()
            own = TracerProvider(resource=Resource.create({'service.name': 'tracegraph-capture'}))
            own.add_span_processor(switch)
            reader = InMemoryMetricReader(preferred_temporality=delta_temporality())
            meter_taps.append(MeterProvider(metric_readers=[reader], views=metric_views()))
            _pipeline = _Pipeline(switch=switch, own=own, reader=reader)
        host = global_host(
            'tracegraph_capture cannot capture spans',
            'let the capture run without a global provider, or set an SDK TracerProvider before the first capture.',
        )
        if host is None:
            record_without_a_global_provider(_pipeline.own)
        else:
            record_without_a_global_provider(None)
            inner = getattr(host, 'provider', host)  # Logfire's proxy holds the SDK provider it swaps
            if inner is not _pipeline.attached_to:
                host.add_span_processor(AttachedProcessors([_pipeline.switch]))
                _pipeline.attached_to = inner
        return _pipeline


@dataclass(kw_only=True)
class TelemetryCapture:
    """Spans and metrics captured in memory while active; get one from `TelemetryCapture.start()`.

    Example:
        ```python
        from tracegraph.exporters import TelemetryCapture

        with TelemetryCapture.start() as capture:
            ...  # run graphs
        print(capture.timelines())
        ```
    """

    _pipeline: _Pipeline
    _spans: list[ReadableSpan] = field(default_factory=list[ReadableSpan])
    _metrics: dict[tuple[str, tuple[tuple[str, Any], ...]], MetricPoint] = field(
        default_factory=dict[tuple[str, tuple[tuple[str, Any], ...]], MetricPoint]
    )
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    @contextmanager
    def start(cls) -> Generator[TelemetryCapture, None, None]:
        """Capture until the block ends; the previous capture (if any) is restored afterwards."""
        pipeline = _global_pipeline()
        capture = cls(_pipeline=pipeline)
        pipeline.reader.get_metrics_data()  # drop deltas recorded before this capture
        previous = pipeline.switch.target
        pipeline.switch.target = capture
        try:
            yield capture
        finally:
            pipeline.switch.target = previous

    def take_span(self, span: ReadableSpan) -> None:
        with self._lock:
            self._spans.append(span)

    @property
    def spans(self) -> list[ReadableSpan]:
        """The finished spans captured so far, in the order they ended."""
        with self._lock:
            return list(self._spans)

    def spans_as_dicts(self) -> list[dict[str, Any]]:
        """The captured spans as plain dicts that compare equal from one test run to the next (for snapshots).

        Ids and times are replaced, keeping their relations: trace and span ids become 1, 2, 3… in the order they
        first appear, and so do the random ids tracegraph writes as attributes (`tracegraph.run.id` becomes
        `run-1`…, `tracegraph.snapshot.id` `snapshot-1`…, `tracegraph.run.resumed_from` the trace's number).
        Every timestamp (starts, ends, events) becomes 1 s, 2 s, 3 s… in time order, so ordering and nesting
        survive but durations do not. An exception's stack trace is cut to its last line (its file paths and line
        numbers change with the code). Spans are in the order they ended.
        """
        spans = self.spans
        trace_ids: dict[int, int] = {}
        span_ids: dict[int, int] = {}
        times = sorted(
            {t for s in spans for t in (s.start_time, s.end_time, *(e.timestamp for e in s.events)) if t is not None}
        )
        tick = {t: (i + 1) * 1_000_000_000 for i, t in enumerate(times)}

        def span_id(value: int) -> int:
            return span_ids.setdefault(value, len(span_ids) + 1)

        renamed: dict[str, dict[object, str]] = {'run': {}, 'snapshot': {}}

        def stable_attributes(values: Any) -> dict[str, Any]:
            out = dict(values or {})
            for key, prefix in ((attr.RUN_ID, 'run'), (attr.SNAPSHOT_ID, 'snapshot')):
                if key in out:
                    seen = renamed[prefix]
                    out[key] = seen.setdefault(out[key], f'{prefix}-{len(seen) + 1}')
            origin = out.get(attr.RUN_RESUMED_FROM)
            if isinstance(origin, str):
                with suppress(ValueError):  # not a trace id: kept as it is
                    out[attr.RUN_RESUMED_FROM] = trace_ids.setdefault(int(origin, 16), len(trace_ids) + 1)
            return out

        out: list[dict[str, Any]] = []
        for s in spans:
            assert s.context is not None  # a finished SDK span always has one
            out.append(
                {
                    'name': s.name,
                    'context': {
                        'trace_id': trace_ids.setdefault(s.context.trace_id, len(trace_ids) + 1),
                        'span_id': span_id(s.context.span_id),
                    },
                    'parent': {'span_id': span_id(s.parent.span_id)} if s.parent else None,
                    'start_time': tick.get(s.start_time or 0, 0),
                    'end_time': tick.get(s.end_time or 0, 0),
                    'kind': s.kind.name,
                    'status': s.status.status_code.name,
                    'attributes': stable_attributes(s.attributes),
                    'events': [
                        {'name': e.name, 'timestamp': tick.get(e.timestamp, 0), 'attributes': _stable(e.attributes)}
                        for e in s.events
                    ],
                }
            )
        return out

    def to_arrow(self) -> Any:
        """The captured spans as a `pyarrow.Table`, one row per span (see `spantables.SPAN_ROW_FIELDS`)."""
        return spans_arrow(self.spans)

    def to_pandas(self) -> Any:
        """The captured spans as a pandas `DataFrame`, one row per span."""
        return spans_pandas(self.spans)

    def span_names(self) -> list[str]:
        """Names of the captured spans, in the order they ended."""
        return [s.name for s in self.spans]

    def timelines(self) -> list[NodeTimeline]:
        """A `NodeTimeline` for every run whose run span ended while capturing, ordered by start time."""
        return NodeTimeline.all_from_spans(self.spans)

    def clear(self) -> None:
        """Forget the spans and metrics captured so far."""
        self.metrics()
        with self._lock:
            self._spans.clear()
            self._metrics.clear()

    def metrics(self, name: str | None = None) -> list[MetricPoint]:
        """Every metric stream recorded while capturing (optionally only those called `name`).

        When another library set the global `MeterProvider` first (Logfire, `capfire`), tracegraph's metrics go
        to it and to the capture.
        """
        data = self._pipeline.reader.get_metrics_data()
        with self._lock:
            for resource_metrics in data.resource_metrics if data else ():
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        self._merge(metric.name, metric.unit or '', metric.data)
            points = list(self._metrics.values())
        return [p for p in points if name is None or p.name == name]

    def _merge(self, name: str, unit: str, data: Any) -> None:
        for point in data.data_points:
            attrs = dict(point.attributes or {})
            key = (name, tuple(sorted(attrs.items())))
            old = self._metrics.get(key)
            if isinstance(data, Histogram):
                bounds = tuple(point.explicit_bounds)
                buckets = tuple(point.bucket_counts)
                if old is not None:
                    buckets = tuple(a + b for a, b in zip(old.bucket_counts, buckets))
                self._metrics[key] = MetricPoint(
                    name=name,
                    unit=unit,
                    attributes=attrs,
                    kind='histogram',
                    value=point.sum + (old.value if old else 0.0),
                    count=point.count + (old.count if old else 0),
                    explicit_bounds=bounds,
                    bucket_counts=buckets,
                )
            elif isinstance(data, Sum):
                value = point.value
                if data.aggregation_temporality == AggregationTemporality.DELTA and old is not None:
                    value += old.value
                self._metrics[key] = MetricPoint(name=name, unit=unit, attributes=attrs, kind='sum', value=value)
            elif isinstance(data, Gauge):
                self._metrics[key] = MetricPoint(
                    name=name, unit=unit, attributes=attrs, kind='gauge', value=point.value
                )

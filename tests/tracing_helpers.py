"""A real OpenTelemetry SDK pipeline (in-memory span exporter and metric reader) for the tracing tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.trace import Link, SpanContext, SpanKind, Status

from tracegraph import InstrumentationSettings
from tracegraph.exporters.metrics.views import metric_views


class Finished(Protocol):
    """A finished SDK span as the tests read it: exported spans always have a context and attributes (the SDK's
    `ReadableSpan` types both as optional)."""

    @property
    def name(self) -> str: ...
    @property
    def context(self) -> SpanContext: ...
    @property
    def parent(self) -> SpanContext | None: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...
    @property
    def events(self) -> Sequence[Event]: ...
    @property
    def links(self) -> Sequence[Link]: ...
    @property
    def status(self) -> Status: ...
    @property
    def kind(self) -> SpanKind: ...
    @property
    def start_time(self) -> int: ...
    @property
    def end_time(self) -> int: ...
    @property
    def resource(self) -> Resource: ...


@dataclass
class Pipeline:
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    reader: InMemoryMetricReader

    def settings(self, **kwargs: Any) -> InstrumentationSettings:
        return InstrumentationSettings(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs
        )

    @property
    def spans(self) -> list[Finished]:
        return finished(self.exporter.get_finished_spans())

    def span(self, name: str) -> Finished:
        matches = [s for s in self.spans if s.name == name]
        assert len(matches) == 1, f'{len(matches)} spans named {name!r}: {[s.name for s in self.spans]}'
        return matches[0]

    def metric_points(self, name: str) -> list[Any]:
        return points_of(self.reader, name)


def finished(spans: Iterable[ReadableSpan]) -> list[Finished]:
    """`spans` typed as exported spans (whose context and attributes are always set)."""
    return cast(list[Finished], list(spans))


def parent_id(span: Finished) -> int:
    """The span id of `span`'s parent (it must have one)."""
    assert span.parent is not None, f'{span.name!r} has no parent'
    return span.parent.span_id


def sdk_attributes(item: Any) -> Mapping[str, Any]:
    """The attributes of a span, event or metric point, which the SDK types as optional."""
    return item.attributes or {}


def points_of(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """The data points `reader` holds for the metric `name` (the SDK's point types are a union read loosely)."""
    data: Any = reader.get_metrics_data()
    points: list[Any] = []
    resource_metrics: list[Any] = data.resource_metrics if data else []
    for rm in resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    points.extend(metric.data.data_points)
    return points


def make_pipeline(service_name: str | None = None, sampler: Sampler | None = None) -> Pipeline:
    """The tests' one SDK pipeline: a tracer provider exporting to memory, a meter provider read in memory, with the
    contract's buckets as `configure()` sets them (an opentelemetry-api older than 1.29 takes no bucket advice)."""
    resource = Resource.create({'service.name': service_name}) if service_name else Resource.create()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader], views=metric_views())
    return Pipeline(tracer_provider, exporter, meter_provider, reader)


def hexid(value: int) -> str:
    return f'{value:016x}' if value < 2**64 else f'{value:032x}'

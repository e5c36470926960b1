"""The node-duration histogram is pre-aggregated on the graph's thread and merged into the SDK at each collection.

Every test runs real graphs on a clock the test moves (each step lasts a known number of milliseconds), and reads
the histogram from a real SDK reader: its buckets, count, sum, min, max and exemplars must be what the node spans
say, at every collection, with any temporality, view or reader the user set up.
"""

from __future__ import annotations

import contextlib
import random
from bisect import bisect_left
from collections import Counter
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from importlib.metadata import version as _package_version
from typing import Any

import pytest
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, NoOpMeter, Observation
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics._internal.exemplar import AlwaysOnExemplarFilter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import DropAggregation, ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sample_runs import FixedClock, reading_clock
from tracing_helpers import finished, points_of

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings
from tracegraph._version import __version__
from tracegraph.exporters.metrics.sdk_merge_gate import MERGE_TESTED_SDK_VERSIONS, merge_enabled
from tracegraph.tracing import attributes as attr
from tracegraph.tracing.preaggregated import ExactHistogram, PreAggregatedHistogram, duration_recorder


def _sdk_version() -> str:
    return _package_version('opentelemetry-sdk')


pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not merge_enabled(),
        reason=f'the SDK merge is gated off on opentelemetry-sdk {_sdk_version()} (tested on {sorted(MERGE_TESTED_SDK_VERSIONS)})',
    ),
]


@dataclass
class Plan:
    """What the nodes of a run do: step `i` lasts `durations_us[i]` µs; the last one raises when `fail`."""

    clock: FixedClock
    durations_us: Sequence[int]
    fail: bool
    at_step: int = -1
    """The step at which `probe` is called (a collection in the middle of a run)."""
    probe: Any = None


class Boom(Exception):
    pass


@dataclass
class Even(BaseNode[None, Plan, int]):
    i: int

    async def run(self, ctx: GraphRunContext[None, Plan]) -> Odd | End[int]:
        return _work(self.i, ctx.deps, Odd)


@dataclass
class Odd(BaseNode[None, Plan, int]):
    i: int

    async def run(self, ctx: GraphRunContext[None, Plan]) -> Even | End[int]:
        return _work(self.i, ctx.deps, Even)


def _work(i: int, plan: Plan, following: Any) -> Any:
    if i == plan.at_step:
        plan.probe()
    plan.clock.advance(plan.durations_us[i] * 1000)
    if i + 1 == len(plan.durations_us):
        if plan.fail:
            raise Boom(f'step {i}')
        return End(i)
    return following(i + 1)


@pytest.fixture
def clock() -> Generator[FixedClock]:
    """The engine's step timer and the spans read this clock: durations are exactly what the plan says."""
    fixed = FixedClock(1_000_000_000_000)
    with reading_clock(fixed):
        yield fixed


def _tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def _run_many(
    settings: InstrumentationSettings, clock: FixedClock, *, runs: int, steps: int, seed: int = 7
) -> None:
    """`runs` runs of `steps` steps whose durations span every bucket; about a third fail at their last step."""
    rng = random.Random(seed)
    graph = Graph(nodes=[Even, Odd], name='durations', instrumentation=settings)
    for _ in range(runs):
        # 0 µs .. 1000 s, log-spread so that every bucket of DURATION_BUCKETS (0.1 ms .. 600 s, and over) gets steps.
        durations = [int(10 ** rng.uniform(0, 9)) - 1 for _ in range(steps)]
        plan = Plan(clock=clock, durations_us=durations, fail=rng.random() < 0.33)
        with contextlib.suppress(Boom):
            await graph.run(Even(0), deps=plan)


def _expected(spans: Sequence[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (node, outcome): bucket counts, sum, min, max and the last span of each bucket, from the node spans."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for span in (s for s in finished(spans) if s.name.startswith('run node ')):  # in the order they ended
        seconds = (span.end_time - span.start_time) / 1e9
        key = (span.attributes[attr.NODE_ID], span.attributes[attr.NODE_OUTCOME])
        entry = out.setdefault(key, {'counts': [0] * (len(attr.DURATION_BUCKETS) + 1), 'values': [], 'last': {}})
        bucket = bisect_left(attr.DURATION_BUCKETS, seconds)
        entry['counts'][bucket] += 1
        entry['values'].append(seconds)
        entry['last'][bucket] = (span.context.span_id, seconds)
    return out


def _points(reader: InMemoryMetricReader, name: str = attr.METRIC_NODE_DURATION) -> dict[tuple[str, str], Any]:
    return {(p.attributes[attr.NODE_ID], p.attributes[attr.NODE_OUTCOME]): p for p in points_of(reader, name)}


def _assert_points_match(points: dict[tuple[str, str], Any], expected: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert points.keys() == expected.keys()
    for key, point in points.items():
        want = expected[key]
        assert list(point.bucket_counts) == want['counts'], key
        assert point.count == len(want['values'])
        assert point.sum == pytest.approx(sum(want['values']), rel=1e-12)
        assert (point.min, point.max) == (min(want['values']), max(want['values']))
        assert tuple(point.explicit_bounds) == attr.DURATION_BUCKETS


async def test_every_bucket_count_and_sum_equals_the_node_spans(clock: FixedClock) -> None:
    tracer_provider, exporter = _tracing()
    reader = InMemoryMetricReader()
    meter_provider = SdkMeterProvider(metric_readers=[reader])
    settings = InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=meter_provider)

    await _run_many(settings, clock, runs=60, steps=60)

    spans = exporter.get_finished_spans()
    expected = _expected(spans)
    assert sum(len(e['values']) for e in expected.values()) == 3600
    assert {outcome for _, outcome in expected} == {'completed', 'failed'}
    assert all(
        c > 0 for c in [sum(e['counts'][b] for e in expected.values()) for b in range(len(attr.DURATION_BUCKETS) + 1)]
    )  # all buckets
    points = _points(reader)
    _assert_points_match(points, expected)
    # Exemplars: for each bucket, the node span the SDK's reservoir keeps (the last one), with its value.
    for key, point in points.items():
        seen = {bisect_left(attr.DURATION_BUCKETS, e.value): (e.span_id, e.value) for e in point.exemplars}
        assert seen == expected[key]['last'], key
        trace_of = {s.context.span_id: s.context.trace_id for s in finished(spans)}
        assert all(trace_of[e.span_id] == e.trace_id for e in point.exemplars)
    runs = {(p.attributes[attr.RUN_OUTCOME]): p.count for p in points_of(reader, attr.METRIC_RUN_DURATION)}
    assert sum(runs.values()) == 60


async def test_the_same_points_as_an_sdk_record_per_step(clock: FixedClock) -> None:
    """Side by side: a provider where the SDK records every step itself (its always-on exemplar filter keeps
    tracegraph off the fast path) gets the same points, exemplars included."""
    tracer_provider, _ = _tracing()
    fast_reader, exact_reader = InMemoryMetricReader(), InMemoryMetricReader()
    fast = SdkMeterProvider(metric_readers=[fast_reader])
    exact = SdkMeterProvider(metric_readers=[exact_reader], exemplar_filter=AlwaysOnExemplarFilter())
    graph_settings = InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=fast)
    await _run_many(graph_settings, clock, runs=20, steps=50)
    await _run_many(
        InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=exact), clock, runs=20, steps=50
    )

    assert isinstance(_recorder_of(fast), PreAggregatedHistogram)
    assert isinstance(_recorder_of(exact), ExactHistogram)
    fast_points, exact_points = _points(fast_reader), _points(exact_reader)
    assert fast_points.keys() == exact_points.keys()
    for key, point in fast_points.items():
        other = exact_points[key]
        assert (point.bucket_counts, point.count, point.min, point.max) == (
            other.bucket_counts,
            other.count,
            other.min,
            other.max,
        )
        assert point.sum == pytest.approx(other.sum, rel=1e-12)
        assert [e.value for e in point.exemplars] == [e.value for e in other.exemplars]


async def test_a_collection_in_the_middle_of_a_run_sees_every_step_before_it(clock: FixedClock) -> None:
    reader = InMemoryMetricReader()
    settings = InstrumentationSettings(
        tracer_provider=_tracing()[0], meter_provider=SdkMeterProvider(metric_readers=[reader])
    )
    graph = Graph(nodes=[Even, Odd], name='durations', instrumentation=settings)
    seen: list[tuple[int, int]] = []
    plan = Plan(clock=clock, durations_us=[3000] * 1000, fail=False, at_step=700)

    def counted() -> tuple[int, int]:
        data = reader.get_metrics_data()  # one collection: the histogram and the step counter agree in it
        assert data is not None
        points: list[Any] = [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name in (attr.METRIC_NODE_DURATION, attr.METRIC_RUN_STEPS)
            for p in m.data.data_points
        ]
        return sum(p.count for p in points if hasattr(p, 'count')), sum(p.value for p in points if hasattr(p, 'value'))

    plan.probe = lambda: seen.append(counted())
    await graph.run(Even(0), deps=plan)
    assert seen == [(700, 700)]
    assert counted() == (1000, 1000)


async def test_force_flush_exports_every_step_to_a_periodic_reader(clock: FixedClock) -> None:
    from opentelemetry.sdk.metrics.export import (
        MetricExporter,
        MetricExportResult,
        MetricsData,
        PeriodicExportingMetricReader,
    )

    class Keep(MetricExporter):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[MetricsData] = []

        def export(
            self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
        ) -> MetricExportResult:
            self.batches.append(metrics_data)
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            pass

    exporter = Keep()
    meter_provider = SdkMeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, 3_600_000)])
    settings = InstrumentationSettings(tracer_provider=_tracing()[0], meter_provider=meter_provider)
    await _run_many(settings, clock, runs=5, steps=40)
    assert meter_provider.force_flush()
    points: list[Any] = [
        p
        for rm in exporter.batches[-1].resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == attr.METRIC_NODE_DURATION
        for p in m.data.data_points
    ]
    counts = [int(p.count) for p in points]
    assert sum(counts) == 200
    names = {m.name for rm in exporter.batches[-1].resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert names == {attr.METRIC_NODE_DURATION, attr.METRIC_RUN_DURATION, attr.METRIC_RUN_STEPS}  # nothing else
    meter_provider.shutdown()


async def test_delta_temporality_loses_and_repeats_nothing(clock: FixedClock) -> None:
    tracer_provider, exporter = _tracing()
    reader = InMemoryMetricReader(preferred_temporality={SdkHistogram: AggregationTemporality.DELTA})
    settings = InstrumentationSettings(
        tracer_provider=tracer_provider, meter_provider=SdkMeterProvider(metric_readers=[reader])
    )
    totals: Counter[tuple[str, str, int]] = Counter()
    for seed in range(4):
        await _run_many(settings, clock, runs=5, steps=30, seed=seed)
        for key, point in _points(reader).items():
            for bucket, count in enumerate(point.bucket_counts):
                totals[(*key, bucket)] += count
    expected = _expected(exporter.get_finished_spans())
    assert {k: v for k, v in totals.items() if v} == {
        (*key, b): c for key, e in expected.items() for b, c in enumerate(e['counts']) if c
    }


async def test_views_the_user_set_are_honoured(clock: FixedClock) -> None:
    tracer_provider, exporter = _tracing()
    by_graph = InMemoryMetricReader()
    provider = SdkMeterProvider(
        metric_readers=[by_graph],
        views=[View(instrument_name=attr.METRIC_NODE_DURATION, attribute_keys={attr.GRAPH_NAME})],
    )
    await _run_many(
        InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=provider), clock, runs=4, steps=25
    )
    assert isinstance(_recorder_of(provider), PreAggregatedHistogram)
    (point,) = points_of(by_graph, attr.METRIC_NODE_DURATION)
    assert dict(point.attributes) == {attr.GRAPH_NAME: 'durations'}
    expected = _expected(exporter.get_finished_spans())
    assert list(point.bucket_counts) == [
        sum(e['counts'][b] for e in expected.values()) for b in range(len(attr.DURATION_BUCKETS) + 1)
    ]

    exponential, dropped = InMemoryMetricReader(), InMemoryMetricReader()
    for reader, aggregation in ((exponential, ExponentialBucketHistogramAggregation()), (dropped, DropAggregation())):
        provider = SdkMeterProvider(
            metric_readers=[reader], views=[View(instrument_name=attr.METRIC_NODE_DURATION, aggregation=aggregation)]
        )
        await _run_many(
            InstrumentationSettings(meter_provider=provider, tracer_provider=tracer_provider), clock, runs=2, steps=10
        )
    # An aggregation the merge cannot replay gets a record per step; a dropped metric stays on the fast path.
    assert sum(p.count for p in points_of(exponential, attr.METRIC_NODE_DURATION)) == 20
    assert points_of(dropped, attr.METRIC_NODE_DURATION) == []


async def test_a_reader_added_later_sees_the_steps_after_it(clock: FixedClock) -> None:
    first, second = InMemoryMetricReader(), InMemoryMetricReader()
    provider = SdkMeterProvider(metric_readers=[first])
    settings = InstrumentationSettings(tracer_provider=_tracing()[0], meter_provider=provider)
    await _run_many(settings, clock, runs=1, steps=30)  # not collected yet: still pending when the reader comes
    provider.add_metric_reader(second)
    await _run_many(settings, clock, runs=1, steps=20)
    assert sum(p.count for p in points_of(first, attr.METRIC_NODE_DURATION)) == 50
    assert sum(p.count for p in points_of(second, attr.METRIC_NODE_DURATION)) == 20


async def test_a_meter_provider_that_is_not_the_sdk_gets_a_record_per_step(clock: FixedClock) -> None:
    recorded: list[tuple[float, dict[str, Any]]] = []

    class ListHistogram(Histogram):
        def __init__(self, name: str) -> None:
            super().__init__(name)

        def record(self, amount: float, attributes: Any = None, context: Any = None) -> None:
            recorded.append((amount, dict(attributes)))

    class ListMeter(NoOpMeter):
        def create_histogram(self, name: str, *args: Any, **kwargs: Any) -> Histogram:
            return ListHistogram(name)

    class ListMeterProvider(MeterProvider):
        def get_meter(self, name: str, *args: Any, **kwargs: Any) -> Meter:
            return ListMeter(name)

    settings = InstrumentationSettings(tracer_provider=_tracing()[0], meter_provider=ListMeterProvider())
    plan = Plan(clock=clock, durations_us=[5000, 7000, 9000], fail=False)
    await Graph(nodes=[Even, Odd], name='durations', instrumentation=settings).run(Even(0), deps=plan)
    node_steps = [(value, a[attr.NODE_ID]) for value, a in recorded if attr.NODE_ID in a]
    assert node_steps == [(0.005, 'Even'), (0.007, 'Odd'), (0.009, 'Even')]


def test_the_merge_callback_observes_nothing() -> None:
    provider = SdkMeterProvider(metric_readers=[InMemoryMetricReader()])
    meter = provider.get_meter('x')
    recorder = duration_recorder(meter, 'd', meter.create_histogram('d', unit='s'))
    assert isinstance(recorder, PreAggregatedHistogram)
    assert list(recorder.collect(CallbackOptions())) == list[Observation]()
    assert duration_recorder(meter, 'd', meter.create_histogram('d', unit='s')) is recorder  # one per instrument


def _recorder_of(provider: SdkMeterProvider) -> object:
    """The recorder tracegraph's instruments use on `provider` (the SDK hands out the same instrument)."""
    meter = provider.get_meter(attr.INSTRUMENTATION_SCOPE, __version__)
    histogram = meter.create_histogram(
        attr.METRIC_NODE_DURATION,
        unit='s',
        description='Duration of node steps',
        explicit_bucket_boundaries_advisory=attr.DURATION_BUCKETS,
    )
    return duration_recorder(meter, attr.METRIC_NODE_DURATION, histogram)


async def test_without_the_sdk_binder_every_step_is_recorded(
    clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracing layer knows no SDK: the merge is the binder's that the entry point names; without one, exact."""
    from tracegraph.tracing import preaggregated

    def no_binder(_instrument: object) -> None:
        return None

    monkeypatch.setattr(preaggregated, 'binder_for', no_binder)
    reader = InMemoryMetricReader()
    provider = SdkMeterProvider(metric_readers=[reader])
    await _run_many(
        InstrumentationSettings(tracer_provider=_tracing()[0], meter_provider=provider), clock, runs=2, steps=10
    )
    assert isinstance(_recorder_of(provider), ExactHistogram)
    assert sum(p.count for p in points_of(reader, attr.METRIC_NODE_DURATION)) == 20


_OWN_PROVIDER = """
from __future__ import annotations

import asyncio, sys
from dataclasses import dataclass
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings
from tracegraph.tracing.preaggregated import PreAggregatedHistogram, _recorders


@dataclass
class Count(BaseNode[None, None, int]):
    n: int

    async def run(self, ctx: GraphRunContext) -> Count | End[int]:
        return Count(self.n + 1) if self.n < 4 else End(self.n)


reader = InMemoryMetricReader()
settings = InstrumentationSettings(meter_provider=MeterProvider(metric_readers=[reader]))
graph = Graph(nodes=[Count], name='own', instrumentation=settings)
assert 'tracegraph.exporters' not in sys.modules
asyncio.run(graph.run(Count(0)))
assert any(isinstance(r, PreAggregatedHistogram) for r in _recorders.values()), list(_recorders.values())
points = [
    p for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    if m.name == 'tracegraph.node.duration' for p in m.data.data_points
]
print(sum(p.count for p in points))
"""


def test_a_meter_provider_of_ones_own_is_pre_aggregated_without_importing_the_exporters() -> None:
    """The SDK binder is found through the `tracegraph.merge_binders` entry point: no import or setup of the user's."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, '-c', _OWN_PROVIDER], capture_output=True, text=True, timeout=120, cwd=tests, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ['5']  # Count(0) .. Count(4)

"""The dashboards' TraceQL and exemplars, checked on the spans and metrics real graph runs emit.

No Tempo here: the queries are parsed by a small evaluator of the TraceQL subset they use (tests/grafana_helpers.py)
and applied to the SDK spans of the workload in dashboards/workload.py, so a renamed attribute or span name, or a
condition that selects the wrong runs, fails here.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Literal

import pytest
from grafana_helpers import (
    DASHBOARDS_DIR,
    interpolate,
    iter_panels,
    load_dashboard,
    parse_traceql,
    span_attributes,
    variables,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tracegraph import Graph, InstrumentationSettings
from tracegraph.exporters import TelemetryCapture
from tracegraph.tracing import attributes as attr

pytestmark = pytest.mark.anyio

Chosen = dict[str, Sequence[str] | Literal['All']]


def _workload() -> ModuleType:
    spec = importlib.util.spec_from_file_location('tracegraph_dashboards_workload', DASHBOARDS_DIR / 'workload.py')
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The graphs read their nodes' return hints through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def workload() -> ModuleType:
    return _workload()


async def _spans(capture: TelemetryCapture, workload: ModuleType, runs: int) -> list[Any]:
    deps = workload.Deps(rng=random.Random(7), failure_rate=0.3)
    for _ in range(runs):
        await workload._one_run(deps)
    return capture.spans


def _tempo_panels(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    dash = load_dashboard(name)
    vars_ = {v.name: v for v in variables(dash)}
    return [
        (panel['title'], target['query'], vars_)
        for panel in iter_panels(dash)
        for target in panel.get('targets', [])
        if target['datasource']['uid'] == '${tempo}'
    ]


def _is_run(span: Any) -> bool:
    attrs = span_attributes(span)
    return attr.RUN_ID in attrs and attr.NODE_ID not in attrs


def _select(query: str, spans: list[Any]) -> list[Any]:
    parsed = parse_traceql(query)
    selected = [s for s in spans if parsed.matches(s)]
    for span in selected:
        missing = [a for a in parsed.select if span_attributes(span).get(a.removeprefix('span.')) is None]
        assert missing == [], f'{span.name}: select() asks for attributes it lacks'
    return selected


@pytest.mark.parametrize('slow', ['1s', '5ms'])
async def test_overview_trace_tables_select_the_slow_or_failed_runs(
    tracegraph_capture: TelemetryCapture, workload: ModuleType, slow: str
):
    spans = await _spans(tracegraph_capture, workload, 80)
    runs = [s for s in spans if _is_run(s)]
    nodes = [s for s in spans if attr.NODE_ID in span_attributes(s)]
    threshold = {'1s': 1e9, '5ms': 5e6}[slow]
    chosen: Chosen = {'service': 'All', 'graph': 'All', 'node': 'All', 'slow': [slow]}
    panels = {
        title: interpolate(query, vars_, chosen) for title, query, vars_ in _tempo_panels('tracegraph-overview.json')
    }
    assert set(panels) == {'Recent slow or failed runs', 'Recent failed node steps'}

    slow_or_failed = _select(panels['Recent slow or failed runs'], spans)
    expected = [
        s for s in runs if span_attributes(s)[attr.RUN_OUTCOME] != 'completed' or s.end_time - s.start_time > threshold
    ]
    assert {s.attributes[attr.RUN_OUTCOME] for s in expected} >= {'failed', 'interrupted'}
    assert slow_or_failed == expected
    if slow == '5ms':
        assert any(s.attributes[attr.RUN_OUTCOME] == 'completed' for s in slow_or_failed)

    failed_steps = _select(panels['Recent failed node steps'], spans)
    assert failed_steps == [s for s in nodes if s.status.status_code is StatusCode.ERROR]
    assert {s.attributes[attr.NODE_ID] for s in failed_steps} == {'Charge', 'Parse'}


async def test_overview_trace_tables_follow_the_graph_and_node_variables(
    tracegraph_capture: TelemetryCapture, workload: ModuleType
):
    spans = await _spans(tracegraph_capture, workload, 60)
    chosen: Chosen = {'service': ['tracegraph-capture'], 'graph': ['checkout'], 'node': ['Parse'], 'slow': ['1s']}
    panels = {
        title: interpolate(query, vars_, chosen) for title, query, vars_ in _tempo_panels('tracegraph-overview.json')
    }
    runs = _select(panels['Recent slow or failed runs'], spans)
    assert runs
    assert {s.attributes[attr.GRAPH_NAME] for s in runs} == {'checkout'}
    # Parse belongs to the ingest graph only: nothing matches checkout and Parse together.
    assert _select(panels['Recent failed node steps'], spans) == []
    other_service: Chosen = {**chosen, 'service': ['someone-else']}
    panels = {
        title: interpolate(query, vars_, other_service)
        for title, query, vars_ in _tempo_panels('tracegraph-overview.json')
    }
    assert _select(panels['Recent slow or failed runs'], spans) == []


async def test_node_trace_table_selects_one_node_in_every_graph(
    tracegraph_capture: TelemetryCapture, workload: ModuleType
):
    spans = await _spans(tracegraph_capture, workload, 80)
    ((title, query, vars_),) = _tempo_panels('tracegraph-node.json')
    assert title == 'Recent slow or failed steps of $node'
    audit = _select(
        interpolate(query, vars_, {'node': ['Audit'], 'service': 'All', 'graph': 'All', 'slow': ['0s']}), spans
    )
    # Audit is the node both graphs share; with a 0 s threshold every step of it is "slow".
    assert {s.attributes[attr.GRAPH_NAME] for s in audit} == {'checkout', 'ingest'}
    assert {s.name for s in audit} == {'run node Audit'}
    charge = _select(
        interpolate(query, vars_, {'node': ['Charge'], 'service': 'All', 'graph': 'All', 'slow': ['1s']}), spans
    )
    assert charge
    assert all(s.status.status_code is StatusCode.ERROR for s in charge)
    assert {s.attributes[attr.NODE_OUTCOME] for s in charge} == {'failed'}


def test_traceql_subset_parser_rejects_what_it_does_not_know():
    with pytest.raises(ValueError, match=r"unsupported TraceQL operator '&'"):
        parse_traceql('{ span.a & "b" }')
    with pytest.raises(ValueError, match=r"expected '\}', got 'x'"):
        parse_traceql('{ span.a = "b" x }')
    assert parse_traceql('{ (name = "a" || name = "b") && status = error } | select(span.x, span.y)').select == (
        'span.x',
        'span.y',
    )


async def test_node_durations_carry_exemplars_of_their_traces(workload: ModuleType):
    """What the node dashboard's exemplars rest on: node-duration points name traced runs (through OTLP and the
    Collector's OpenMetrics exposition, Prometheus stores them as exemplars)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    settings = InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=meter_provider)
    graph = Graph(
        nodes=(workload.Fetch, workload.Parse, workload.Store, workload.Audit), name='ingest', instrumentation=settings
    )
    deps = workload.Deps(rng=random.Random(3), failure_rate=0.0)
    for _ in range(5):
        await graph.run(workload.Fetch(), deps=deps)
    trace_ids = {span.context.trace_id for span in exporter.get_finished_spans() if span.context is not None}
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == attr.METRIC_NODE_DURATION
        for point in metric.data.data_points
        if isinstance(point, HistogramDataPoint)
    ]
    assert {str(p.attributes[attr.NODE_ID]) for p in points if p.attributes} == {'Fetch', 'Parse', 'Store', 'Audit'}
    exemplars = [e for p in points for e in p.exemplars]
    assert exemplars
    assert {e.trace_id for e in exemplars} <= trace_ids
    tracer_provider.shutdown()
    meter_provider.shutdown()

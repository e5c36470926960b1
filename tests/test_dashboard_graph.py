"""End to end with the real engine: tracegraph runs exported by the real OTLP/HTTP exporters into the dashboard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from serve_helpers import exporting_provider, running_server

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings, NodeTimeline
from tracegraph.dashboard.server.server import ServerThread


@dataclass
class Increment(BaseNode[None, None, int]):
    n: int

    async def run(self, ctx: GraphRunContext) -> Increment | Check | End[int]:
        return Increment(self.n + 1) if self.n < 3 else Check(self.n)


@dataclass
class Check(BaseNode[None, None, int]):
    n: int

    async def run(self, ctx: GraphRunContext) -> End[int]:
        if self.n == 42:
            raise ValueError('no 42 here')
        return End(self.n)


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with running_server() as srv:
        yield srv


@pytest.mark.anyio
async def test_real_graph_runs_read_back(server: ServerThread) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f'{server.url}/v1/metrics', timeout=10), export_interval_millis=3_600_000
    )
    meters = MeterProvider(metric_readers=[reader])
    with exporting_provider(server.url) as (provider, memory):
        settings = InstrumentationSettings(tracer_provider=provider, meter_provider=meters)
        counter = Graph(nodes=(Increment, Check), name='counter', instrumentation=settings)
        result = await counter.run(Increment(0))
        assert result.output == 3
        with pytest.raises(ValueError, match='^no 42 here$'):
            await counter.run(Check(42))
        sdk_timelines = NodeTimeline.all_from_spans(memory.get_finished_spans())
    try:
        assert meters.force_flush(10_000)
    finally:
        meters.shutdown()

    with httpx.Client(base_url=server.url, timeout=10) as c:
        runs = c.get('/api/runs', params={'graph': 'counter'}).json()
        assert [(r['steps'], r['outcome']) for r in runs] == [(1, 'failed'), (5, 'completed')]
        for listed, expected in zip(reversed(runs), sdk_timelines):
            detail = c.get(f'/api/runs/{listed["trace_id"]}').json()
            # the dashboard's timeline is the one the SDK's own spans give
            assert NodeTimeline.model_validate(detail['timeline']) == expected
            assert {n['span']['parent_span_id'] for n in detail['nodes']} == {detail['run_span']['span_id']}
        ok, failed = (
            NodeTimeline.model_validate(c.get(f'/api/runs/{r["trace_id"]}').json()['timeline']) for r in runs[::-1]
        )
        assert [(n.node_id, n.next_node) for n in ok.nodes] == [
            ('Increment', 'Increment'),
            ('Increment', 'Increment'),
            ('Increment', 'Increment'),
            ('Increment', 'Check'),
            ('Check', 'End'),
        ]
        assert failed.nodes[0].error is not None
        assert (failed.nodes[0].error.type, failed.nodes[0].error.message) == ('ValueError', 'no 42 here')
        edges = c.get('/api/graphs/counter/edges').json()
        assert edges == [
            {'source': 'Increment', 'target': 'Increment', 'count': 3},
            {'source': 'Check', 'target': 'End', 'count': 1},
            {'source': 'Increment', 'target': 'Check', 'count': 1},
            {'source': 'Increment', 'target': 'End', 'count': 0},  # declared by its return hint, never taken
        ]
        nodes = c.get('/api/graphs/counter/nodes').json()
        assert [(n['node_id'], n['count'], n['error_rate']) for n in nodes] == [
            ('Increment', 4, 0.0),
            ('Check', 2, 0.5),
        ]
    assert server.store is not None
    names = {r[0] for r in server.store.query('SELECT DISTINCT name FROM metrics')}
    assert {'tracegraph.node.duration', 'tracegraph.run.duration'} <= names

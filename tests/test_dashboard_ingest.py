"""OTLP ingest end to end: real SDK spans through the real OTLP/HTTP exporter (or raw bodies) into a live
dashboard on loopback, read back through the JSON API."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from serve_helpers import SampleRun, emit_run, exporting_provider, json_body, protobuf_body, running_server

from tracegraph import NodeTimeline
from tracegraph.dashboard.server.server import ServerThread

PROTO = {'Content-Type': 'application/x-protobuf'}
JSON = {'Content-Type': 'application/json'}


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with running_server() as srv:
        yield srv


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def assert_run_read_back(client: httpx.Client, run: SampleRun) -> None:
    """The run, as the API serves it, has the emitted nodes, durations, parents, nesting and outcome."""
    runs = client.get('/api/runs', params={'graph': run.graph}).json()
    listed = [r for r in runs if r['run_id'] == run.run_id]
    assert len(listed) == 1
    assert listed[0]['trace_id'] == run.trace_id
    assert listed[0]['steps'] == len(run.nodes)
    assert listed[0]['outcome'] == run.outcome
    total = sum(d for _, d in run.nodes) + (len(run.nodes) + 1) * 0.001
    assert listed[0]['duration'] == pytest.approx(total)

    detail = client.get(f'/api/runs/{run.trace_id}').json()
    timeline = NodeTimeline.model_validate(detail['timeline'])
    assert timeline.run_id == run.run_id
    assert timeline.graph == run.graph
    assert timeline.outcome == run.outcome
    assert [(n.node_id, n.duration) for n in timeline.nodes] == [(i, pytest.approx(d)) for i, d in run.nodes]
    assert [n.step for n in timeline.nodes] == list(range(1, len(run.nodes) + 1))
    assert detail['run_span']['span_id'] == run.run_span_id
    assert {n['span']['parent_span_id'] for n in detail['nodes']} == {run.run_span_id}
    assert [n['span']['span_id'] for n in detail['nodes']] == [n.span_id for n in timeline.nodes]
    nested = detail['nodes'][1]['children']
    assert [(c['name'], c['depth']) for c in nested] == [('call model', 1), ('http POST', 2)]
    assert nested[0]['parent_span_id'] == detail['nodes'][1]['span']['span_id']
    assert nested[1]['parent_span_id'] == nested[0]['span_id']
    assert nested[0]['attributes'] == {'model': 'm1'}
    assert nested[0]['duration'] == pytest.approx(0.006)
    assert detail['other_spans'] == []
    if run.outcome == 'failed':
        error = timeline.nodes[-1].error
        assert error is not None
        assert (error.type, error.message) == ('ValueError', 'the answer is not 42')
        assert error.traceback is not None
        assert 'raise ValueError(plan.error)' in error.traceback
        assert detail['nodes'][-1]['span']['status'] == 'ERROR'
    else:
        assert all(n.error is None for n in timeline.nodes)
        assert timeline.nodes[-1].next_node == 'End'


@pytest.mark.parametrize('use_gzip', [False, True], ids=['plain', 'gzip'])
def test_real_exporter_protobuf(server: ServerThread, client: httpx.Client, use_gzip: bool) -> None:
    with exporting_provider(server.url, gzip=use_gzip) as (provider, _):
        ok = emit_run(provider, graph='pipeline')
        failed = emit_run(provider, graph='pipeline', fail=True)
    assert_run_read_back(client, ok)
    assert_run_read_back(client, failed)
    assert server.store is not None
    assert server.store.span_count() == 2 * 6


@pytest.mark.parametrize('use_gzip', [False, True], ids=['plain', 'gzip'])
def test_json_body(client: httpx.Client, use_gzip: bool) -> None:
    with exporting_provider() as (provider, memory):
        run = emit_run(provider, graph='json-graph', fail=True)
    body = json_body(memory.get_finished_spans())
    headers = dict(JSON)
    if use_gzip:
        body = gzip.compress(body)
        headers['Content-Encoding'] = 'gzip'
    reply = client.post('/v1/traces', content=body, headers=headers)
    assert (reply.status_code, reply.headers['content-type'], reply.json()) == (200, 'application/json', {})
    assert_run_read_back(client, run)


def test_protobuf_reply_is_an_export_response(client: httpx.Client) -> None:
    with exporting_provider() as (provider, memory):
        emit_run(provider)
    reply = client.post('/v1/traces', content=protobuf_body(memory.get_finished_spans()), headers=PROTO)
    assert reply.status_code == 200
    assert reply.headers['content-type'] == 'application/x-protobuf'
    assert ExportTraceServiceResponse.FromString(reply.content) == ExportTraceServiceResponse()


def test_duplicates_are_stored_once(server: ServerThread, client: httpx.Client) -> None:
    with exporting_provider() as (provider, memory):
        run = emit_run(provider)
    spans = memory.get_finished_spans()
    body = protobuf_body(spans)
    for _ in range(3):
        assert client.post('/v1/traces', content=body, headers=PROTO).status_code == 200
    # the same spans again, twice within one request, and in the JSON encoding
    doubled = ExportTraceServiceRequest.FromString(body)
    doubled.resource_spans.extend(ExportTraceServiceRequest.FromString(body).resource_spans)
    assert client.post('/v1/traces', content=doubled.SerializeToString(), headers=PROTO).status_code == 200
    assert client.post('/v1/traces', content=json_body(spans), headers=JSON).status_code == 200
    assert server.store is not None
    assert server.store.span_count() == len(spans) == 6
    assert [r['run_id'] for r in client.get('/api/runs').json()] == [run.run_id]
    detail = client.get(f'/api/runs/{run.trace_id}').json()
    assert len(detail['timeline']['nodes']) == 3


def test_invalid_ids_are_rejected_in_partial_success(server: ServerThread, client: httpx.Client) -> None:
    with exporting_provider() as (provider, memory):
        emit_run(provider)
    request = ExportTraceServiceRequest.FromString(protobuf_body(memory.get_finished_spans()))
    bad = request.resource_spans[0].scope_spans[0].spans[0]
    bad.trace_id = b'\x00' * 16
    reply = client.post('/v1/traces', content=request.SerializeToString(), headers=PROTO)
    assert reply.status_code == 200
    partial = ExportTraceServiceResponse.FromString(reply.content).partial_success
    assert (partial.rejected_spans, partial.error_message) == (1, f'span {bad.name!r} has an invalid trace or span id')
    assert server.store is not None
    assert server.store.span_count() == 5


def test_spans_outside_graph_runs_are_kept(server: ServerThread, client: httpx.Client) -> None:
    with exporting_provider(server.url) as (provider, _):
        tracer = provider.get_tracer('plain')
        with tracer.start_as_current_span('GET /health'):
            pass
    assert server.store is not None
    assert server.store.span_count() == 1
    (listed,) = client.get('/api/runs').json()  # a trace of other instrumentation: listed as a trace
    assert (listed['kind'], listed['name'], listed['graph'], listed['steps']) == ('trace', 'GET /health', '', None)
    assert client.get('/api/runs', params={'kind': 'run'}).json() == []


def test_metrics_from_the_real_exporter(server: ServerThread) -> None:
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f'{server.url}/v1/metrics', timeout=10), export_interval_millis=3_600_000
    )
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter('tracegraph')
    meter.create_histogram('tracegraph.node.duration', unit='s').record(0.25, {'tracegraph.node.id': 'A'})
    meter.create_counter('tracegraph.run.steps').add(3, {'tracegraph.graph.name': 'g'})
    assert server.store is not None
    try:
        assert provider.force_flush(10_000)
        rows = server.store.query('SELECT name, type, value, count, sum, attributes FROM metrics ORDER BY name')
    finally:
        provider.shutdown()
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ('tracegraph.node.duration', 'histogram', None, 1, 0.25),
        ('tracegraph.run.steps', 'sum', 3.0, None, None),
    ]
    assert rows[0][5] == '{"tracegraph.node.id":"A"}'

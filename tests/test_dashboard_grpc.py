"""OTLP/gRPC ingest of `tracegraph serve`: the SDK's gRPC exporters, tokens, bad bodies, partial success, faults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import grpc
import httpx
import pytest
from exporters_helpers import make_spans
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from serve_helpers import crafted_body, crafted_run, emit_run

from tracegraph.dashboard.server.server import ServerThread

TRACES = '/opentelemetry.proto.collector.trace.v1.TraceService/Export'


@pytest.fixture
def server() -> Iterator[ServerThread]:
    with ServerThread(grpc_port=0, token='s3cret') as s:
        yield s


def raw_export(server: ServerThread, body: bytes, token: str | None = 's3cret') -> Any:
    """Send `body` as it is to TraceService/Export; the reply, or the `grpc.RpcError`."""
    with grpc.insecure_channel(server.grpc_url.removeprefix('http://')) as channel:
        # grpc's stubs leave a generic call's types open: bytes go out as they are
        call: Any = cast(Any, channel).unary_unary(TRACES, response_deserializer=ExportTraceServiceResponse.FromString)
        metadata = (('authorization', f'Bearer {token}'),) if token else ()
        try:
            return call(body, metadata=metadata, timeout=10)
        except grpc.RpcError as exc:
            return exc


def test_the_sdk_grpc_exporters_deliver_spans_and_metrics(server: ServerThread) -> None:
    assert server.store is not None
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=server.grpc_url, insecure=True, headers={'authorization': 'Bearer s3cret'})
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run = emit_run(provider, graph='over-grpc', fail=True)
    provider.shutdown()
    (listed,) = server.store.runs()
    assert (listed.run_id, listed.graph, listed.outcome, listed.steps) == (run.run_id, 'over-grpc', 'failed', 3)
    assert server.store.span_count() == 6  # run, three nodes and the two nested spans
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=server.grpc_url, insecure=True, headers={'authorization': 'Bearer s3cret'}),
        export_interval_millis=60_000,
    )
    meters = MeterProvider(metric_readers=[reader])
    meters.get_meter('t').create_counter('tracegraph.run.steps').add(3, {'tracegraph.graph.name': 'over-grpc'})
    assert meters.force_flush(10_000)
    meters.shutdown()
    assert server.store.query("SELECT DISTINCT name, value FROM metrics WHERE name = 'tracegraph.run.steps'") == [
        ('tracegraph.run.steps', 3.0)
    ]


def test_wrong_grpc_tokens_count_toward_the_limit_and_the_right_one_still_gets_in(server: ServerThread) -> None:
    from tracegraph.dashboard.auth import MAX_FAILURES

    body = crafted_body(*crafted_run())
    codes = [cast(grpc.RpcError, raw_export(server, body, token=f'guess{i}')).code() for i in range(MAX_FAILURES + 2)]
    assert codes[: MAX_FAILURES - 1] == [grpc.StatusCode.UNAUTHENTICATED] * (MAX_FAILURES - 1)
    assert set(codes[MAX_FAILURES - 1 :]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}  # one limit for both ports
    with httpx.Client(base_url=server.url) as c:
        assert c.get('/api/runs', headers={'Authorization': 'Bearer guess-http'}).status_code == 429
    assert isinstance(raw_export(server, body), ExportTraceServiceResponse)  # the right token, at once


def test_a_wrong_or_missing_token_is_unauthenticated(server: ServerThread) -> None:
    body = crafted_body(*crafted_run())
    for token in ('wrong', None):
        error = raw_export(server, body, token=token)
        assert isinstance(error, grpc.RpcError)
        assert (error.code(), error.details()) == (
            grpc.StatusCode.UNAUTHENTICATED,
            'Missing or wrong bearer token: send authorization: Bearer TOKEN.',
        )
    exporter = OTLPSpanExporter(endpoint=server.grpc_url, insecure=True, headers={'authorization': 'Bearer no'})
    assert exporter.export(make_spans()) == SpanExportResult.FAILURE  # UNAUTHENTICATED is not retried
    assert server.store is not None
    assert server.store.span_count() == 0


def test_bad_bodies_are_invalid_argument_and_good_spans_beside_bad_ones_are_kept(server: ServerThread) -> None:
    error = raw_export(server, b'\xff\xff\xff')
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert 'Malformed protobuf body' in str(error.details())
    good = crafted_run(nodes=2)
    bad = crafted_run()
    bad[0].trace_id = b'\x00' * 16  # an invalid trace id: this span cannot be stored
    reply = raw_export(server, crafted_body(*good, bad[0]))
    assert isinstance(reply, ExportTraceServiceResponse)
    assert (reply.partial_success.rejected_spans, reply.partial_success.error_message) == (
        1,
        "span 'run graph g' has an invalid trace or span id",
    )
    assert server.store is not None
    assert server.store.span_count() == 3


def test_a_store_failure_is_unavailable_so_exporters_retry(server: ServerThread) -> None:
    assert server.store is not None
    server.store._con.execute('DROP TABLE spans')  # pyright: ignore[reportPrivateUsage]  # the fault
    error = raw_export(server, crafted_body(*crafted_run()))
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert str(error.details()).startswith('Could not store the batch: ')

"""`configure()` sending real graph runs over OTLP/HTTP and OTLP/gRPC to real receivers on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import urllib.request
from pathlib import Path

import pytest
from exporters_helpers import (
    Explode,
    Increment,
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    Receiver,
    Reply,
    counter_graph,
    free_port,
    wait_until,
)

from tracegraph.exporters import MetricsOptions, SpoolOptions, Telemetry, configure
from tracegraph.tracing import attributes as attr

pytestmark = pytest.mark.anyio


def _receiver(kind: str) -> Receiver:
    return OtlpHttpReceiver() if kind == 'http' else OtlpGrpcReceiver()


async def _run_counter_and_explode(telemetry: Telemetry) -> None:
    graph = counter_graph(telemetry.tracer_provider, telemetry.meter_provider)
    result = await graph.run(Increment(0))
    assert result.output == 3
    with pytest.raises(ValueError, match='boom'):
        await graph.run(Explode())
    assert telemetry.force_flush(10_000)


@pytest.mark.parametrize('kind', ['http', 'grpc'])
async def test_spans_resource_and_metrics_reach_the_receiver(
    kind: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv('OTEL_RESOURCE_ATTRIBUTES', 'deployment.environment=test,team=graphs')
    with _receiver(kind) as receiver:
        protocol = 'grpc' if kind == 'grpc' else 'http/protobuf'
        with configure(
            service_name='billing',
            service_version='1.2.3',
            endpoint=receiver.endpoint,
            protocol=protocol,
            headers={'x-api-key': 'secret-1'},
            set_global=False,
        ) as telemetry:
            await _run_counter_and_explode(telemetry)

    spans = receiver.spans()
    names = sorted(s.span.name for s in spans)
    assert names == ['run graph counter'] * 2 + ['run node Explode'] + ['run node Increment'] * 4
    runs = {s.attributes[attr.RUN_ID]: s for s in spans if attr.NODE_ID not in s.attributes}
    for span in spans:
        if attr.NODE_ID in span.attributes:
            run = runs[span.attributes[attr.RUN_ID]]
            assert span.parent_id == run.span_id
            assert span.span.trace_id == run.span.trace_id
    ok_run = next(s for s in runs.values() if s.attributes[attr.RUN_OUTCOME] == 'completed')
    assert ok_run.attributes[attr.RUN_STEPS] == 4
    assert ok_run.attributes[attr.GRAPH_NAME] == 'counter'
    steps = sorted(
        (s.attributes[attr.NODE_STEP], s.attributes[attr.NODE_NEXT])
        for s in spans
        if s.attributes.get(attr.NODE_ID) == 'Increment'
    )
    assert steps == [(1, 'Increment'), (2, 'Increment'), (3, 'Increment'), (4, 'End')]
    failed = next(s for s in spans if s.span.name == 'run node Explode')
    assert failed.span.status.code == 2  # STATUS_CODE_ERROR
    assert [e.name for e in failed.span.events] == ['exception']
    assert failed.scope == attr.INSTRUMENTATION_SCOPE

    resource = spans[0].resource
    assert resource['service.name'] == 'billing'
    assert resource['service.version'] == '1.2.3'
    assert resource['deployment.environment'] == 'test'
    assert resource['team'] == 'graphs'
    assert resource['telemetry.sdk.language'] == 'python'
    assert resource['telemetry.distro.name'] == 'tracegraph'
    assert receiver.headers[0]['x-api-key'] == 'secret-1'

    assert {attr.METRIC_NODE_DURATION, attr.METRIC_RUN_DURATION, attr.METRIC_RUN_STEPS} <= receiver.metric_names()
    # cumulative temporality: the last export holds the totals
    node_points = list(receiver.metrics(attr.METRIC_NODE_DURATION)[-1].histogram.data_points)
    assert {tuple(p.explicit_bounds) for p in node_points} == {attr.DURATION_BUCKETS}
    increments = [
        p for p in node_points if {kv.key: kv.value.string_value for kv in p.attributes}[attr.NODE_ID] == 'Increment'
    ]
    assert sum(p.count for p in increments) == 4
    steps_total = sum(p.as_int for p in receiver.metrics(attr.METRIC_RUN_STEPS)[-1].sum.data_points)
    assert steps_total == 5


@pytest.mark.parametrize('kind', ['http', 'grpc'])
async def test_standard_environment_variables_are_the_fallback(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with _receiver(kind) as receiver:
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_ENDPOINT', receiver.endpoint)
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_PROTOCOL', 'grpc' if kind == 'grpc' else 'http/protobuf')
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_HEADERS', 'x-tenant=acme,authorization=Bearer%20t0k')
        monkeypatch.setenv('OTEL_SERVICE_NAME', 'from-env')
        with configure(set_global=False, metrics=False) as telemetry:
            await _run_counter_and_explode(telemetry)
    assert {s.resource['service.name'] for s in receiver.spans()} == {'from-env'}
    assert receiver.headers[0]['x-tenant'] == 'acme'
    assert receiver.headers[0]['authorization'] == 'Bearer t0k'
    assert len(receiver.spans()) == 7


async def test_signal_specific_endpoint_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpHttpReceiver() as receiver:
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_ENDPOINT', 'http://127.0.0.1:9')  # overridden below
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', f'{receiver.endpoint}/v1/traces')
        with configure(set_global=False, metrics=False) as telemetry:
            await _run_counter_and_explode(telemetry)
    assert len(receiver.spans()) == 7


@pytest.mark.parametrize('kind', ['http', 'grpc'])
async def test_configure_with_a_spool(kind: str, tmp_path: Path) -> None:
    with (
        _receiver(kind) as receiver,
        configure(
            endpoint=receiver.endpoint,
            protocol='grpc' if kind == 'grpc' else 'http/protobuf',
            spool=SpoolOptions(directory=tmp_path),
            metrics=False,
            set_global=False,
        ) as telemetry,
    ):
        await _run_counter_and_explode(telemetry)
        assert wait_until(lambda: len(receiver.spans()) == 7)
        assert telemetry.spool is not None
        assert telemetry.spool.pending_spans == 0
    assert {s.span.name for s in receiver.spans()} == {'run graph counter', 'run node Increment', 'run node Explode'}


async def test_prometheus_endpoint_serves_the_duration_buckets() -> None:
    with configure(
        set_global=False, console=False, file=None, endpoint=None, metrics=MetricsOptions(prometheus_port=0)
    ) as telemetry:
        assert telemetry.prometheus_url is not None
        assert telemetry.prometheus_url.startswith('http://127.0.0.1:')
        graph = counter_graph(telemetry.tracer_provider, telemetry.meter_provider)
        await graph.run(Increment(0))
        with urllib.request.urlopen(telemetry.prometheus_url, timeout=5) as response:
            text = response.read().decode()
    labels = 'tracegraph_graph_name="counter",tracegraph_node_id="Increment",tracegraph_node_outcome="completed"'
    for bound in ('0.0001', '0.00025', '600.0', '+Inf'):
        line = next(
            ln for ln in text.splitlines() if ln.startswith(f'tracegraph_node_duration_seconds_bucket{{le="{bound}"')
        )
        assert labels in line
    count = next(ln for ln in text.splitlines() if ln.startswith('tracegraph_node_duration_seconds_count{'))
    assert count.endswith(' 4.0')
    assert 'tracegraph_run_duration_seconds_bucket{le="600.0"' in text
    assert 'tracegraph_run_steps_total{' in text


@pytest.mark.parametrize('kind', ['http', 'grpc'])
async def test_without_a_spool_a_short_outage_is_bridged_by_the_sdk_retries(
    kind: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind == 'grpc' and os.environ.get('TRACEGRAPH_TEST_FRESH_PROCESS') != '1':
        # gRPC state that earlier tests leave in this process (their gRPC servers) makes the exporter give up on its
        # first refused attempt without a retry: this case runs in a fresh interpreter.
        here = f'{__file__}::test_without_a_spool_a_short_outage_is_bridged_by_the_sdk_retries[grpc]'
        env = {**os.environ, 'TRACEGRAPH_TEST_FRESH_PROCESS': '1'}
        proc = subprocess.run(
            [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', here],
            capture_output=True,
            text=True,
            env=env,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return
    # The deadline of one export, retries included: after other tests ran gRPC servers in this process, the gRPC
    # exporter's first attempt at a refused port was seen to take most of the default 10 s, leaving no retry.
    monkeypatch.setenv('OTEL_EXPORTER_OTLP_TIMEOUT', '60')
    port = free_port()
    endpoint = f'http://127.0.0.1:{port}'
    protocol = 'grpc' if kind == 'grpc' else 'http/protobuf'
    # in process: the SDK's retries (the export process's are tested in test_exporters_offload)
    telemetry = configure(endpoint=endpoint, protocol=protocol, metrics=False, set_global=False, export_process=False)
    with telemetry:
        graph = counter_graph(telemetry.tracer_provider)
        await graph.run(Increment(0))
        results: list[bool] = []
        flushed = threading.Thread(target=lambda: results.append(telemetry.force_flush()))
        flushed.start()
        # the first attempt met the closed port (gRPC may wait for its connection first: slow on a loaded machine)
        assert wait_until(lambda: 'retrying in' in caplog.text, timeout=60), caplog.text[-3000:]
        receiver = OtlpHttpReceiver(port) if kind == 'http' else OtlpGrpcReceiver(port)
        with receiver:
            flushed.join(30)
            assert not flushed.is_alive() and results == [True]
            assert len(receiver.spans()) == 5


_GLOBAL_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from exporters_helpers import Increment, counter_graph
    from tracegraph.exporters import configure

    configure(endpoint=sys.argv[1], service_name='child')
    asyncio.run(counter_graph().run(Increment(0)))
    # no force_flush and no shutdown: the handle must flush at interpreter exit
    """
)


@pytest.mark.parametrize('kind', ['http', 'grpc'])
def test_set_global_and_flush_at_exit(kind: str) -> None:
    with _receiver(kind) as receiver:
        env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}
        if kind == 'grpc':
            env['OTEL_EXPORTER_OTLP_PROTOCOL'] = 'grpc'
        done = subprocess.run(
            [sys.executable, '-c', _GLOBAL_CHILD, receiver.endpoint],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr == ''
    assert sorted({s.span.name for s in receiver.spans()}) == ['run graph counter', 'run node Increment']
    assert len(receiver.spans()) == 5
    assert attr.METRIC_NODE_DURATION in receiver.metric_names()


def test_a_stale_keep_alive_connection_is_replaced_without_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    from exporters_helpers import OtlpHttpReceiver, make_spans
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from tracegraph.exporters.otlp.senders import HttpSender
    from tracegraph.exporters.settings import resolve_target

    with OtlpHttpReceiver() as receiver:
        receiver.drop_idle_connections = True  # the backend closes every connection after its answer
        target = resolve_target(endpoint=receiver.endpoint, protocol='http/protobuf', headers=None, signal='traces')
        sender = HttpSender(target, timeout=5)
        results = [sender.send(encode_spans(make_spans()).SerializeToString()) for _ in range(3)]
        sender.close()
        assert [r.outcome for r in results] == ['ok', 'ok', 'ok']
        assert len(receiver.spans()) == 12


def test_spans_dropped_by_a_full_queue_or_a_failed_export_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a spool: a tiny queue in front of a slow backend drops spans, and a down backend fails exports; the
    Telemetry handle and the `tracegraph.export.dropped` counter account for every span that did not arrive.
    (`OTEL_BSP_*` set: `configure()` exports in process, through the batch processor they tune.)"""
    from exporters_helpers import Increment, OtlpHttpReceiver, Reply, counter_graph
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from tracing_helpers import points_of

    from tracegraph.exporters import configure

    monkeypatch.setenv('OTEL_BSP_MAX_QUEUE_SIZE', '8')
    monkeypatch.setenv('OTEL_BSP_MAX_EXPORT_BATCH_SIZE', '4')
    with OtlpHttpReceiver() as receiver:
        receiver.script(Reply(delay=0.3), Reply(status=400))  # one slow answer, then one refused batch
        telemetry = configure(endpoint=receiver.endpoint, set_global=False, metrics=True)
        try:
            graph = counter_graph(tracer_provider=telemetry.tracer_provider)
            for _ in range(20):
                graph.run_sync(Increment(0))  # 20 runs × 5 spans, far faster than the backend takes them
            assert telemetry.force_flush(20_000) is not None
            dropped = telemetry.dropped_spans
            assert dropped.get('queue_full', 0) > 0 and dropped.get('export_failed', 0) > 0
            assert len(receiver.spans()) + sum(dropped.values()) == 100
            reader = InMemoryMetricReader()
            telemetry.drops.register(MeterProvider(metric_readers=[reader]))
            points = {p.attributes['reason']: p.value for p in points_of(reader, 'tracegraph.export.dropped')}
            assert points == dropped
        finally:
            telemetry.shutdown()


async def test_the_sdk_exporter_variables_apply_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """configure()'s default is the SDK's exporter: the compression and timeout variables reach it."""
    with OtlpHttpReceiver() as receiver:
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_ENDPOINT', receiver.endpoint)
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_COMPRESSION', 'gzip')
        with configure(set_global=False, metrics=False) as telemetry:
            await _run_counter_and_explode(telemetry)
        assert len(receiver.spans()) == 7
        assert {h.get('content-encoding') for h in receiver.headers} == {'gzip'}
        assert all(body[:2] == b'\x1f\x8b' for body in receiver.bodies)  # gzip's magic on the wire

    with OtlpHttpReceiver() as slow:
        slow.script(*[Reply(delay=3)] * 10)
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_ENDPOINT', slow.endpoint)
        monkeypatch.setenv('OTEL_EXPORTER_OTLP_TIMEOUT', '0.5')  # seconds, in SDK 1.45's reading
        with configure(set_global=False, metrics=False) as telemetry:
            await _run_counter_and_explode(telemetry)
            telemetry.force_flush()
            assert wait_until(lambda: telemetry.dropped_spans.get('export_failed', 0) == 7, timeout=20)

"""The durable spool against real OTLP receivers on loopback: faults, restarts, the disk bound, corruption."""

from __future__ import annotations

import logging
import struct
import tracemalloc
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from exporters_helpers import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    Reply,
    free_port,
    make_spans,
    wait_until,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from tracing_helpers import points_of

from tracegraph.exporters import SpoolOptions, configure
from tracegraph.exporters.otlp.senders import parse_retry_after
from tracegraph.exporters.settings import resolve_target
from tracegraph.exporters.spool.exporter import METRIC_SPOOL_DROPPED, SpoolSpanExporter


def _spool(directory: Path, endpoint: str, protocol: str = 'http/protobuf', **kwargs: object) -> SpoolSpanExporter:
    target = resolve_target(endpoint=endpoint, protocol=protocol, headers={'x-team': 'graphs'}, signal='traces')
    options: dict[str, object] = {'initial_backoff': 0.02, 'max_backoff': 0.1, 'fsync': False, **kwargs}
    return SpoolSpanExporter(directory, target=target, **options)  # pyright: ignore[reportArgumentType]


def _ids(spans: list[ReadableSpan]) -> set[str]:
    return {f'{s.context.span_id:016x}' for s in spans if s.context}


def _export_in_batches(spool: SpoolSpanExporter, spans: list[ReadableSpan], size: int = 4) -> None:
    for i in range(0, len(spans), size):
        spool.export(spans[i : i + size])


@pytest.mark.parametrize('kind', ['http', 'grpc'])
def test_delivers_and_deletes_segments(tmp_path: Path, kind: str) -> None:
    spans = make_spans(runs=3, nodes=3)
    receiver = OtlpHttpReceiver() if kind == 'http' else OtlpGrpcReceiver()
    with receiver:
        spool = _spool(tmp_path, receiver.endpoint, 'grpc' if kind == 'grpc' else 'http/protobuf')
        _export_in_batches(spool, spans)
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.span_ids() == _ids(spans)
    assert len(receiver.spans()) == len(spans)  # no duplicates without faults
    assert receiver.headers[0]['x-team'] == 'graphs'
    assert spool.pending_spans == 0
    assert list(tmp_path.glob('*.seg')) == [] or spool.disk_bytes > 0  # only the open segment may remain
    assert spool.dropped_spans == {}


@pytest.mark.parametrize('kind', ['http', 'grpc'])
def test_connection_refused_then_backend_comes_up(tmp_path: Path, kind: str) -> None:
    port = free_port()
    spans = make_spans(runs=5, nodes=2)
    spool = _spool(tmp_path, f'http://127.0.0.1:{port}', 'grpc' if kind == 'grpc' else 'http/protobuf')
    _export_in_batches(spool, spans)
    assert wait_until(lambda: spool.failed_requests >= 2)
    assert spool.pending_spans == len(spans)
    receiver = OtlpHttpReceiver(port) if kind == 'http' else OtlpGrpcReceiver(port)
    with receiver:
        assert spool.force_flush(15_000)
        spool.shutdown()
    assert receiver.span_ids() == _ids(spans)


@pytest.mark.parametrize('kind', ['http', 'grpc'])
def test_server_errors_are_retried(tmp_path: Path, kind: str) -> None:
    spans = make_spans(runs=2)
    receiver = OtlpHttpReceiver() if kind == 'http' else OtlpGrpcReceiver()
    with receiver:
        receiver.script(
            Reply(status=500, grpc_code=grpc.StatusCode.INTERNAL),
            Reply(status=500, grpc_code=grpc.StatusCode.UNKNOWN),
            Reply(status=502, grpc_code=grpc.StatusCode.UNAVAILABLE),
        )
        spool = _spool(tmp_path, receiver.endpoint, 'grpc' if kind == 'grpc' else 'http/protobuf')
        spool.export(spans)
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.attempts == 4
    assert spool.failed_requests == 3
    assert receiver.span_ids() == _ids(spans)


@pytest.mark.parametrize('status', [503, 429])
def test_retry_after_is_honoured(tmp_path: Path, status: int) -> None:
    spans = make_spans()
    with OtlpHttpReceiver() as receiver:
        receiver.script(Reply(status=status, headers={'Retry-After': '1'}))
        spool = _spool(tmp_path, receiver.endpoint)
        spool.export(spans)
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.attempts == 2
    # the backoff alone would have retried after at most 0.1 s
    assert receiver.attempt_times[1] - receiver.attempt_times[0] >= 0.95
    assert receiver.span_ids() == _ids(spans)


def test_grpc_retry_info_is_honoured(tmp_path: Path) -> None:
    spans = make_spans()
    with OtlpGrpcReceiver() as receiver:
        receiver.script(Reply(grpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_delay=0.6))
        spool = _spool(tmp_path, receiver.endpoint, 'grpc')
        spool.export(spans)
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.attempts == 2
    assert receiver.attempt_times[1] - receiver.attempt_times[0] >= 0.55
    assert receiver.span_ids() == _ids(spans)


@pytest.mark.parametrize('kind', ['http', 'grpc'])
def test_slow_backend_times_out_and_everything_still_arrives(tmp_path: Path, kind: str) -> None:
    spans = make_spans(runs=4)
    receiver = OtlpHttpReceiver() if kind == 'http' else OtlpGrpcReceiver()
    with receiver:
        receiver.script(Reply(delay=0.6), Reply(delay=0.6))
        spool = _spool(tmp_path, receiver.endpoint, 'grpc' if kind == 'grpc' else 'http/protobuf', request_timeout=0.2)
        _export_in_batches(spool, spans)
        assert spool.force_flush(15_000)
        spool.shutdown()
        assert wait_until(lambda: receiver.span_ids() == _ids(spans))
    assert spool.failed_requests >= 2


def test_bad_request_is_dropped_counted_and_the_rest_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, rest = make_spans(), make_spans(runs=2)
    reader = InMemoryMetricReader()
    with OtlpHttpReceiver() as receiver:
        receiver.script(Reply(status=400))
        spool = _spool(tmp_path, receiver.endpoint, meter_provider=MeterProvider(metric_readers=[reader]))
        spool.export(first)
        spool.export(rest)
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.span_ids() == _ids(rest)
    assert spool.dropped_spans == {'rejected': len(first)}
    assert f'backend refused {len(first)} spans for good (HTTP 400 Bad Request)' in caplog.text
    points = [(dict(p.attributes or {}), p.value) for p in points_of(reader, METRIC_SPOOL_DROPPED)]
    assert points == [({'reason': 'rejected'}, len(first))]


def test_a_record_refused_for_long_moves_behind_newer_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stuck, newer = make_spans(graph='stuck'), make_spans(runs=3, graph='fine')
    stuck_ids = {s.context.trace_id.to_bytes(16, 'big') for s in stuck if s.context}
    with OtlpHttpReceiver() as receiver:
        receiver.refuse = lambda request: any(
            span.trace_id in stuck_ids for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
        )
        spool = _spool(tmp_path, receiver.endpoint, record_deadline=0.3)
        spool.export(stuck)
        _export_in_batches(spool, newer)
        # The receiver counts a batch before it answers, so the spool acknowledges the last one a moment later.
        assert wait_until(lambda: receiver.span_ids() == _ids(newer) and spool.pending_spans == len(stuck))
        assert spool.pending_spans == len(stuck)  # still kept and retried, not lost
        assert spool.requeued_records >= 1
        assert spool.dropped_spans == {}
        receiver.refuse = lambda _request: False
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.span_ids() == _ids(newer) | _ids(stuck)
    assert 'newer batches are sent first, these are retried after them' in caplog.text


def test_records_moved_during_an_outage_are_each_delivered_once(tmp_path: Path) -> None:
    spans = make_spans(runs=4)
    with OtlpHttpReceiver() as receiver:
        receiver.refuse = lambda _request: True
        spool = _spool(tmp_path, receiver.endpoint, record_deadline=0.05)
        _export_in_batches(spool, spans, size=3)
        assert wait_until(lambda: spool.requeued_records >= 3)
        assert spool.pending_spans == len(spans)
        receiver.refuse = lambda _request: False
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.span_ids() == _ids(spans)
    assert receiver.span_count == len(spans)  # moved, never copied


def test_a_record_being_moved_is_counted_once(tmp_path: Path) -> None:
    """A moved record is stored again before its old copy is acknowledged; `pending_spans` never counts both."""
    spans = make_spans(runs=4)
    with OtlpHttpReceiver() as receiver:
        receiver.refuse = lambda _request: True
        spool = _spool(
            tmp_path, receiver.endpoint, record_deadline=0.0, initial_backoff=0.001, max_backoff=0.001, fsync=True
        )
        _export_in_batches(spool, spans, size=3)
        seen: set[int] = set()
        while spool.requeued_records < 60:
            seen.add(spool.pending_spans)
        assert seen == {len(spans)}
        receiver.refuse = lambda _request: False
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.span_count == len(spans)


def test_restart_sends_what_was_left(tmp_path: Path) -> None:
    port = free_port()
    spans = make_spans(runs=6, nodes=3)
    first = _spool(tmp_path, f'http://127.0.0.1:{port}')
    _export_in_batches(first, spans, size=5)
    first.shutdown()
    assert first.pending_spans == len(spans)
    assert sorted(p.name for p in tmp_path.glob('*.seg')) == ['0000000000000001.seg']
    with OtlpHttpReceiver(port) as receiver:
        # (not `second.pending_spans` here: its sender may already be delivering to the receiver)
        second = _spool(tmp_path, receiver.endpoint)
        assert second.force_flush(10_000)
        second.shutdown()
    assert receiver.span_ids() == _ids(spans)
    assert len(receiver.spans()) == len(spans)
    assert list(tmp_path.glob('*.seg')) == []


def test_restart_after_partial_delivery_resumes_at_the_cursor(tmp_path: Path) -> None:
    spans = make_spans(runs=4, nodes=2)
    with OtlpHttpReceiver() as receiver:
        # the first two requests succeed, then the backend fails until the process stops
        receiver.script(Reply(), Reply(), *[Reply(status=503) for _ in range(1000)])
        first = _spool(tmp_path, receiver.endpoint)
        _export_in_batches(first, spans, size=3)
        assert wait_until(lambda: first.failed_requests >= 1)
        first.shutdown()
        delivered = receiver.span_ids()
        assert len(delivered) == 6
        with receiver.lock:
            receiver.replies.clear()
        second = _spool(tmp_path, receiver.endpoint)
        assert second.pending_spans == len(spans) - 6
        assert second.force_flush(10_000)
        second.shutdown()
    assert receiver.span_ids() == _ids(spans)
    assert len(receiver.spans()) == len(spans)  # the cursor kept acknowledged records from being sent again


def test_disk_bound_drops_oldest_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, 'tracegraph.exporters.spool.exporter')
    batch = make_spans(runs=10, nodes=4)
    record = len(encode_spans(batch).SerializeToString()) + 16
    reader = InMemoryMetricReader()
    spool = _spool(
        tmp_path,
        f'http://127.0.0.1:{free_port()}',
        max_bytes=record * 10,
        segment_bytes=record * 3,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    for _ in range(25):
        spool.export(batch)
    assert spool.disk_bytes <= record * 10
    dropped = spool.dropped_spans['spool_full']
    assert dropped > 0
    assert dropped % len(batch) == 0
    assert spool.pending_spans + dropped == 25 * len(batch)
    assert 'disk bound reached (spool_full): dropped' in caplog.text
    total = sum(p.value for p in points_of(reader, METRIC_SPOOL_DROPPED))
    assert total == dropped
    spool.shutdown()


def test_memory_stays_bounded_while_the_backend_is_down(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, 'tracegraph.exporters.spool.exporter')  # pytest keeps log records in memory
    batch = make_spans(runs=20, nodes=5)
    spool = _spool(tmp_path, f'http://127.0.0.1:{free_port()}', max_bytes=1_000_000)
    spool.export(batch)  # warm up imports and caches before measuring
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(150):  # about 5 MB of spans, five times the disk bound
            spool.export(batch)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    # What the spool's own code holds on to (one-off growth of interpreter tables, such as the interned-string
    # dict a path lookup may resize, is not the spool's and is left out).
    ours = [tracemalloc.Filter(True, '*tracegraph*'), tracemalloc.Filter(True, '*opentelemetry*')]
    grown = sum(stat.size_diff for stat in after.filter_traces(ours).compare_to(before.filter_traces(ours), 'filename'))
    assert spool.disk_bytes <= 1_000_000
    assert spool.dropped_spans['spool_full'] > 0
    assert grown < 1_000_000, (grown, spool.memory_spans, spool.dropped_spans)
    spool.shutdown()


def test_a_batch_larger_than_the_bound_is_dropped_and_counted(tmp_path: Path) -> None:
    spans = make_spans(runs=5)
    spool = _spool(tmp_path, f'http://127.0.0.1:{free_port()}', max_bytes=500)
    spool.export(spans)
    assert spool.dropped_spans == {'batch_too_large': len(spans)}
    assert spool.pending_spans == 0
    spool.shutdown()


def test_torn_record_at_the_end_of_a_segment_is_skipped_and_counted(tmp_path: Path) -> None:
    good, torn = make_spans(runs=2), make_spans()
    payload = encode_spans(good).SerializeToString()
    torn_payload = encode_spans(torn).SerializeToString()
    header = struct.Struct('>4sIII')
    segment = header.pack(b'TGS1', len(payload), zlib.crc32(payload), len(good)) + payload
    segment += header.pack(b'TGS1', len(torn_payload), zlib.crc32(torn_payload), len(torn)) + torn_payload[:10]
    (tmp_path / '0000000000000007.seg').write_bytes(segment)
    with OtlpHttpReceiver() as receiver:
        spool = _spool(tmp_path, receiver.endpoint)
        assert spool.force_flush(10_000)
        spool.shutdown()
    assert receiver.span_ids() == _ids(good)
    assert spool.dropped_spans == {'corrupt': len(torn)}
    assert list(tmp_path.glob('*.seg')) == []


def test_export_returns_at_once_while_the_backend_hangs(tmp_path: Path) -> None:
    spans = make_spans()
    with OtlpHttpReceiver() as receiver:
        receiver.script(Reply(delay=1.0))
        spool = _spool(tmp_path, receiver.endpoint, request_timeout=5.0)
        spool.export(spans)
        assert wait_until(lambda: receiver.attempts == 1)
        spool.export(spans)  # the sender is stuck in the first request; storing must not wait for it
        assert spool.pending_spans == 2 * len(spans)
        assert spool.force_flush(10_000)
        spool.shutdown()


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    later = (now + timedelta(seconds=30)).strftime('%a, %d %b %Y %H:%M:%S GMT')
    assert parse_retry_after('7') == 7.0
    assert parse_retry_after(later, now=now) == 30.0
    assert parse_retry_after('soon') is None
    assert parse_retry_after(None) is None


def test_shutdown_with_the_backend_down_is_quick_and_keeps_the_data(tmp_path: Path) -> None:
    spool = _spool(tmp_path, f'http://127.0.0.1:{free_port()}')
    spool.export(make_spans())
    assert wait_until(lambda: spool.failed_requests >= 1)
    spool.shutdown()
    assert spool.pending_spans == 4


def test_a_second_live_spool_in_one_directory_gets_its_own_folder(tmp_path: Path) -> None:
    first = _spool(tmp_path, f'http://127.0.0.1:{free_port()}')
    second = _spool(tmp_path, f'http://127.0.0.1:{free_port()}')
    assert first.directory == tmp_path
    assert second.directory.parent == tmp_path and second.directory.name.startswith('worker-')
    telemetry = configure(
        spool=SpoolOptions(directory=tmp_path), set_global=False, metrics=False
    )  # a third, through configure()
    assert telemetry.spool is not None and telemetry.spool.directory.name.startswith('worker-')
    telemetry.shutdown()
    second.shutdown()
    first.shutdown()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('worker-')] == []  # empty ones are removed

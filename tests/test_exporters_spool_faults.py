"""The spool under real disk faults: a full filesystem, a read-only one, its directory removed, short writes,
damaged records and stray files. Each ends with every span either delivered exactly once or counted as lost.

The filesystem faults use a small tmpfs mounted by the test (as root, as CI runs); the same faults are also made
by an injected writer that fails with ENOSPC or writes short, which needs no privileges.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exporters_helpers import OtlpHttpReceiver, Reply, make_spans, wait_until
from opentelemetry.sdk.trace import ReadableSpan

from tracegraph.exporters.settings import resolve_target
from tracegraph.exporters.spool import segments
from tracegraph.exporters.spool.exporter import SpoolSpanExporter
from tracegraph.exporters.spool.segments import Dropped, SegmentStore

_open, _pwrite = os.open, os.pwrite  # the real ones: the fault injectors below patch `os` for the test


def _spool(directory: Path, endpoint: str, **kwargs: object) -> SpoolSpanExporter:
    target = resolve_target(endpoint=endpoint, protocol='http/protobuf', headers={}, signal='traces')
    options: dict[str, object] = {'initial_backoff': 0.02, 'max_backoff': 0.1, 'fsync': False, **kwargs}
    return SpoolSpanExporter(directory, target=target, **options)  # pyright: ignore[reportArgumentType]


def _ids(spans: list[ReadableSpan]) -> list[str]:
    return [f'{s.context.span_id:016x}' for s in spans if s.context]


def _batches(spans: list[ReadableSpan], size: int) -> Iterator[list[ReadableSpan]]:
    for i in range(0, len(spans), size):
        yield spans[i : i + size]


def _assert_accounted(receiver: OtlpHttpReceiver, spool: SpoolSpanExporter, sent: list[ReadableSpan]) -> None:
    """Every span delivered exactly once, or counted as dropped: nothing silently lost, nothing twice."""
    received = [s.span_id for s in receiver.spans()]
    assert len(received) == len(set(received)), 'a span was delivered twice'
    assert set(received) <= set(_ids(sent))
    assert len(received) + sum(spool.dropped_spans.values()) == len(sent), (len(received), spool.dropped_spans)


@pytest.fixture
def tiny_fs(small_fs: Callable[[int], Path]) -> Path:
    """A 384 KiB tmpfs."""
    return small_fs(384)


def test_full_filesystem_keeps_spans_in_memory_and_recovers(tiny_fs: Path, caplog: pytest.LogCaptureFixture) -> None:
    spans = make_spans(runs=500, nodes=4)  # 2,500 spans: several times what the filesystem holds
    with OtlpHttpReceiver() as receiver:
        receiver.script(*[Reply(status=503)] * 10_000)  # the backend is down while the disk fills
        spool = _spool(tiny_fs / 'spool', receiver.endpoint)
        with caplog.at_level(logging.ERROR, logger='tracegraph.exporters.spool.exporter'):
            for batch in _batches(spans, 25):
                spool.export(batch)
        assert spool.memory_spans > 0 and spool.io_errors > 0  # the disk filled; later batches waited in memory
        assert sum('failed' in r.getMessage() and 'Errno 28' in r.getMessage() for r in caplog.records) == 1
        with receiver.lock:
            receiver.replies.clear()  # the backend is back
        assert spool.force_flush(30_000)
        assert spool.memory_spans == 0 and spool.pending_spans == 0
        spool.shutdown()
        _assert_accounted(receiver, spool, spans)
        assert spool.dropped_spans == {}
    assert not [p for p in (tiny_fs / 'spool').glob('*.seg') if p.stat().st_size]


class Unwritable:
    """Stands in for `os.open` in the segment store while `on`: every open for writing fails with EACCES, as for a
    directory whose permissions were taken away (root ignores a chmod, so the fault is injected)."""

    def __init__(self) -> None:
        self.on = False
        self.refused = 0

    def __call__(self, path: object, flags: int, mode: int = 0o777) -> int:
        if self.on and flags & (os.O_WRONLY | os.O_RDWR):
            self.refused += 1
            raise PermissionError(errno.EACCES, 'Permission denied', str(path))
        return _open(path, flags, mode)  # pyright: ignore[reportArgumentType]


def test_unwritable_directory_for_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spans = make_spans(runs=40, nodes=3)
    unwritable = Unwritable()
    monkeypatch.setattr(segments.os, 'open', unwritable)
    with OtlpHttpReceiver() as receiver:
        spool = _spool(tmp_path / 'spool', receiver.endpoint)
        batches = list(_batches(spans, 8))
        for batch in batches[:5]:
            spool.export(batch)
        assert spool.force_flush(10_000)
        unwritable.on = True  # appends, acknowledgements and cursor writes all fail now
        for batch in batches[5:10]:
            spool.export(batch)
        assert wait_until(lambda: len(receiver.spans()) == sum(len(b) for b in batches[:10]))  # sent from memory
        assert spool.sending
        unwritable.on = False
        for batch in batches[10:]:
            spool.export(batch)
        assert spool.force_flush(30_000)
        spool.shutdown()
        _assert_accounted(receiver, spool, spans)
        assert spool.dropped_spans == {} and unwritable.refused > 0 and spool.io_errors > 0


def test_spool_directory_removed_mid_run_is_made_again(tmp_path: Path) -> None:
    spans = make_spans(runs=30, nodes=3)
    directory = tmp_path / 'spool'
    with OtlpHttpReceiver() as receiver:
        receiver.script(*[Reply(status=503)] * 10_000)
        spool = _spool(directory, receiver.endpoint)
        batches = list(_batches(spans, 9))
        for batch in batches[:4]:
            spool.export(batch)
        _remove(directory)  # someone cleans /tmp
        for batch in batches[4:]:
            spool.export(batch)
        assert directory.is_dir()
        with receiver.lock:
            receiver.replies.clear()
        assert spool.force_flush(30_000)
        spool.shutdown()
        _assert_accounted(receiver, spool, spans)
        later = {s.span_id for s in receiver.spans()}
        assert set(_ids([s for b in batches[4:] for s in b])) <= later  # everything after the removal arrived
        assert spool.dropped_spans.get('directory_removed', 0) <= sum(len(b) for b in batches[:4])


def _remove(directory: Path) -> None:
    """`rm -rf` as by hand: again if the spool wrote its cursor into the directory while it was being removed."""
    for _ in range(100):
        shutil.rmtree(directory, ignore_errors=True)
        if not directory.exists():
            return
    raise AssertionError(f'{directory} could not be removed')


def _store(directory: Path, **kwargs: int) -> SegmentStore:
    options = {'max_bytes': 1 << 30, 'segment_bytes': 1 << 22, **kwargs}
    directory.mkdir(mode=0o700)
    return SegmentStore(directory, fsync=False, **options)


@pytest.mark.parametrize('delivered', [True, False], ids=['delivered', 'not_delivered'])
def test_a_record_out_with_the_sender_when_the_directory_goes_is_counted_once(tmp_path: Path, delivered: bool) -> None:
    # Counting the removed directory's spans at once counted the record being sent too, which then arrived.
    store = _store(tmp_path / 'spool')
    store.append(b'a' * 100, 5)
    store.append(b'b' * 100, 7)
    out, _ = store.next_record()
    assert out is not None and out.spans == 5
    _remove(tmp_path / 'spool')
    assert store.append(b'c' * 100, 3) == [Dropped(spans=7, bytes=0, reason='directory_removed')]
    if delivered:
        store.ack(out)
        record, lost = store.next_record()
        assert lost is None and record is not None and record.spans == 3
    else:  # the send failed: the sender asks for the next record, and the one it had is lost after all
        assert store.next_record() == (None, Dropped(spans=5, bytes=100, reason='directory_removed'))
        record, lost = store.next_record()
        assert lost is None and record is not None and record.spans == 3
    store.ack(record)
    assert store.close() is None and store.pending_spans == 0


def test_a_record_out_with_the_sender_when_its_segment_is_dropped_for_space_is_counted_once(tmp_path: Path) -> None:
    store = _store(tmp_path / 'spool', max_bytes=300, segment_bytes=100)
    store.append(b'a' * 100, 5)  # one record per segment
    out, _ = store.next_record()
    assert out is not None
    dropped = store.append(b'b' * 100, 7) + store.append(b'c' * 100, 3)  # over 300 bytes: the oldest segment goes
    assert [d.reason for d in dropped] == ['spool_full'] and dropped[0].spans == 0  # its one record is out
    assert store.pending_spans == 5 + 7 + 3  # out, not yet lost: still pending
    assert store.close() == Dropped(spans=5, bytes=100, reason='spool_full')  # never acknowledged: lost after all


class FaultyWrites:
    """Stands in for `os.pwrite` in the segment store: short writes, then ENOSPC for a while, then normal."""

    def __init__(self, short: int, failing: int) -> None:
        self.short, self.failing = short, failing
        self.lock = threading.Lock()
        self.calls = 0

    def __call__(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        with self.lock:
            self.calls += 1
            if self.short:
                self.short -= 1
                return _pwrite(fd, bytes(data[: max(1, len(data) // 3)]), offset)  # a third, then the rest
            if self.failing:
                self.failing -= 1
                if len(data) > 40:  # records fail; the small cursor writes go through
                    _pwrite(fd, bytes(data[: len(data) // 2]), offset)  # torn: half on disk, then no space
                    raise OSError(errno.ENOSPC, 'No space left on device')
        return _pwrite(fd, data, offset)


def test_short_writes_and_enospc_injected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spans = make_spans(runs=50, nodes=3)
    faults = FaultyWrites(short=6, failing=12)
    monkeypatch.setattr(segments.os, 'pwrite', faults)
    with OtlpHttpReceiver() as receiver:
        receiver.script(*[Reply(status=503)] * 30)
        spool = _spool(tmp_path / 'spool', receiver.endpoint)
        for batch in _batches(spans, 5):
            spool.export(batch)
        assert spool.force_flush(30_000)
        spool.shutdown()
        _assert_accounted(receiver, spool, spans)
        assert spool.dropped_spans == {}
        assert spool.io_errors >= 1
    # A restart finds no torn record and nothing left to send.
    with OtlpHttpReceiver() as again:
        restarted = _spool(tmp_path / 'spool', again.endpoint)
        assert restarted.pending_spans == 0
        restarted.shutdown()
        assert again.spans() == []


def _stored_segment(tmp_path: Path, spans: list[ReadableSpan], size: int) -> tuple[Path, bytearray]:
    """Store `spans` in batches of `size` while the backend is down; the one segment file and its bytes."""
    with OtlpHttpReceiver() as receiver:
        receiver.script(*[Reply(status=503)] * 10_000)
        spool = _spool(tmp_path / 'spool', receiver.endpoint)
        for batch in _batches(spans, size):
            spool.export(batch)
        spool.shutdown(timeout=0.2)
    (segment,) = (tmp_path / 'spool').glob('*.seg')
    return segment, bytearray(segment.read_bytes())


def test_a_flipped_byte_loses_only_its_own_record(tmp_path: Path) -> None:
    spans = make_spans(runs=160, nodes=4)  # 800 spans, 16 records of 50
    segment, data = _stored_segment(tmp_path, spans, 50)
    data[16 + 100] ^= 0xFF  # a payload byte of the first record
    segment.write_bytes(bytes(data))
    with OtlpHttpReceiver() as receiver:
        spool = _spool(tmp_path / 'spool', receiver.endpoint)
        assert spool.force_flush(30_000)
        spool.shutdown()
        assert len(receiver.spans()) == 750
        assert spool.dropped_spans == {'corrupt': 50}
        _assert_accounted(receiver, spool, spans)


def test_a_damaged_header_resynchronises_to_the_next_record(tmp_path: Path) -> None:
    spans = make_spans(runs=40, nodes=4)  # 200 spans, 4 records of 50
    segment, data = _stored_segment(tmp_path, spans, 50)
    data[0:4] = b'XXXX'  # the first record's magic
    segment.write_bytes(bytes(data))
    with OtlpHttpReceiver() as receiver:
        spool = _spool(tmp_path / 'spool', receiver.endpoint)
        assert spool.force_flush(30_000)
        spool.shutdown()
        assert len(receiver.spans()) == 150


def test_stray_files_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = tmp_path / 'spool'
    (directory / '0000000000000003.seg').mkdir(parents=True)  # a folder named like a segment
    (directory / 'notes.seg').write_text('hello')
    spans = make_spans(runs=2)
    with OtlpHttpReceiver() as receiver, caplog.at_level(logging.WARNING, logger='tracegraph.exporters.spool.exporter'):
        spool = _spool(directory, receiver.endpoint)
        spool.export(spans)
        assert spool.force_flush(10_000)
        assert spool.sending
        spool.shutdown()
        assert len(receiver.spans()) == len(spans)
    assert any('not a segment file' in r.getMessage() for r in caplog.records)
    assert wait_until(lambda: True)


def test_telemetry_force_flush_waits_for_spool_delivery(tmp_path: Path) -> None:
    from exporters_helpers import counter_graph, free_port

    from tracegraph.exporters import SpoolOptions, configure

    port = free_port()
    telemetry = configure(
        endpoint=f'http://127.0.0.1:{port}',
        spool=SpoolOptions(directory=tmp_path / 'spool'),
        metrics=False,
        set_global=False,
    )
    try:
        graph = counter_graph(tracer_provider=telemetry.tracer_provider)
        from exporters_helpers import Increment

        graph.run_sync(Increment(0))
        assert telemetry.force_flush(300) is False  # the backend is down: stored, not delivered
        assert telemetry.spool is not None and telemetry.spool.pending_spans == 5
        with OtlpHttpReceiver(port=port) as receiver:
            assert telemetry.force_flush(30_000) is True
            assert len(receiver.spans()) == 5
    finally:
        telemetry.shutdown()


def test_a_refused_batch_kept_in_memory_moves_behind_newer_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stuck, newer = make_spans(graph='stuck'), make_spans(runs=3, graph='fine')
    stuck_ids = {s.context.trace_id.to_bytes(16, 'big') for s in stuck if s.context}
    unwritable = Unwritable()
    monkeypatch.setattr(segments.os, 'open', unwritable)
    with OtlpHttpReceiver() as receiver:
        receiver.refuse = lambda request: any(
            span.trace_id in stuck_ids for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
        )
        spool = _spool(tmp_path / 'spool', receiver.endpoint, record_deadline=0.2)
        unwritable.on = True  # every batch stays in memory
        spool.export(stuck)
        for batch in _batches(newer, 4):
            spool.export(batch)
        assert wait_until(lambda: set(_ids(newer)) <= {s.span_id for s in receiver.spans()})
        # The receiver holds a batch before its response reaches the spool, which then lets the batch go.
        assert wait_until(lambda: spool.memory_spans == len(stuck)), spool.memory_spans
        assert spool.requeued_records >= 1
        receiver.refuse = lambda _request: False
        unwritable.on = False
        assert spool.force_flush(10_000)
        spool.shutdown()
        _assert_accounted(receiver, spool, stuck + newer)
        assert spool.dropped_spans == {}

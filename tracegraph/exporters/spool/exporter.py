"""`SpoolSpanExporter`: spans go to local disk first, then to the backend from a background thread.

`export()` only appends a record to the current segment file (see `segments`) and returns; a sender thread
reads the oldest unacknowledged record, sends it, and moves the cursor past it once the backend answered
2xx. Failures are retried with exponential backoff and jitter, or after the backend's `Retry-After`. A record
refused for good (400, 413, gRPC INVALID_ARGUMENT) is dropped and counted at once; a record refused with a retryable
code for longer than `record_deadline` while newer records wait behind it is moved behind them (and keeps being
retried), so one batch the backend keeps refusing never holds back the rest.
Whatever is left when the process stops is sent by the next process using the same directory.
Disk use stays under `max_bytes`: the oldest segments are dropped first, and every dropped span is
counted in the `tracegraph.spool.dropped_spans` metric and logged.

No fault stops the sender thread. When the disk is full, read-only or gone, batches are kept in a bounded memory
buffer (the oldest dropped beyond `memory_bytes`, counted as `memory_full`) and written to disk, or sent straight
from memory, as soon as that works again; every I/O error is retried with backoff, logged once per episode, and
counted in `io_errors`.

Several processes may share one spool directory (the workers of one app, each running
`configure(spool=SpoolOptions(directory=...))`): the first holds the directory itself, each other one gets a spool
of its own inside it (`worker-<pid>-<hex>`), and every live spool looks for the spools of processes that died (their
lock is free) and sends what they left, then removes them: nothing a killed worker stored is stranded.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import secrets
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path

from opentelemetry import metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..otlp.send_result import Sender, SendResult
from ..otlp.senders import make_sender
from ..settings import OtlpTarget, check_spool_dir
from .segments import Dropped, Record, SegmentStore, SpoolLockedError, SpoolWriteError

__all__ = ('SpoolSpanExporter', 'METRIC_SPOOL_DROPPED')

METRIC_SPOOL_DROPPED = 'tracegraph.spool.dropped_spans'
"""Counter of spans the spool gave up, attribute `reason`: `spool_full`, `batch_too_large`, `rejected`, `corrupt`,
`memory_full` (the disk unusable and the memory buffer full), `directory_removed`, `shutdown`."""

logger = logging.getLogger('tracegraph.exporters.spool.exporter')


class SpoolSpanExporter(SpanExporter):
    """A span exporter that stores batches on disk and delivers them from a background thread.

    Args:
        directory: the spool directory (created if missing); reuse it across restarts to resend what is left.
        target: where to send (see `settings.resolve_target`); or give `sender`.
        sender: a ready `Sender` (for tests and custom transports); `target` is ignored then.
        max_bytes: bound on the segment files' total size; the oldest are dropped (and counted) beyond it.
        segment_bytes: a segment is closed, and a new one started, once it reaches this size.
        initial_backoff: seconds before the first retry; doubled on every further failure.
        max_backoff: cap on the backoff, in seconds.
        max_retry_after: cap on a backend's `Retry-After`, in seconds.
        record_deadline: seconds a record may keep failing at the head before the records behind it get their turn.
        request_timeout: seconds to wait for one answer from the backend.
        fsync: fsync each record, so batches survive a power loss and not only a crash of the process.
        memory_bytes: bound on the batches kept in memory while the disk cannot be written.
        meter_provider: where the dropped-spans counter is recorded (the global one when None).

    A directory another live spool holds is shared: this one then writes to a `worker-*` folder inside it.
    """

    def __init__(
        self,
        directory: str | PathLike[str],
        *,
        target: OtlpTarget | None = None,
        sender: Sender | None = None,
        max_bytes: int = 256 * 1024 * 1024,
        segment_bytes: int = 4 * 1024 * 1024,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_retry_after: float = 300.0,
        record_deadline: float = 60.0,
        request_timeout: float = 10.0,
        fsync: bool = True,
        memory_bytes: int = 32 * 1024 * 1024,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        if sender is None:
            if target is None:
                raise ValueError('SpoolSpanExporter needs a `target` or a `sender`.')
            sender = make_sender(target, timeout=request_timeout)
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError(f'max_bytes and segment_bytes must be positive, got {max_bytes} and {segment_bytes}.')
        try:
            path = check_spool_dir(directory)
            segment_bytes = min(segment_bytes, max_bytes)
            self._open_store = functools.partial(
                SegmentStore, max_bytes=max_bytes, segment_bytes=segment_bytes, fsync=fsync
            )
            try:
                self._store = self._open_store(path)
            except SpoolLockedError:
                # Another live spool holds the directory: this process gets one of its own inside it, locked under
                # a name no other spool looks at before it takes the name they do (else one could take it as dead).
                name = f'{_WORKER_PREFIX}{os.getpid()}-{secrets.token_hex(4)}'
                making = path / f'.{name}'
                making.mkdir(mode=0o700)
                self._store = self._open_store(making)
                os.rename(making, path / name)
                self._store.directory = path / name
        except BaseException:
            sender.close()
            raise
        self._sender = sender
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._max_retry_after = max_retry_after
        self._record_deadline = record_deadline
        self._head: tuple[object, ...] | None = None
        """The record failing at the head: (source, segment, offset) on disk, (None, payload) in memory."""
        self._head_since = 0.0
        self._requeued = 0
        meter = (meter_provider or metrics.get_meter_provider()).get_meter('tracegraph.exporters')
        self._dropped_counter = meter.create_counter(
            METRIC_SPOOL_DROPPED, unit='{span}', description='Spans the tracegraph spool gave up.'
        )
        self._cond = threading.Condition()
        self._stopping = False
        self._failing = False
        self._dropped: dict[str, int] = {}
        self._sent_requests = 0
        self._failed_requests = 0
        self._generation = 0
        self._memory: deque[tuple[bytes, int]] = deque()
        """Batches not on disk (it could not be written), oldest first: (payload, spans)."""
        self._memory_bytes = 0
        self._max_memory_bytes = memory_bytes
        self._io_errors = 0
        self._io_failing = False
        self._root = path
        self._adopted: list[SegmentStore] = []
        """Spools of processes that died, being drained by this one."""
        self._next_scan = 0.0
        self._scan_for_dead_spools()  # at once, then every few seconds from the sender thread
        self._thread = threading.Thread(target=self._run, name='tracegraph-spool-sender', daemon=True)
        self._thread.start()

    # --- SpanExporter --------------------------------------------------------------------------------------

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Store the batch on disk and wake the sender; SUCCESS means stored, not yet delivered."""
        if not spans:
            return SpanExportResult.SUCCESS
        if self._stopping:
            self._record_drop(Dropped(spans=len(spans), bytes=0, reason='shutdown'))
            return SpanExportResult.FAILURE
        self._store_batch(_encode(spans), len(spans))
        with self._cond:
            self._generation += 1
            self._cond.notify_all()
        return SpanExportResult.SUCCESS

    def _store_batch(self, payload: bytes, spans: int) -> None:
        """Append a batch to the disk spool, or keep it in memory while the disk cannot take it."""
        with self._cond:
            behind = bool(self._memory)
        if behind:
            self._keep_in_memory(payload, spans)  # keep the order: the disk is still catching up
            return
        try:
            for d in self._store.append(payload, spans):
                self._record_drop(d)
        except OSError as e:
            self._io_error('storing a batch', e)
            self._keep_in_memory(payload, spans)

    def _keep_in_memory(self, payload: bytes, spans: int) -> None:
        with self._cond:
            self._memory.append((payload, spans))
            self._memory_bytes += len(payload)
            while self._memory_bytes > self._max_memory_bytes and len(self._memory) > 1:
                old, old_spans = self._memory.popleft()
                self._memory_bytes -= len(old)
                self._dropped['memory_full'] = self._dropped.get('memory_full', 0) + old_spans
                self._dropped_counter.add(old_spans, {'reason': 'memory_full'})

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until the backend acknowledged everything stored, or until the timeout.

        Returns:
            True when nothing is left to send; False on timeout (the rest stays on disk).
        """
        return self._wait(lambda: self.pending_spans == 0, timeout_millis / 1000)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Give the sender up to `timeout` seconds to deliver (less when the backend is failing), then stop it.

        Whatever was not delivered stays on disk for the next process using this directory; batches still only in
        memory (the disk could not be written) get one last try at the disk, and are counted as lost otherwise.
        """
        if self._stopping:
            return
        self._wait(lambda: self.pending_spans == 0 or self._failing, timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._spill_memory()
        lost = self.memory_spans
        with self._cond:
            self._memory.clear()
            self._memory_bytes = 0
        if lost:
            logger.error('tracegraph spool: %d spans kept in memory could not reach the disk before shutdown', lost)
            self._record_drop(Dropped(spans=lost, bytes=0, reason='shutdown'))
        self._sender.close()
        for store in [*self._adopted, self._store]:
            if (orphan := store.close()) is not None:  # out with the sender when its segment went, never delivered
                self._record_drop(orphan)
        if self._store.directory != self._root and self._store.pending_spans == 0:
            shutil.rmtree(self._store.directory, ignore_errors=True)  # an empty worker spool is not left behind

    # --- state ---------------------------------------------------------------------------------------------

    @property
    def sending(self) -> bool:
        """Whether the sending thread is alive (it stops only at `shutdown`; a fault it survives keeps it)."""
        return self._thread.is_alive()

    @property
    def pending_spans(self) -> int:
        """Spans stored (on disk or, while it cannot be written, in memory) and not yet acknowledged, including those
        of dead processes' spools this one took over."""
        with self._cond:  # under the lock a record being moved (see `_requeue`) is counted once
            adopted = sum(store.pending_spans for store in self._adopted)
            return self._store.pending_spans + self.memory_spans + adopted

    @property
    def directory(self) -> Path:
        """The directory this process writes to: the spool directory, or its own `worker-*` folder inside it."""
        return self._store.directory

    @property
    def memory_spans(self) -> int:
        """Spans kept in memory because the disk could not be written."""
        with self._cond:
            return sum(n for _, n in self._memory)

    @property
    def io_errors(self) -> int:
        """Disk operations (writes, reads, cursor updates) that failed and were retried."""
        return self._io_errors

    @property
    def disk_bytes(self) -> int:
        """Bytes of segment files on disk (at most `max_bytes`)."""
        return self._store.disk_bytes

    @property
    def dropped_spans(self) -> dict[str, int]:
        """Spans given up so far by this process, by reason."""
        with self._cond:
            return dict(self._dropped)

    @property
    def sent_requests(self) -> int:
        """Requests the backend acknowledged."""
        return self._sent_requests

    @property
    def failed_requests(self) -> int:
        """Requests that failed and were (or will be) retried."""
        return self._failed_requests

    @property
    def requeued_records(self) -> int:
        """Records moved behind newer ones after failing for `record_deadline` (still retried, not lost)."""
        return self._requeued

    # --- sender thread -------------------------------------------------------------------------------------

    def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return done()
                self._cond.wait(min(remaining, 0.05))
        return True

    def _run(self) -> None:
        attempts = 0
        while not self._stopping:
            try:
                attempts = self._step(attempts)
            except Exception as e:  # nothing may end this thread: an error is retried, the spool is not stranded
                self._io_error('sending from the spool', e)
                with self._cond:
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self._stopping, self._delay(min(self._io_errors, 8), None))

    def _step(self, attempts: int) -> int:
        """One round of the sender: send the oldest record (from disk, else from memory); returns the attempts."""
        generation = self._generation
        self._spill_memory()
        self._scan_for_dead_spools()
        source: SegmentStore | None = self._store
        record, corrupt = self._store.next_record()
        if corrupt is not None:
            self._record_drop(corrupt)
        if record is None:
            source = None
            record = self._memory_record()
        if record is None:
            source, record = self._adopted_record()
        if record is None:
            self._io_recovered()
            with self._cond:
                self._cond.notify_all()  # wakes force_flush() waiters
                self._cond.wait_for(lambda g=generation: self._stopping or self._generation != g, 1.0)
            return attempts
        result = self._send(record)
        if result.outcome == 'retry':
            attempts += 1
            self._failed_requests += 1
            self._failing = True
            if self._overdue(source, record):
                self._requeue(source, record)
                return attempts  # the next record is tried at once: if the backend takes it, only this one is bad
            delay = self._delay(attempts, result.retry_after)
            logger.warning(
                'tracegraph spool: sending %d spans failed (%s); retry %d in %.2fs',
                record.spans,
                result.detail,
                attempts,
                delay,
            )
            with self._cond:
                self._cond.notify_all()
                if not self._stopping:
                    self._cond.wait_for(lambda: self._stopping, delay)
            return attempts
        self._failing = False
        self._head = None
        if result.outcome == 'drop':
            logger.error('tracegraph spool: backend refused %d spans for good (%s)', record.spans, result.detail)
            self._record_drop(Dropped(spans=record.spans, bytes=len(record.payload), reason='rejected'))
        elif result.rejected_spans:
            logger.error('tracegraph spool: backend rejected %d spans (%s)', result.rejected_spans, result.detail)
            self._record_drop(Dropped(spans=result.rejected_spans, bytes=0, reason='rejected'))
        if result.outcome == 'ok':
            self._sent_requests += 1
        if source is None:
            with self._cond:
                payload, _spans = self._memory.popleft()
                self._memory_bytes -= len(payload)
        else:
            source.ack(record)
        with self._cond:
            self._cond.notify_all()
        return 0

    def _overdue(self, source: SegmentStore | None, record: Record) -> bool:
        """Whether `record` has failed at the head for `record_deadline` while other records wait behind it."""
        # a batch in memory is known by its payload object (the deque may shift under the exporting thread)
        key = (source, record.segment, record.offset) if source is not None else (None, record.payload)
        now = time.monotonic()
        if key != self._head:
            self._head, self._head_since = key, now
            return False
        return now - self._head_since >= self._record_deadline and self.pending_spans > record.spans

    def _requeue(self, source: SegmentStore | None, record: Record) -> None:
        """Move a record behind the others: stored again at the end first, then taken from the head."""
        logger.warning(
            'tracegraph spool: %d spans refused for %.0fs; newer batches are sent first, these are retried after them',
            record.spans,
            self._record_deadline,
        )
        self._head = None
        with self._cond:  # stored twice for a moment (a crash between keeps it); readers see it once
            if source is None:
                self._memory.rotate(-1)
            else:
                self._store_batch(record.payload, record.spans)
                source.ack(record)
            self._requeued += 1

    def _scan_for_dead_spools(self) -> None:
        """Every few seconds, take over the spools in this directory whose process died (their lock is free)."""
        now = time.monotonic()
        if now < self._next_scan:
            return
        self._next_scan = now + _SCAN_INTERVAL
        taken = {self._store.directory, *(store.directory for store in self._adopted)}
        try:
            with os.scandir(self._root) as entries:
                names = sorted(e.name for e in entries if e.name.startswith(_WORKER_PREFIX) and e.is_dir())
        except OSError:
            names = []  # the directory itself is gone: the next append makes it again
        for candidate in [self._root, *(self._root / name for name in names)]:
            if candidate in taken:
                continue
            try:
                store = self._open_store(candidate)
            except SpoolLockedError:
                continue  # its process is alive
            if store.pending_spans:
                logger.warning(
                    'tracegraph spool: sending the %d spans a stopped process left in %s',
                    store.pending_spans,
                    candidate,
                )
                with self._cond:
                    self._adopted.append(store)
            else:
                self._retire(store)

    def _adopted_record(self) -> tuple[SegmentStore | None, Record | None]:
        for store in list(self._adopted):
            record, corrupt = store.next_record()
            if corrupt is not None:
                self._record_drop(corrupt)
            if record is not None:
                return store, record
            if store.pending_spans == 0:
                with self._cond:
                    self._adopted.remove(store)
                self._retire(store)
        return None, None

    def _retire(self, store: SegmentStore) -> None:
        """Close a drained spool of a dead process; a worker's folder is removed, the shared directory kept."""
        store.close()
        if store.directory != self._root and store.directory.name.startswith(_WORKER_PREFIX):
            shutil.rmtree(store.directory, ignore_errors=True)

    def _spill_memory(self) -> None:
        """Move batches kept in memory to disk, oldest first, while the disk takes them."""
        while True:
            with self._cond:  # held across the move, as in `_requeue`, so `pending_spans` never counts a batch twice
                if not self._memory:
                    return
                payload, spans = self._memory[0]
                try:
                    dropped = self._store.append(payload, spans)
                except SpoolWriteError:
                    return  # still failing: sent from memory instead, and tried again next round
                self._memory.popleft()
                self._memory_bytes -= len(payload)
            for d in dropped:
                self._record_drop(d)

    def _memory_record(self) -> Record | None:
        with self._cond:
            if not self._memory:
                return None
            payload, spans = self._memory[0]
        return Record(segment=-1, offset=0, end=0, spans=spans, payload=payload)

    def _io_error(self, doing: str, error: BaseException) -> None:
        self._io_errors += 1
        if not self._io_failing:
            self._io_failing = True
            logger.error(
                'tracegraph spool: %s failed (%s: %s); retrying with backoff, batches kept in memory meanwhile',
                doing,
                type(error).__name__,
                error,
            )

    def _io_recovered(self) -> None:
        if self._io_failing:
            self._io_failing = False
            logger.warning(
                'tracegraph spool: %s works again after %d I/O errors', self._store.directory, self._io_errors
            )
        self._store.flush_cursor()

    def _send(self, record: Record) -> SendResult:
        try:
            return self._sender.send(record.payload)
        except Exception as e:  # a sender bug must not kill the thread and strand the spool
            return SendResult(outcome='retry', detail=f'{type(e).__name__}: {e}')

    def _delay(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._max_retry_after)
        backoff = min(self._max_backoff, self._initial_backoff * 2 ** (attempts - 1))
        return backoff * (0.5 + random.random() / 2)  # jitter keeps many clients from retrying in lockstep

    def _record_drop(self, dropped: Dropped) -> None:
        if not dropped.spans:  # e.g. a segment given up whose one record is out with the sender: counted when lost
            return
        if dropped.reason in ('spool_full', 'batch_too_large'):
            logger.warning(
                'tracegraph spool: disk bound reached (%s): dropped %d spans (%d bytes), oldest first',
                dropped.reason,
                dropped.spans,
                dropped.bytes,
            )
        with self._cond:
            self._dropped[dropped.reason] = self._dropped.get(dropped.reason, 0) + dropped.spans
        self._dropped_counter.add(dropped.spans, {'reason': dropped.reason})

    def __repr__(self) -> str:
        return f'SpoolSpanExporter({str(self._store.directory)!r}, pending_spans={self.pending_spans})'


_CHUNK = 64
_WORKER_PREFIX = 'worker-'
_SCAN_INTERVAL = 5.0
"""Seconds between looks for the spools of processes that died."""


def _encode(spans: Sequence[ReadableSpan]) -> bytes:
    """One `ExportTraceServiceRequest` for the batch, encoded 64 spans at a time.

    Encoding is pure Python and holds the GIL for milliseconds per hundred spans; between chunks this thread
    sleeps for zero seconds, which hands the GIL to the thread running the graph if it is waiting. Serialized
    requests concatenate into their merge, and repeated `resource_spans` are valid OTLP.
    """
    parts: list[bytes] = []
    for start in range(0, len(spans), _CHUNK):
        if start:
            time.sleep(0)
        parts.append(encode_spans(spans[start : start + _CHUNK]).SerializeToString())
    return b''.join(parts)

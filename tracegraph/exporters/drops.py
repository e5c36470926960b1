"""Counting spans lost before export: a full batch-processor queue, or an export that failed.

Without a spool, the OpenTelemetry SDK's `BatchSpanProcessor` drops spans when its queue is full (it only logs a
rate-limited line) and loses a batch whose export failed. `CountingBatchSpanProcessor` counts both, by reason, in a
`DropCounter` that `configure()` exposes as `Telemetry.dropped_spans` and as the counter `tracegraph.export.dropped`
(attribute `reason`: `queue_full`, `export_failed`), so a user can alert on loss.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

__all__ = ('DropCounter', 'CountingBatchSpanProcessor', 'METRIC_EXPORT_DROPPED')

METRIC_EXPORT_DROPPED = 'tracegraph.export.dropped'
"""Counter of spans lost before the backend had them, attribute `reason` (`queue_full`, `export_failed`)."""


class DropCounter:
    """Spans lost, by reason; thread-safe, and readable as an observable counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._settlers: list[Callable[[], None]] = []

    def settle_with(self, settle: Callable[[], None]) -> None:
        """Call `settle` before the counts are read: it adds what it has found lost since (see
        `CountingBatchSpanProcessor`)."""
        self._settlers.append(settle)

    def add(self, reason: str, spans: int) -> None:
        """Count `spans` lost for `reason`."""
        if spans:
            with self._lock:
                self._counts[reason] = self._counts.get(reason, 0) + spans

    @property
    def counts(self) -> dict[str, int]:
        """Spans lost so far, by reason."""
        for settle in self._settlers:
            settle()
        with self._lock:
            return dict(self._counts)

    def register(self, meter_provider: metrics.MeterProvider) -> None:
        """Report the counts as the observable counter `tracegraph.export.dropped` of `meter_provider`."""

        def observe(_options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
            return [metrics.Observation(n, {'reason': reason}) for reason, n in self.counts.items()]

        meter = meter_provider.get_meter('tracegraph.exporters')
        meter.create_observable_counter(
            METRIC_EXPORT_DROPPED, callbacks=[observe], unit='{span}', description='Spans lost before export.'
        )


class _CountingExporter(SpanExporter):
    """Passes batches on, counting the spans of every failed export; `before_export` hears of each batch first."""

    def __init__(self, exporter: SpanExporter, drops: DropCounter, before_export: Callable[[int], None]) -> None:
        self.exporter = exporter
        self._drops = drops
        self._before_export = before_export

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._before_export(len(spans))
        try:
            result = self.exporter.export(spans)
        except Exception:
            self._drops.add('export_failed', len(spans))
            raise
        if result is not SpanExportResult.SUCCESS:
            self._drops.add('export_failed', len(spans))
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """A `BatchSpanProcessor` that counts the spans it drops (queue full) or fails to export.

    A span is dropped for a full queue when it was queued (offered) but never reached the exporter and is no longer
    queued: `offered - exported - queued`. That balance is struck where it is exact, at the start of each export
    (the SDK pops the batch and hands it over with no other consumer running: its worker alone up to SDK 1.32, under
    its export lock since 1.33), and when the counts are read if the SDK's export lock can be taken at once. A
    length check before each span instead (the SDK's own count) races the worker: a span the worker made room for
    between the check and the append is counted dropped though it was delivered.

    The queue is read through the SDK's own fields (`_batch_processor._queue` since 1.33, `queue` before), and the
    lock as `_batch_processor._export_lock`: the SDK offers no public hook. Where no queue is found, nothing is counted
    for a full queue (export failures still are).
    """

    def __init__(self, exporter: SpanExporter, drops: DropCounter, **kwargs: Any) -> None:
        super().__init__(_CountingExporter(exporter, drops, self._handing_over), **kwargs)
        self._drops = drops
        inner: Any = getattr(self, '_batch_processor', self)
        self._queue: Any = getattr(inner, '_queue', None)
        if self._queue is None:
            self._queue = getattr(inner, 'queue', None)
        self._inner: Any = inner
        self._lock = threading.Lock()
        # `next()` of an `itertools.count` is atomic: `on_end` counts with no lock (it runs for every span). Each
        # balance reads it with one more `next()`, so the spans offered are that value less the balances before.
        self._offered = itertools.count()
        self._balances = 0
        self._exported = 0
        self._settled = 0
        self._closed = False
        drops.settle_with(self._settle_now)

    def on_end(self, span: ReadableSpan) -> None:
        super().on_end(span)
        # counted after the SDK queued it: a balance struck in between sees it queued, not offered (an undercount
        # that the next balance makes good, never a span counted lost that was not)
        context = span.context
        if self._queue is not None and context is not None and context.trace_flags.sampled and not self._closed:
            next(self._offered)

    def shutdown(self) -> None:
        self._closed = True  # the SDK ignores spans ended from now on: they were never queued
        super().shutdown()

    def _handing_over(self, spans: int) -> None:
        """The SDK hands a batch to the exporter: every span it popped so far is in this batch or an earlier one."""
        with self._lock:
            self._exported += spans
        self._settle()

    def _settle_now(self) -> None:
        """Strike the balance when the counts are read, if no export is under way (SDK 1.33+); else leave it to the
        next export."""
        lock = getattr(self._inner, '_export_lock', None)  # looked up each time: the SDK makes a new one after a fork
        if lock is not None and lock.acquire(blocking=False):
            try:
                self._settle()
            finally:
                lock.release()

    def _settle(self) -> None:
        if self._queue is None:
            return
        with self._lock:
            offered = next(self._offered) - self._balances  # read before the queue: see `on_end`
            self._balances += 1
            lost = offered - self._exported - len(self._queue)
            if lost > self._settled:
                self._drops.add('queue_full', lost - self._settled)
                self._settled = lost

"""Counting spans lost before export: a full batch-processor queue, or an export that failed.

Without a spool, the OpenTelemetry SDK's `BatchSpanProcessor` drops spans when its queue is full (it only logs a
rate-limited line) and loses a batch whose export failed. `CountingBatchSpanProcessor` counts both, by reason, in a
`DropCounter` that `configure()` exposes as `Telemetry.dropped_spans` and as the counter `tracegraph.export.dropped`
(attribute `reason`: `queue_full`, `export_failed`), so a user can alert on loss.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
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

    def add(self, reason: str, spans: int) -> None:
        """Count `spans` lost for `reason`."""
        if spans:
            with self._lock:
                self._counts[reason] = self._counts.get(reason, 0) + spans

    @property
    def counts(self) -> dict[str, int]:
        """Spans lost so far, by reason."""
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
    """Passes batches on, counting the spans of every failed export."""

    def __init__(self, exporter: SpanExporter, drops: DropCounter) -> None:
        self.exporter = exporter
        self._drops = drops

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
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

    The queue is looked at through the SDK's own fields (`_batch_processor._queue` since 1.33, `queue` before): the
    SDK offers no public hook, and a length check is all it costs per span. Where neither is found, nothing is
    counted for a full queue (export failures still are).
    """

    def __init__(self, exporter: SpanExporter, drops: DropCounter, **kwargs: Any) -> None:
        super().__init__(_CountingExporter(exporter, drops), **kwargs)
        self._drops = drops
        inner: Any = getattr(self, '_batch_processor', self)
        self._queue: Any = getattr(inner, '_queue', None)
        if self._queue is None:
            self._queue = getattr(inner, 'queue', None)
        self._max_queue: int | None = getattr(inner, '_max_queue_size', None) or getattr(inner, 'max_queue_size', None)

    def on_end(self, span: ReadableSpan) -> None:
        queue, limit = self._queue, self._max_queue
        if queue is not None and limit is not None and len(queue) >= limit and span.context.trace_flags.sampled:  # pyright: ignore[reportOptionalMemberAccess]
            self._drops.add('queue_full', 1)  # the SDK drops the oldest span to make room
        super().on_end(span)

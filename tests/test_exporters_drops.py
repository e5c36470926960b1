"""Counting the spans a batch processor loses: every span ended is either exported or counted lost, exactly once,
while many threads end spans into a queue the worker drains at the same time. Only the SDK is needed, so this runs
on the lowest SDK the project allows too (`python3 dev.py test --lowest`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tracegraph.exporters.drops import CountingBatchSpanProcessor, DropCounter


class _Slow(SpanExporter):
    """Keeps what it is given (or refuses it), after a pause long enough for the queue to fill meanwhile."""

    def __init__(self, *, pause: float = 0.0005, refuse: bool = False) -> None:
        self.spans: list[ReadableSpan] = []
        self.pause = pause
        self.refuse = refuse
        self.release = threading.Event()
        self.release.set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait()
        time.sleep(self.pause)
        if self.refuse:
            return SpanExportResult.FAILURE
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _end_spans(provider: TracerProvider, threads: int, each: int) -> None:
    tracer = provider.get_tracer('drops')

    def work() -> None:
        for _ in range(each):
            tracer.start_span('s').end()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _pipeline(exporter: SpanExporter) -> tuple[TracerProvider, CountingBatchSpanProcessor, DropCounter]:
    drops = DropCounter()
    processor = CountingBatchSpanProcessor(
        exporter, drops, max_queue_size=4, max_export_batch_size=2, schedule_delay_millis=1
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return provider, processor, drops


def test_every_span_is_exported_or_counted_lost_exactly_once() -> None:
    # A length check before each span, racing the worker that drains the queue, counted some delivered spans lost.
    for _ in range(5):
        exporter = _Slow()
        provider, processor, drops = _pipeline(exporter)
        _end_spans(provider, threads=4, each=1500)
        assert processor.force_flush(30_000)
        counts = drops.counts
        assert counts.get('queue_full', 0) > 0, 'the queue never filled: the test shows nothing'
        assert len(exporter.spans) + counts['queue_full'] == 6000, counts
        assert set(counts) == {'queue_full'}
        provider.shutdown()


def test_a_refused_batch_is_counted_failed_not_also_dropped() -> None:
    exporter = _Slow(refuse=True)
    provider, processor, drops = _pipeline(exporter)
    _end_spans(provider, threads=2, each=500)
    assert processor.force_flush(30_000)
    counts = drops.counts
    assert counts['export_failed'] + counts.get('queue_full', 0) == 1000, counts
    assert counts['export_failed'] > 0
    provider.shutdown()


def test_counts_read_during_a_stuck_export_never_exceed_what_was_lost() -> None:
    exporter = _Slow()
    exporter.release.clear()  # the first export hangs until released
    provider, processor, drops = _pipeline(exporter)
    _end_spans(provider, threads=1, each=50)
    # At most 4 queued and 2 in the stuck export: at least 44 lost, however far the worker got.
    during = drops.counts.get('queue_full', 0)
    exporter.release.set()
    assert processor.force_flush(30_000)
    after = drops.counts['queue_full']
    assert during <= after
    assert len(exporter.spans) + after == 50 and after >= 44
    provider.shutdown()

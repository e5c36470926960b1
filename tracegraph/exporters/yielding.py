"""Let the application's threads run while an exporter encodes a batch of spans.

Encoding spans to OTLP (or to JSON) is pure Python, about 40 µs per span: one batch of 512 holds the GIL
for ~20 ms, and a thread running a graph that wants it back waits for the interpreter's switch interval
(5 ms) at a time. That wait lands on the graph's steps as a p99 of milliseconds. The encoders iterate
over the batch span by span, so handing them a sequence that sleeps for zero seconds every few spans
(which releases the GIL to a waiting thread, and costs ~1 µs when none waits) bounds the wait to a few
spans' encoding.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import overload

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ('YIELD_EVERY', 'YieldingSpans', 'YieldingSpanExporter')

YIELD_EVERY = 8
"""Spans encoded between two hand-overs of the GIL (~0.3 ms of encoding)."""


def _release_gil() -> None:
    time.sleep(0)


class YieldingSpans(Sequence[ReadableSpan]):
    """A batch of spans whose iteration releases the GIL every `every` spans."""

    def __init__(self, spans: Sequence[ReadableSpan], every: int = YIELD_EVERY) -> None:
        """Wrap `spans`; iterating yields them in order, pausing for zero seconds every `every` spans."""
        self._spans = spans
        self._every = every

    def __len__(self) -> int:
        return len(self._spans)

    @overload
    def __getitem__(self, index: int) -> ReadableSpan: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ReadableSpan]: ...
    def __getitem__(self, index: int | slice) -> ReadableSpan | Sequence[ReadableSpan]:
        return self._spans[index]

    def __iter__(self) -> Iterator[ReadableSpan]:
        every = self._every
        for i, span in enumerate(self._spans):
            if i and not i % every:
                _release_gil()
            yield span


class YieldingSpanExporter(SpanExporter):
    """Wraps an exporter so that its encoding of a batch hands the GIL over every `YIELD_EVERY` spans."""

    def __init__(self, inner: SpanExporter, every: int = YIELD_EVERY) -> None:
        """Wrap `inner`, which receives each batch as `YieldingSpans`."""
        self.inner = inner
        self._every = every

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export `spans` through the wrapped exporter."""
        return self.inner.export(YieldingSpans(spans, self._every))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Shut the wrapped exporter down."""
        self.inner.shutdown()

    def __repr__(self) -> str:
        return f'YieldingSpanExporter({self.inner!r})'

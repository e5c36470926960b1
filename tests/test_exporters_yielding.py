"""Exporters hand the GIL over while they encode a batch, and still send exactly what they were given."""

from __future__ import annotations

from pathlib import Path

import pytest
from exporters_helpers import make_spans
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracegraph.exporters import YieldingSpanExporter, configure, read_spans, yielding
from tracegraph.exporters import spool as spool_module
from tracegraph.exporters.yielding import YIELD_EVERY, YieldingSpans


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each GIL hand-over, recorded as the number of spans iterated so far."""
    seen: list[int] = []
    iterated = [0]
    original_iter = YieldingSpans.__iter__

    def counting_iter(self: YieldingSpans):  # type: ignore[no-untyped-def]
        for span in original_iter(self):
            iterated[0] += 1
            yield span

    monkeypatch.setattr(YieldingSpans, '__iter__', counting_iter)
    monkeypatch.setattr(yielding, '_release_gil', lambda: seen.append(iterated[0]))
    return seen


def test_iteration_releases_every_few_spans_and_keeps_order(releases: list[int]) -> None:
    spans = make_spans(runs=5, nodes=4)  # 25 spans
    wrapped = YieldingSpans(spans)
    assert list(wrapped) == spans
    assert releases == [8, 16, 24]
    assert len(wrapped) == 25
    assert wrapped[3] is spans[3]
    assert list(wrapped[2:4]) == spans[2:4]


def test_encoding_through_the_wrapper_is_byte_identical(releases: list[int]) -> None:
    spans = make_spans(runs=8, nodes=3)
    assert encode_spans(YieldingSpans(spans)).SerializeToString() == encode_spans(spans).SerializeToString()
    assert spool_module._encode(spans) == encode_spans(spans).SerializeToString()  # pyright: ignore[reportPrivateUsage]
    assert len(releases) == 2 * ((len(spans) - 1) // YIELD_EVERY)  # two encodings of 32 spans


def test_exporter_wrapper_delegates(releases: list[int]) -> None:
    memory = InMemorySpanExporter()
    exporter = YieldingSpanExporter(memory)
    spans = make_spans(runs=3, nodes=5)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert list(memory.get_finished_spans()) == spans
    assert exporter.force_flush() is True
    exporter.shutdown()
    assert exporter.export(spans) == SpanExportResult.FAILURE  # the wrapped exporter was shut down
    assert repr(exporter).startswith('YieldingSpanExporter(<opentelemetry.sdk.trace.export.in_memory_span_exporter')


def test_configure_pipelines_encode_through_the_wrapper(tmp_path: Path, releases: list[int]) -> None:
    spans: list[ReadableSpan] = make_spans(runs=6, nodes=4)
    with configure(file=tmp_path / 'spans.jsonl', set_global=False, metrics=False) as telemetry:
        (processor,) = telemetry.span_processors
        for span in spans:
            processor.on_end(span)
        telemetry.force_flush()
    assert len(read_spans(tmp_path / 'spans.jsonl')) == len(spans)
    assert releases  # the file exporter's encoding went through YieldingSpans

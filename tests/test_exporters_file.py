"""The JSON Lines (OTLP/JSON) file exporter and `read_spans`."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import cast

import pytest
from exporters_helpers import Explode, Increment, counter_graph, make_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracegraph
from tracegraph import NodeTimeline
from tracegraph.exporters import JsonLinesSpanExporter, SpoolOptions, TelemetryCapture, configure, read_spans
from tracegraph.tracing import attributes as attr

pytestmark = pytest.mark.anyio


async def test_a_real_run_round_trips_to_the_same_timeline(tmp_path: Path) -> None:
    path = tmp_path / 'spans.jsonl'
    memory = InMemorySpanExporter()
    with TelemetryCapture.start() as capture, configure(file=path, metrics=False, set_global=False) as telemetry:
        cast(TracerProvider, telemetry.tracer_provider).add_span_processor(SimpleSpanProcessor(memory))
        graph = counter_graph(telemetry.tracer_provider)
        await graph.run(Increment(0))
        with pytest.raises(ValueError, match='boom'):
            await graph.run(Explode())
    spans = read_spans(path)
    assert len(spans) == 7
    timelines = NodeTimeline.all_from_spans(spans)
    assert [(t.graph, t.outcome, [n.node_id for n in t.nodes]) for t in timelines] == [
        ('counter', 'completed', ['Increment'] * 4),
        ('counter', 'failed', ['Explode']),
    ]
    failed = timelines[1].nodes[0]
    assert failed.error is not None
    assert (failed.error.type, failed.error.message) == ('ValueError', 'boom')
    assert failed.error.traceback is not None and 'raise ValueError' in failed.error.traceback
    assert capture.spans == []  # the handle's own provider, not the global one, got these spans

    # the spans read back give exactly the timelines of the spans as they were in memory
    assert timelines == NodeTimeline.all_from_spans(memory.get_finished_spans())
    original = {s.context.span_id: s for s in spans if s.context}
    for span in spans:
        assert span.context is not None
        assert span.resource.attributes['telemetry.distro.name'] == 'tracegraph'
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == attr.INSTRUMENTATION_SCOPE
        if attr.NODE_ID in (span.attributes or {}):
            assert span.parent is not None
            assert original[span.parent.span_id].name == 'run graph counter'


def test_lines_use_otlp_json_field_names(tmp_path: Path) -> None:
    spans = make_spans(nodes=1)
    exporter = JsonLinesSpanExporter(tmp_path / 'f.jsonl')
    exporter.export(spans)
    lines = (tmp_path / 'f.jsonl').read_text().splitlines()
    assert len(lines) == 2  # one span per line
    node = json.loads(lines[0])
    (resource_spans,) = node['resourceSpans']
    assert {'key': 'service.name', 'value': {'stringValue': 'helpers'}} in resource_spans['resource']['attributes']
    (scope_spans,) = resource_spans['scopeSpans']
    assert scope_spans['scope'] == {'name': 'tracegraph', 'version': tracegraph.__version__}
    (span,) = scope_spans['spans']
    run_span = spans[1]
    assert run_span.context is not None
    assert span['traceId'] == f'{run_span.context.trace_id:032x}'
    assert span['parentSpanId'] == f'{run_span.context.span_id:016x}'
    assert len(span['spanId']) == 16
    assert span['name'] == 'run node N1'
    assert span['kind'] == 1  # SPAN_KIND_INTERNAL
    assert isinstance(span['startTimeUnixNano'], str)
    assert {'key': 'tracegraph.step', 'value': {'intValue': '1'}} in span['attributes']


def test_failed_spans_keep_status_and_exception_event(tmp_path: Path) -> None:
    spans = make_spans(nodes=2, fail_last=True)
    JsonLinesSpanExporter(tmp_path / 'f.jsonl').export(spans)
    back = read_spans(tmp_path / 'f.jsonl')
    failed = back[1]
    assert failed.status.status_code.name == 'ERROR'
    assert failed.status.description == 'ValueError: boom'
    assert [e.name for e in failed.events] == ['exception']
    assert (failed.events[0].attributes or {})['exception.message'] == 'boom'
    assert all(s.context is not None and s.context.trace_flags.sampled for s in back)
    assert [(s.name, s.kind.name, s.start_time, s.end_time) for s in back] == [
        (s.name, s.kind.name, s.start_time, s.end_time) for s in spans
    ]


_WRITER = textwrap.dedent(
    """
    import sys
    from exporters_helpers import make_spans
    from tracegraph.exporters import JsonLinesSpanExporter

    exporter = JsonLinesSpanExporter(sys.argv[1])
    batch = make_spans(runs=5, nodes=4)  # 25 spans, about 30 kB per write
    for _ in range(20):
        exporter.export(batch)
    """
)


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = tmp_path / 'shared.jsonl'
    env = {**os.environ, 'PYTHONPATH': str(Path(__file__).parent)}
    writers = [
        subprocess.Popen([sys.executable, '-c', _WRITER, str(path)], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
    lines = path.read_text().splitlines()
    assert len(lines) == 3 * 20 * 25
    assert all(json.loads(line)['resourceSpans'] for line in lines)
    assert len(read_spans(path)) == 1500


def test_torn_last_line_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / 'f.jsonl'
    JsonLinesSpanExporter(path).export(make_spans())
    with path.open('a') as f:
        f.write('{"resourceSpans":[{"resou')
    assert len(read_spans(path)) == 4
    assert caplog.record_tuples == [
        (
            'tracegraph.exporters.local.jsonlines',
            logging.WARNING,
            f'tracegraph: skipping the torn last line 5 of {path}',
        )
    ]


def test_a_bad_line_in_the_middle_is_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / 'f.jsonl'
    JsonLinesSpanExporter(path).export(make_spans())
    with path.open('a') as f:
        f.write('not json\n{"resourceSpans":[{"resou\n')  # a torn line, then more good lines after it
    JsonLinesSpanExporter(path).export(make_spans())
    assert len(read_spans(path)) == 8
    assert caplog.record_tuples == [
        (
            'tracegraph.exporters.local.jsonlines',
            logging.WARNING,
            f'tracegraph: skipped 2 lines of {path} that are not trace requests (lines 5, 6)',
        )
    ]
    with pytest.raises(ValueError) as info:
        read_spans(path, strict=True)
    assert str(info.value) == f'{path}:5: not an OTLP/JSON trace request: Expecting value: line 1 column 1 (char 0)'


def test_a_full_disk_leaves_no_torn_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails part-way is cut back: later batches append whole lines after the last good one."""
    import errno
    import os

    path = tmp_path / 'f.jsonl'
    exporter = JsonLinesSpanExporter(path)
    assert exporter.export(make_spans()).name == 'SUCCESS'
    real_pwrite = os.pwrite

    def half_then_enospc(fd: int, data: bytes | memoryview, offset: int) -> int:
        monkeypatch.setattr(os, 'pwrite', real_pwrite)
        real_pwrite(fd, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'pwrite', half_then_enospc)
    assert exporter.export(make_spans()).name == 'FAILURE'
    assert exporter.export(make_spans()).name == 'SUCCESS'
    assert len(read_spans(path, strict=True)) == 8  # no torn line anywhere


def test_reads_collector_style_lines_with_many_spans(tmp_path: Path) -> None:
    spans = make_spans(runs=2)
    path = tmp_path / 'one.jsonl'
    JsonLinesSpanExporter(path).export(spans)
    merged: dict[str, object] = {'resourceSpans': []}
    for line in path.read_text().splitlines():
        merged['resourceSpans'] += json.loads(line)['resourceSpans']
    collector = tmp_path / 'collector.jsonl'
    collector.write_text(json.dumps(merged) + '\n')
    assert [s.name for s in read_spans(collector)] == [s.name for s in spans]
    assert len(NodeTimeline.all_from_spans(read_spans(collector))) == 2


def test_the_file_and_the_spool_directory_are_private(tmp_path: Path) -> None:
    path = tmp_path / 'spans.jsonl'
    spool = tmp_path / 'spool'
    with configure(file=path, spool=SpoolOptions(directory=spool), metrics=False, set_global=False) as telemetry:
        graph = counter_graph(telemetry.tracer_provider)
        graph.run_sync(Increment(2))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700

"""OTLP export from a child process (`configure(export_process=True)`): the same bytes, flushed, and crash behaviour.

Every test sends real spans of real runs to a real OTLP receiver on loopback through a real child process.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from exporters_helpers import (
    Increment,
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    Receiver,
    Reply,
    counter_graph,
    free_port,
    make_spans,
    wait_until,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)
from sample_runs import run_sample_graph

from tracegraph.exporters import ConfigurationError, configure
from tracegraph.exporters.otlp.otlpencode import encode_records
from tracegraph.exporters.process.offload import OffloadSpanProcessor
from tracegraph.exporters.process.spanrecords import RecordReader, RecordWriter, read_frames
from tracegraph.exporters.settings import resolve_target

ROOT = Path(__file__).resolve().parent.parent


def _spans_of_real_runs() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({'service.name': 'offload-test'}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    run_sample_graph(provider)  # nested user spans, a failing run's exception event and ERROR status below
    run_sample_graph(provider, fail=True, error='the answer is not 42')
    return list(exporter.get_finished_spans())


def _unusual_spans() -> list[ReadableSpan]:
    """Spans with every kind of value, kind, link, event, status, trace state and dropped count."""
    exporter = InMemorySpanExporter()
    limits = SpanLimits(max_span_attributes=8, max_events=2, max_links=1, max_event_attributes=2)
    provider = TracerProvider(resource=Resource.create({'service.name': 'odd', 'n': 3}), span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer('odd-scope', '1.2', schema_url='https://opentelemetry.io/schemas/1.21.0')
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1), trace_state=TraceState([('k', 'v')]))
    values: dict[str, Any] = {
        'text': 'é ✓', 'empty': '', 'yes': True, 'no': False, 'zero': 0, 'negative': -7, 'big': 2**62,
        'pi': 3.25, 'list': ('a', 'b'),
    }  # fmt: skip
    for kind in SpanKind:
        with tracer.start_as_current_span(
            f'kind {kind.name}', context=set_span_in_context(NonRecordingSpan(remote)), kind=kind,
            attributes=values, links=[Link(remote, {'why': 'because'}), Link(remote)],
        ) as span:  # fmt: skip
            span.add_event('first', {'a': 1, 'b': [1.5, 2.5], 'c': 'dropped'})
            span.add_event('second')
            span.add_event('third (dropped)')
            span.set_status(Status(StatusCode.ERROR, 'went wrong') if kind.value % 2 else Status(StatusCode.OK))
    with tracer.start_as_current_span(''):  # a root span with no name
        pass
    return list(exporter.get_finished_spans())


def test_the_direct_encoder_writes_the_sdk_encoders_bytes() -> None:
    spans = _spans_of_real_runs() + make_spans(runs=2) + _unusual_spans()  # three resources and scopes
    assert any(s.dropped_attributes and s.dropped_events and s.dropped_links for s in spans)
    writer, buffer = RecordWriter(), bytearray()
    for span in spans:
        buffer += writer.frames(span)
    buffer += b'\x05\x00'  # the start of a frame still on its way stays in the buffer
    reader = RecordReader()
    records = [fields for fields in read_frames(buffer) if reader.keep(fields)]
    assert buffer == bytearray(b'\x05\x00')
    assert len(records) == len(spans)
    assert encode_records(records, reader.resources, reader.scopes) == encode_spans(spans).SerializeToString()


def _by_span(receiver: Receiver) -> dict[str, bytes]:
    return {s.span_id: s.span.SerializeToString() for s in receiver.spans()}


def _target(receiver: Receiver, protocol: str, headers: dict[str, str] | None = None) -> Any:
    return resolve_target(endpoint=receiver.endpoint, protocol=protocol, headers=headers, signal='traces')


@pytest.mark.parametrize('protocol', ['http/protobuf', 'grpc'])
def test_the_backend_receives_what_the_in_process_exporter_sends(protocol: str) -> None:
    receiver_class = OtlpGrpcReceiver if protocol == 'grpc' else OtlpHttpReceiver
    with receiver_class() as direct, receiver_class() as offloaded:
        in_process = configure(endpoint=direct.endpoint, protocol=protocol, metrics=False, set_global=False)
        child = configure(
            endpoint=offloaded.endpoint, protocol=protocol, metrics=False, set_global=False, export_process=True
        )
        for telemetry in (in_process, child):
            graph = counter_graph(telemetry.tracer_provider)
            for _ in range(20):
                graph.run_sync(Increment(0))
        assert child.force_flush()
        assert in_process.force_flush()
        sent, received = _by_span(direct), _by_span(offloaded)
        assert len(received) == len(sent) == 20 * 5
        # Ids and times differ between the two pipelines' runs; everything else of each span is the same.
        assert sorted(len(b) for b in sent.values()) == sorted(len(b) for b in received.values())
        assert {s.resource['service.name'] for s in offloaded.spans()} == {
            s.resource['service.name'] for s in direct.spans()
        }
        child.shutdown()
        in_process.shutdown()


def test_spans_arrive_byte_for_byte() -> None:
    """The same spans through the child and through the SDK's exporter in this process: the same bytes each."""
    spans = _spans_of_real_runs()
    with OtlpHttpReceiver() as direct, OtlpHttpReceiver() as offloaded:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        OTLPSpanExporter(endpoint=f'{direct.endpoint}/v1/traces').export(spans)
        processor = OffloadSpanProcessor(_target(offloaded, 'http/protobuf'))
        for span in spans:
            processor.on_end(span)
        assert processor.force_flush()
        assert _by_span(offloaded) == _by_span(direct)
        processor.shutdown()


def test_shutdown_flushes_and_ends_the_child() -> None:
    with OtlpHttpReceiver() as receiver:
        processor = OffloadSpanProcessor(_target(receiver, 'http/protobuf'))
        pid = processor.child_pid
        for span in make_spans(runs=3):
            processor.on_end(span)
        processor.shutdown()
        assert len(receiver.spans()) == 3 * 4
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped: gone
        assert not processor.force_flush()


def test_headers_go_through_the_pipe_not_the_command_line() -> None:
    with OtlpHttpReceiver() as receiver:
        processor = OffloadSpanProcessor(_target(receiver, 'http/protobuf', {'authorization': 'Bearer s3cret-tok'}))
        cmdline = Path(f'/proc/{processor.child_pid}/cmdline').read_bytes()
        assert b's3cret' not in cmdline
        for span in make_spans():
            processor.on_end(span)
        assert processor.force_flush()
        assert receiver.headers[-1]['authorization'] == 'Bearer s3cret-tok'
        processor.shutdown()


def test_a_dead_export_process_is_replaced() -> None:
    with OtlpHttpReceiver() as receiver:
        processor = OffloadSpanProcessor(_target(receiver, 'http/protobuf'), schedule_delay=0.05)
        first = processor.child_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert wait_until(lambda: _exited(first))
        spans = make_spans(runs=2)
        for span in spans:  # the first write finds the pipe broken: these are counted lost, a new child starts
            processor.on_end(span)
        assert wait_until(lambda: processor.child_pid != first)
        later = make_spans(runs=2)
        for span in later:
            processor.on_end(span)
        assert processor.force_flush()
        received = {s.span_id for s in receiver.spans()}
        assert {f'{s.context.span_id:016x}' for s in later if s.context} <= received
        lost = processor.dropped.counts.get('export_failed', 0)
        assert lost + len(received) == len(spans) + len(later)
        processor.shutdown()


def test_spans_a_killed_export_process_had_not_sent_are_counted_exactly() -> None:
    """Received + counted lost = produced, over several SIGKILLs of the child while spans stream in."""
    with OtlpHttpReceiver() as receiver:
        processor = OffloadSpanProcessor(_target(receiver, 'http/protobuf'), schedule_delay=0.01)
        produced = 0
        for _ in range(4):
            for _ in range(30):
                batch = make_spans(runs=3)
                for span in batch:
                    processor.on_end(span)
                produced += len(batch)
            pid = processor.child_pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)  # with spans in its pipe and in its batches
            assert wait_until(functools.partial(_exited, pid))
        last = make_spans(runs=3)
        for span in last:
            processor.on_end(span)
        produced += len(last)
        assert wait_until(lambda: processor.child_pid is not None)
        processor.force_flush()
        processor.shutdown()
        received = [s.span_id for s in receiver.spans()]
    lost = processor.dropped.counts.get('export_failed', 0)
    assert len(received) == len(set(received))
    assert lost > 0 and len(received) + lost == produced, (len(received), lost, produced)


def _exited(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == pid


def test_spans_survive_a_sigkill_of_the_graph_process() -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        sys.path.insert(0, sys.argv[2])
        from exporters_helpers import counter_graph, Increment
        from tracegraph.exporters import configure

        telemetry = configure(endpoint=sys.argv[1], metrics=False, set_global=False, export_process=True)
        graph = counter_graph(telemetry.tracer_provider)
        for _ in range(50):
            graph.run_sync(Increment(0))
        time.sleep(0.6)  # longer than the writer's schedule delay: every frame is in the pipe
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    with OtlpHttpReceiver() as receiver:
        done = subprocess.run(
            [sys.executable, '-c', script, receiver.endpoint, str(ROOT / 'tests')], capture_output=True, timeout=120
        )
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()
        assert wait_until(lambda: len(receiver.spans()) == 50 * 5, timeout=30), len(receiver.spans())


def test_export_process_needs_otlp_and_not_a_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracegraph.exporters import SpoolOptions

    with pytest.raises(ConfigurationError) as raised:
        configure(spool=SpoolOptions(directory=tmp_path), export_process=True, set_global=False, metrics=False)
    assert str(raised.value) == (
        'export_process=True and spool= both choose who sends the spans: the spool sends them itself; pass one.'
    )
    monkeypatch.setenv('OTEL_TRACES_EXPORTER', 'console')
    with pytest.raises(ConfigurationError) as raised:
        configure(export_process=True, set_global=False, metrics=False)
    assert str(raised.value) == (
        'export_process=True sends OTLP spans from a child process, but no OTLP span export is configured '
        '(OTEL_TRACES_EXPORTER=console).'
    )


def test_a_slow_backend_slows_the_child_and_loses_nothing() -> None:
    """While the child waits on the backend it reads nothing: the pipe fills instead of a queue dropping spans."""
    spans = make_spans(runs=200, nodes=7)  # 1,600 spans, more than the SDK batch processor's default queue
    with OtlpHttpReceiver() as receiver:
        receiver.default_delay = 0.2
        processor = OffloadSpanProcessor(_target(receiver, 'http/protobuf'))
        for span in spans:
            processor.on_end(span)
        assert processor.force_flush(60_000)
        assert len(receiver.spans()) == len(spans)
        assert processor.dropped.counts == {}
        processor.shutdown()


def test_a_batch_the_backend_refuses_is_counted() -> None:
    with OtlpHttpReceiver() as receiver:
        receiver.script(Reply(status=400))  # not retryable: the SDK exporter gives the batch up
        processor = OffloadSpanProcessor(_target(receiver, 'http/protobuf'))
        for span in make_spans(runs=2):
            processor.on_end(span)
        assert processor.force_flush()
        assert wait_until(lambda: processor.dropped.counts == {'export_failed': 8})
        for span in make_spans(runs=1):
            processor.on_end(span)
        assert processor.force_flush()
        assert len(receiver.spans()) == 4
        processor.shutdown()


def test_a_forked_worker_gets_an_export_process_of_its_own() -> None:
    script = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, sys.argv[2])
        from exporters_helpers import counter_graph, Increment
        from tracegraph.exporters import configure

        telemetry = configure(endpoint=sys.argv[1], metrics=False, set_global=False, export_process=True)
        parent_child = telemetry.span_processors[0].child_pid
        pid = os.fork()
        if pid == 0:  # a pre-forking server's worker
            graph = counter_graph(telemetry.tracer_provider)
            for _ in range(10):
                graph.run_sync(Increment(0))
            processor = telemetry.span_processors[0]
            ok = telemetry.force_flush() and processor.child_pid not in (None, parent_child)
            telemetry.shutdown()
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        telemetry.shutdown()
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    with OtlpHttpReceiver() as receiver:
        done = subprocess.run(
            [sys.executable, '-c', script, receiver.endpoint, str(ROOT / 'tests')], capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr.decode()
        assert len(receiver.spans()) == 10 * 5


def test_an_export_process_that_cannot_start_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, 'executable', '/nonexistent/python')
    with OtlpHttpReceiver() as receiver, pytest.raises(ConfigurationError) as raised:
        OffloadSpanProcessor(_target(receiver, 'http/protobuf'))
    assert str(raised.value).startswith(
        'export_process=True could not start `/nonexistent/python -m tracegraph.exporters.process.offload`: '
    )


def _span_processor_names(**kwargs: Any) -> list[str]:
    with configure(endpoint='http://127.0.0.1:9', metrics=False, set_global=False, **kwargs) as telemetry:
        return [type(p).__name__ for p in telemetry.span_processors]


def test_configure_exports_in_process_unless_the_child_is_asked_for(tmp_path: Path) -> None:
    """The SDK's batch processor and exporter by default; the child process only with `export_process=True`."""
    assert _span_processor_names() == ['CountingBatchSpanProcessor']
    assert _span_processor_names(export_process=True) == ['OffloadSpanProcessor']
    assert _span_processor_names(export_process=False) == ['CountingBatchSpanProcessor']


def test_the_environment_variable_chooses_and_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tracegraph.exporters import SpoolOptions

    monkeypatch.setenv('TRACEGRAPH_EXPORT_PROCESS', 'off')
    assert _span_processor_names() == ['CountingBatchSpanProcessor']
    assert _span_processor_names(export_process=True) == ['OffloadSpanProcessor']  # the argument wins
    monkeypatch.setenv('TRACEGRAPH_EXPORT_PROCESS', '1')
    with pytest.raises(ConfigurationError) as raised:
        _span_processor_names(spool=SpoolOptions(directory=tmp_path))
    assert str(raised.value) == (
        'TRACEGRAPH_EXPORT_PROCESS=1 and spool= both choose who sends the spans: the spool sends them itself; pass one.'
    )
    with monkeypatch.context() as m, pytest.raises(ConfigurationError) as raised:
        m.setattr(sys, 'frozen', True, raising=False)
        _span_processor_names()
    assert str(raised.value) == (
        'TRACEGRAPH_EXPORT_PROCESS=1 cannot start the export process here: '
        'this is a frozen application (sys.frozen is set).'
    )
    monkeypatch.setenv('TRACEGRAPH_EXPORT_PROCESS', 'sometimes')
    with pytest.raises(ConfigurationError) as raised:
        _span_processor_names()
    assert str(raised.value) == (
        "TRACEGRAPH_EXPORT_PROCESS='sometimes': expected one of 1, true, yes, on, 0, false, no, off."
    )


@pytest.mark.parametrize('kind', ['http', 'grpc'])
def test_the_export_process_bridges_a_short_outage(kind: str) -> None:
    """The backend is down when the flush starts and comes up a moment later: the child's retries deliver it all."""
    port = free_port()
    protocol = 'grpc' if kind == 'grpc' else 'http/protobuf'
    with configure(
        endpoint=f'http://127.0.0.1:{port}', protocol=protocol, metrics=False, set_global=False
    ) as telemetry:
        counter_graph(telemetry.tracer_provider).run_sync(Increment(0))
        results: list[bool] = []
        flushed = threading.Thread(target=lambda: results.append(telemetry.force_flush()))
        flushed.start()
        time.sleep(0.5)  # the child's first attempt meets the closed port
        with OtlpHttpReceiver(port) if kind == 'http' else OtlpGrpcReceiver(port) as receiver:
            flushed.join(30)
            assert results == [True]
            assert len(receiver.spans()) == 5
        assert telemetry.dropped_spans == {}

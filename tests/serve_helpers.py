"""Helpers for the dashboard tests: sample runs made with the plain OpenTelemetry SDK, exporters and bodies."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
from tracing_helpers import make_pipeline

from tracegraph.dashboard.server import ServerThread
from tracegraph.exporters.otlpjson import trace_request_to_json
from tracegraph.tracing import attributes as attr

__all__ = (
    'SampleRun',
    'emit_run',
    'exporting_provider',
    'json_body',
    'protobuf_body',
    'running_server',
    'Served',
    'serve_process',
    'crafted_run',
    'kv',
    'crafted_body',
    'trace_of',
)

MS = 1_000_000


@dataclass(kw_only=True)
class SampleRun:
    """What `emit_run` produced: ids and the expected shape of the run."""

    graph: str
    run_id: str
    trace_id: str
    run_span_id: str
    nodes: list[tuple[str, float]]
    """(node id, duration in seconds) per step."""
    node_span_ids: list[int]
    outcome: str


def emit_run(
    provider: TracerProvider,
    *,
    graph: str = 'sample',
    fail: bool = False,
    start_ns: int | None = None,
    steps: Sequence[str] = ('Fetch', 'Think', 'Answer'),
    parent: Context | None = None,
) -> SampleRun:
    """Emit one run span with a node span per step (10, 20, 30 ms...) carrying the contract attributes.

    The second step opens a nested user span (and a grandchild). With `fail`, the last step raises a
    `ValueError` recorded with `record_exception`, both node and run end with status ERROR.
    """
    tracer = provider.get_tracer(attr.INSTRUMENTATION_SCOPE)
    run_id = uuid.uuid4().hex
    t0 = start_ns if start_ns is not None else time.time_ns()
    run_span = tracer.start_span(
        attr.RUN_SPAN_TEMPLATE.format(graph_name=graph),
        kind=SpanKind.INTERNAL,
        start_time=t0,
        context=parent,
        attributes={attr.GRAPH_NAME: graph, attr.RUN_ID: run_id, attr.RUN_START_NODE: steps[0]},
    )
    ctx = set_span_in_context(run_span)
    t = t0 + MS
    nodes: list[tuple[str, float]] = []
    node_span_ids: list[int] = []
    for i, node_id in enumerate(steps, start=1):
        duration = 10 * i * MS
        last = i == len(steps)
        failing = fail and last
        next_node = None if failing else ('End' if last else steps[i])
        node_attrs: dict[str, Any] = {
            attr.GRAPH_NAME: graph,
            attr.RUN_ID: run_id,
            attr.NODE_ID: node_id,
            attr.NODE_STEP: i,
            attr.NODE_OUTCOME: 'failed' if failing else 'completed',
            attr.NODE_INPUT: json.dumps({'n': i}),
        }
        if next_node is not None:
            node_attrs[attr.NODE_NEXT] = next_node
        span = tracer.start_span(
            attr.NODE_SPAN_TEMPLATE.format(node_id=node_id), context=ctx, start_time=t, attributes=node_attrs
        )
        if i == 2:
            child = tracer.start_span(
                'call model', context=set_span_in_context(span), start_time=t + 2 * MS, attributes={'model': 'm1'}
            )
            grandchild = tracer.start_span('http POST', context=set_span_in_context(child), start_time=t + 3 * MS)
            grandchild.end(end_time=t + 5 * MS)
            child.end(end_time=t + 8 * MS)
        if failing:
            try:
                raise ValueError('the answer is not 42')
            except ValueError as exc:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
        span.end(end_time=t + duration)
        nodes.append((node_id, duration / 1e9))
        node_span_ids.append(span.get_span_context().span_id)
        t += duration + MS
    run_span.set_attribute(attr.RUN_STEPS, len(steps))
    run_span.set_attribute(attr.RUN_OUTCOME, 'failed' if fail else 'completed')
    if fail:
        run_span.set_status(Status(StatusCode.ERROR, 'the answer is not 42'))
    run_span.end(end_time=t)
    ctx_ = run_span.get_span_context()
    return SampleRun(
        graph=graph,
        run_id=run_id,
        trace_id=f'{ctx_.trace_id:032x}',
        run_span_id=f'{ctx_.span_id:016x}',
        nodes=nodes,
        node_span_ids=node_span_ids,
        outcome='failed' if fail else 'completed',
    )


@contextmanager
def exporting_provider(
    url: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    gzip: bool = False,
) -> Generator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A TracerProvider exporting through the real OTLP/HTTP exporter to `url` (when given) and to memory."""
    pipeline = make_pipeline('dashboard-tests')
    provider, memory = pipeline.tracer_provider, pipeline.exporter
    if url is not None:
        exporter = OTLPSpanExporter(
            endpoint=f'{url}/v1/traces',
            headers=headers,
            timeout=10,
            compression=Compression.Gzip if gzip else Compression.NoCompression,
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield provider, memory
    finally:
        provider.shutdown()


def protobuf_body(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP protobuf body the exporters send for `spans`."""
    return encode_spans(spans).SerializeToString()


def json_body(spans: Sequence[ReadableSpan]) -> bytes:
    """The OTLP/JSON body for `spans` (ids in hex, as the OTLP JSON encoding wants), as the file exporter writes it."""
    return json.dumps(trace_request_to_json(encode_spans(spans))).encode()


@contextmanager
def running_server(**kwargs: Any) -> Generator[ServerThread]:
    """A dashboard on an ephemeral 127.0.0.1 port with an in-memory store (unless `db=` is given)."""
    with ServerThread(**kwargs) as server:
        yield server


@dataclass(kw_only=True)
class Served:
    """A `tracegraph serve` process: its banner lines, its URL and a way to read what it prints later."""

    proc: subprocess.Popen[str]
    banner: list[str]
    lines: queue.Queue[str]

    @property
    def url(self) -> str:
        return self.banner[0].split()[-1]


@contextmanager
def serve_process(data: Path, *args: str, banner_lines: int = 4) -> Generator[Served]:
    """`python -m tracegraph.cli serve --port 0 ARGS` with its store under `data`, stopped with Ctrl-C after."""
    env = {**os.environ, 'COLUMNS': '250', 'XDG_DATA_HOME': str(data)}
    proc = subprocess.Popen(
        [sys.executable, '-m', 'tracegraph.cli', 'serve', '--port', '0', *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip('\n'))

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    banner: list[str] = []
    deadline = time.monotonic() + 30
    while len(banner) < banner_lines and time.monotonic() < deadline:
        try:
            banner.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
        except queue.Empty:
            break
    try:
        yield Served(proc=proc, banner=banner, lines=lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        assert proc.stdout is not None
        pumping.join(5)
        if not pumping.is_alive():  # else a process it left behind holds the pipe: closing would block on the reader
            proc.stdout.close()


def kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def crafted_run(
    *,
    graph: str = 'g',
    outcome: str = 'completed',
    start: int | None = None,
    end: int | None = None,
    step: int = 1,
    kind: int = 1,
    nodes: int = 1,
) -> list[PbSpan]:
    """A run span and `nodes` node spans of one new trace, with the contract attributes, made field by field (for
    values no SDK would send: odd kinds, timestamps and outcomes)."""
    trace_id, now = os.urandom(16), time.time_ns()
    start = now if start is None else start
    end = now + 1_000_000 if end is None else end
    run_id = trace_id.hex()[:12]
    common = [kv(attr.GRAPH_NAME, graph), kv(attr.RUN_ID, run_id)]
    run = PbSpan(
        trace_id=trace_id,
        span_id=os.urandom(8),
        name=f'run graph {graph}',
        kind=PbSpan.SpanKind.ValueType(1),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
        attributes=[*common, kv(attr.RUN_OUTCOME, outcome), kv(attr.RUN_STEPS, nodes)],
    )
    node_spans = [
        PbSpan(
            trace_id=trace_id,
            span_id=os.urandom(8),
            parent_span_id=run.span_id,
            name='run node N',
            kind=PbSpan.SpanKind.ValueType(kind),
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=[
                *common,
                kv(attr.NODE_ID, 'N'),
                kv(attr.NODE_STEP, step + i),
                kv(attr.NODE_OUTCOME, 'completed'),
            ],
        )
        for i in range(nodes)
    ]
    return [run, *node_spans]


def crafted_body(*spans: PbSpan) -> bytes:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request.SerializeToString()


def trace_of(spans: list[PbSpan]) -> str:
    return spans[0].trace_id.hex()

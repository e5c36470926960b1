"""Helpers for the dashboard tests: sample runs of real graphs, exporters, bodies and crafted hostile spans."""

from __future__ import annotations

import json
import os
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sample_runs import SampleRunResult, run_sample_graph
from tracing_helpers import make_pipeline

from tracegraph.dashboard.server.server import ServerThread
from tracegraph.exporters.otlp.otlpjson import trace_request_to_json
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

SampleRun = SampleRunResult

emit_run = run_sample_graph
"""One run of a real graph (`Fetch`, `Think`, `Answer` by default) on a fixed clock; see `sample_runs`."""


@contextmanager
def exporting_provider(
    url: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    gzip: bool = False,
    service: str = 'dashboard-tests',
) -> Generator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A TracerProvider of `service` exporting through the real OTLP/HTTP exporter to `url` (when given), and to
    memory; each span is sent as it ends."""
    pipeline = make_pipeline(service)
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
def serve_process(
    data: Path, *args: str, banner_lines: int = 5, max_open_files: int | None = None
) -> Generator[Served]:
    """`python -m tracegraph.cli serve --port 0 --grpc-port 0 ARGS` with its store under `data`, stopped with Ctrl-C
    after (`--no-grpc` in `args` leaves gRPC off; the banner then has a line less); `max_open_files` caps the
    process's open files (its hard limit)."""

    def limit() -> None:
        if max_open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max_open_files, max_open_files))

    env = {**os.environ, 'COLUMNS': '250', 'XDG_DATA_HOME': str(data)}
    grpc = [] if '--no-grpc' in args else ['--grpc-port', '0']
    proc = subprocess.Popen(
        [sys.executable, '-m', 'tracegraph.cli', 'serve', '--port', '0', *grpc, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=limit if max_open_files is not None else None,
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

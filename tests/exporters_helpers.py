"""Real OTLP receivers on loopback for the exporter tests (and bench/export.py): HTTP/protobuf and gRPC.

Both decode the collector's `ExportTraceServiceRequest` / `ExportMetricsServiceRequest` with
`opentelemetry-proto`, remember what they accepted, and answer according to a script of `Reply`s
(one per trace request, then 200/OK), so tests can inject 500s, 503 + Retry-After, 429 and slowness.

Run as a script to serve until killed: `python tests/exporters_helpers.py http|grpc PORT [DELAY]`.
"""

from __future__ import annotations

import gzip
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.trace import ReadableSpan
from ports import free_port
from sample_runs import run_sample_graph
from tracing_helpers import make_pipeline

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings
from tracegraph.exporters.otlp.otlpjson import attributes_dict

__all__ = (
    'Reply',
    'ReceivedSpan',
    'Receiver',
    'OtlpHttpReceiver',
    'OtlpGrpcReceiver',
    'free_port',
    'attrs_of',
    'wait_until',
    'make_spans',
    'Increment',
    'Explode',
    'counter_graph',
)


@dataclass
class Increment(BaseNode[None, None, int]):
    """Counts up to 3, one step at a time."""

    n: int

    async def run(self, ctx: GraphRunContext) -> Increment | End[int]:
        return Increment(self.n + 1) if self.n < 3 else End(self.n)


@dataclass
class Explode(BaseNode[None, None, int]):
    """Always fails."""

    async def run(self, ctx: GraphRunContext) -> End[int]:
        raise ValueError('boom')


def counter_graph(tracer_provider: Any = None, meter_provider: Any = None) -> Graph[None, None, int]:
    """The graph `counter` of `Increment` and `Explode`, sending to the given providers (the global ones if None)."""
    settings = InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=meter_provider)
    return Graph(nodes=(Increment, Explode), name='counter', instrumentation=settings)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds passed; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def make_spans(runs: int = 1, nodes: int = 3, *, graph: str = 'g', fail_last: bool = False) -> list[ReadableSpan]:
    """Finished spans of `runs` real runs of a graph through nodes `N1`…`Nn` (the last raising with `fail_last`)."""
    pipeline = make_pipeline('helpers')
    steps = tuple(f'N{i}' for i in range(1, nodes + 1))
    for _ in range(runs):
        run_sample_graph(
            pipeline.tracer_provider, graph=graph, steps=steps, fail=fail_last, error='boom', nested_calls=False
        )
    pipeline.tracer_provider.shutdown()
    return list(pipeline.exporter.get_finished_spans())


def attrs_of(items: Any) -> dict[str, Any]:
    """Decoded `KeyValue` list as a dict (the product's decoder: one way to read OTLP values)."""
    return attributes_dict(items)


@dataclass(frozen=True, kw_only=True)
class Reply:
    """How to answer one trace request: an HTTP status (or gRPC code), extra headers, a delay, a retry delay."""

    status: int = 200
    grpc_code: grpc.StatusCode | None = None
    headers: dict[str, str] = field(default_factory=dict[str, str])
    delay: float = 0.0
    retry_delay: float | None = None
    """gRPC: a `google.rpc.RetryInfo` delay sent in the `grpc-status-details-bin` trailer."""


@dataclass(frozen=True, kw_only=True)
class ReceivedSpan:
    """One accepted span with the resource and scope it came with."""

    span: PbSpan
    resource: dict[str, Any]
    scope: str

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return attrs_of(self.span.attributes)


_R = TypeVar('_R', bound='Receiver')


class Receiver:
    """What both receivers share: the reply script and what was accepted, guarded by one lock; a context manager
    that serves while inside it."""

    port: int
    endpoint: str

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _R) -> _R:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[bytes] = []
        """Every request body received, as it came over the wire."""
        self.replies: list[Reply] = []
        self.trace_requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.metric_requests: list[metrics_service_pb2.ExportMetricsServiceRequest] = []
        self.attempts = 0
        self.attempt_times: list[float] = []
        self.headers: list[dict[str, str]] = []
        self.default_delay = 0.0
        self.keep = True
        """False: count accepted spans without keeping the requests (for long benchmarks)."""
        self.drop_idle_connections = False
        """True: close each connection after answering, without saying so (as a backend's idle timeout does)."""
        self.span_count = 0
        self.refuse: Callable[[trace_service_pb2.ExportTraceServiceRequest], bool] = lambda _request: False
        """HTTP: answer 503 to every trace request this is true of (a batch the backend keeps refusing)."""

    def script(self, *replies: Reply) -> None:
        """Answer the next trace requests with these replies, in order."""
        with self.lock:
            self.replies.extend(replies)

    def next_reply(self, headers: dict[str, str]) -> Reply:
        with self.lock:
            self.attempts += 1
            self.attempt_times.append(time.monotonic())
            self.headers.append(headers)
            return self.replies.pop(0) if self.replies else Reply(delay=self.default_delay)

    def accept_traces(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with self.lock:
            self.span_count += count
            if self.keep:
                self.trace_requests.append(request)

    def accept_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> None:
        with self.lock:
            self.metric_requests.append(request)

    def spans(self) -> list[ReceivedSpan]:
        """Every span accepted so far (duplicates included), in arrival order."""
        with self.lock:
            requests = list(self.trace_requests)
        return [
            ReceivedSpan(span=span, resource=attrs_of(rs.resource.attributes), scope=ss.scope.name)
            for request in requests
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def span_ids(self) -> set[str]:
        """Hex ids of the spans accepted so far."""
        return {s.span_id for s in self.spans()}

    def metric_names(self) -> set[str]:
        """Names of every metric accepted so far."""
        with self.lock:
            requests = list(self.metric_requests)
        return {m.name for r in requests for rm in r.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

    def metrics(self, name: str) -> list[Any]:
        """Every accepted `Metric` message called `name`."""
        with self.lock:
            requests = list(self.metric_requests)
        return [
            m
            for r in requests
            for rm in r.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
        ]


class OtlpHttpReceiver(Receiver):
    """OTLP/HTTP (protobuf) receiver on 127.0.0.1: `POST /v1/traces` and `POST /v1/metrics`."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get('Content-Length', '0')))
                with receiver.lock:
                    receiver.bodies.append(body)  # as it came over the wire
                if self.headers.get('Content-Encoding', '').lower() == 'gzip':
                    body = gzip.decompress(body)
                if self.path == '/v1/metrics':
                    receiver.accept_metrics(metrics_service_pb2.ExportMetricsServiceRequest.FromString(body))
                    self._answer(200, metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString())
                    return
                if self.path != '/v1/traces':
                    self._answer(404, b'')
                    return
                reply = receiver.next_reply({k.lower(): v for k, v in self.headers.items()})
                if receiver.refuse(trace_service_pb2.ExportTraceServiceRequest.FromString(body)):
                    reply = Reply(status=503)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.status == 200:
                    receiver.accept_traces(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
                    self._answer(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())
                else:
                    self._answer(reply.status, b'', reply.headers)
                if receiver.drop_idle_connections:
                    self.close_connection = True

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header('Content-Type', 'application/x-protobuf')
                self.send_header('Content-Length', str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(('127.0.0.1', port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.endpoint = f'http://127.0.0.1:{self.port}'
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={'poll_interval': 0.05})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class OtlpGrpcReceiver(Receiver):
    """OTLP/gRPC receiver on 127.0.0.1: a real `grpcio` server with `TraceService` and `MetricsService`."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                reply = receiver.next_reply(dict(context.invocation_metadata()))
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.grpc_code is not None:
                    if reply.retry_delay is not None:
                        info = error_details_pb2.RetryInfo(
                            retry_delay=duration_pb2.Duration(
                                seconds=int(reply.retry_delay), nanos=int(reply.retry_delay % 1 * 1e9)
                            )
                        )
                        status = status_pb2.Status(code=reply.grpc_code.value[0], message='busy')
                        status.details.add().Pack(info)
                        context.set_trailing_metadata((('grpc-status-details-bin', status.SerializeToString()),))
                    context.abort(reply.grpc_code, 'injected by the test receiver')
                receiver.accept_traces(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                receiver.accept_metrics(request)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), self._server)  # pyright: ignore[reportUnknownMemberType]  # generated, untyped
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self._server)  # pyright: ignore[reportUnknownMemberType]
        self.port = self._server.add_insecure_port(f'127.0.0.1:{port}')
        self.endpoint = f'http://127.0.0.1:{self.port}'

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)


def _main(argv: list[str]) -> None:
    kind, port = argv[0], int(argv[1])
    receiver: Receiver
    receiver = OtlpGrpcReceiver(port) if kind == 'grpc' else OtlpHttpReceiver(port)
    receiver.default_delay = float(argv[2]) if len(argv) > 2 else 0.0
    with receiver:
        print(f'listening {receiver.port}', flush=True)
        while True:
            time.sleep(3600)


if __name__ == '__main__':
    _main(sys.argv[1:])

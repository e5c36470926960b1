"""Dashboard benchmark (run by hand): OTLP/HTTP ingest rate and JSON API latency with 1,000,000 spans stored.

    .venv/bin/python bench/dashboard.py [--spans 1000000] [--batch 512] [--clients 4] [--requests 40]

Starts `tracegraph serve` as its own process on a free 127.0.0.1 port with a fresh DuckDB file, sends
pre-encoded protobuf `ExportTraceServiceRequest`s of `--batch` spans (graph runs shaped like tracegraph's:
a run span, node spans with the contract attributes, one nested span per node, ~3% failing nodes with
an exception event) over keep-alive connections, then times every JSON API call and page.
Targets: >= 50,000 spans/s ingest, p95 < 200 ms per API call.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

GRAPHS = [f'bench_graph_{i}' for i in range(5)]
NODES = ['UserPromptNode', 'ModelRequestNode', 'CallToolsNode', 'Retrieve', 'Rank', 'Summarise', 'Check', 'Answer']
SPANS_PER_RUN = 1 + 2 * len(NODES)
TARGET_INGEST = 50_000
TARGET_P95_MS = 200.0


def kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def make_run(rng: random.Random, start_ns: int) -> list[Span]:
    """The spans of one run: run span, node spans, one nested span per node."""
    graph = rng.choice(GRAPHS)
    run_id = uuid.UUID(int=rng.getrandbits(128)).hex
    trace_id = rng.getrandbits(128).to_bytes(16, 'big')
    run_span_id = rng.getrandbits(64).to_bytes(8, 'big')
    spans: list[Span] = []
    t = start_ns + 100_000
    failed = False
    for step, node in enumerate(NODES, start=1):
        dur = int(rng.lognormvariate(13.5, 0.8))  # ~0.7 ms median, long tail
        fails = rng.random() < 0.03
        node_span_id = rng.getrandbits(64).to_bytes(8, 'big')
        attrs = [
            kv('tracegraph.graph.name', graph),
            kv('tracegraph.run.id', run_id),
            kv('tracegraph.node.id', node),
            kv('tracegraph.step', step),
            kv('tracegraph.node.outcome', 'failed' if fails else 'completed'),
            kv('tracegraph.node.input', json.dumps({'query': f'q{rng.randrange(1000)}', 'step': step})),
            kv('logfire.msg_template', 'run node {node_id}'),
            kv('logfire.msg', f'run node {node}'),
            kv('logfire.span_type', 'span'),
        ]
        if not fails:
            attrs.append(kv('tracegraph.node.next', NODES[step] if step < len(NODES) else 'End'))
        span = Span(
            trace_id=trace_id, span_id=node_span_id, parent_span_id=run_span_id, name=f'run node {node}', kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=t, end_time_unix_nano=t + dur, attributes=attrs,
        )  # fmt: skip
        if fails:
            span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message='boom'))
            ev = span.events.add()
            ev.name = 'exception'
            ev.time_unix_nano = t + dur
            ev.attributes.extend(
                [kv('exception.type', 'ValueError'), kv('exception.message', 'boom'),
                 kv('exception.stacktrace', 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom')]
            )  # fmt: skip
        spans.append(span)
        spans.append(
            Span(
                trace_id=trace_id, span_id=rng.getrandbits(64).to_bytes(8, 'big'), parent_span_id=node_span_id,
                name='http POST', kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=t + dur // 4, end_time_unix_nano=t + dur // 2,
                attributes=[kv('http.method', 'POST'), kv('http.status_code', 200)],
            )
        )  # fmt: skip
        t += dur + 50_000
        if fails:
            failed = True
            break
    run = Span(
        trace_id=trace_id, span_id=run_span_id, name=f'run graph {graph}', kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=start_ns,
        end_time_unix_nano=t,
        attributes=[
            kv('tracegraph.graph.name', graph), kv('tracegraph.run.id', run_id),
            kv('tracegraph.run.start_node', NODES[0]), kv('tracegraph.run.steps', len(spans) // 2),
            kv('tracegraph.run.outcome', 'failed' if failed else 'completed'),
        ],
    )  # fmt: skip
    if failed:
        run.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message='boom'))
    return [run, *spans]


def make_bodies(total: int, batch: int, seed: int = 7) -> list[bytes]:
    """Pre-encoded requests of `batch` spans each, runs spread over the last hour."""
    rng = random.Random(seed)
    now = time.time_ns()
    pending: list[Span] = []
    bodies: list[bytes] = []
    made = 0
    while made < total:
        start = now - 3_600_000_000_000 + int(made / total * 3_600_000_000_000)
        run = make_run(rng, start)
        pending.extend(run)
        made += len(run)
        while len(pending) >= batch:
            bodies.append(request_body(pending[:batch]))
            del pending[:batch]
    if pending:
        bodies.append(request_body(pending))
    return bodies


def request_body(spans: list[Span]) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(kv('service.name', 'bench'))
    ss = rs.scope_spans.add()
    ss.scope.name = 'tracegraph'
    ss.spans.extend(spans)
    return req.SerializeToString()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` and its live descendants (Linux /proc)."""
    tick = os.sysconf('SC_CLK_TCK')
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f'/proc/{p}/stat').read_text().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f'/proc/{p}/task').iterdir():
                todo.extend(int(c) for c in (task / 'children').read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def wait_up(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=2)
            conn.request('GET', '/healthz')
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit('the server did not start')


def _send_all(bodies: list[bytes], clients: int, sender: Callable[[], Callable[[bytes], str | None]]) -> float:
    """Send every body with `clients` senders in parallel (each from `sender()`: a body in, an error or None out);
    returns elapsed seconds."""
    queue = list(reversed(bodies))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        send = sender()
        while True:
            with lock:
                if not queue or errors:
                    return
                body = queue.pop()
            error = send(body)
            if error is not None:
                errors.append(error)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f'ingest failed: {errors[:3]}')
    return time.perf_counter() - t0


def ingest(port: int, bodies: list[bytes], clients: int) -> float:
    """Send every body over OTLP/HTTP (`clients` keep-alive connections in parallel); returns elapsed seconds."""

    def sender() -> Callable[[bytes], str | None]:
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)

        def send(body: bytes) -> str | None:
            conn.request('POST', '/v1/traces', body=body, headers={'Content-Type': 'application/x-protobuf'})
            resp = conn.getresponse()
            resp.read()
            return None if resp.status == 200 else str(resp.status)

        return send

    return _send_all(bodies, clients, sender)


def ingest_grpc(port: int, bodies: list[bytes], clients: int) -> float:
    """Send every body over OTLP/gRPC (`clients` channels in parallel, raw bytes); returns elapsed seconds."""
    import grpc

    def sender() -> Callable[[bytes], str | None]:
        channel = grpc.insecure_channel(f'127.0.0.1:{port}')
        export: Any = cast(Any, channel).unary_unary('/opentelemetry.proto.collector.trace.v1.TraceService/Export')

        def send(body: bytes) -> str | None:
            try:
                export(body, timeout=60)
            except grpc.RpcError as exc:
                return str(exc)
            return None

        return send

    return _send_all(bodies, clients, sender)


def time_get(conn: http.client.HTTPConnection, path: str) -> float:
    t0 = time.perf_counter()
    conn.request('GET', path)
    resp = conn.getresponse()
    resp.read()
    elapsed = time.perf_counter() - t0
    if resp.status != 200:
        raise SystemExit(f'GET {path} -> {resp.status}')
    return elapsed * 1000


def get_json(conn: http.client.HTTPConnection, path: str) -> object:
    conn.request('GET', path)
    return json.loads(conn.getresponse().read())


def get_link(conn: http.client.HTTPConnection, path: str) -> str | None:
    """The `Link` header's `rel="next"` URL of `path`'s answer."""
    conn.request('GET', path)
    reply = conn.getresponse()
    reply.read()
    for part in (reply.getheader('Link') or '').split(','):
        if 'rel="next"' in part:
            return part.strip().split(';')[0].strip('<>')
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--spans', type=int, default=1_000_000)
    parser.add_argument('--batch', type=int, default=512)
    parser.add_argument('--clients', type=int, default=4, help='concurrent keep-alive connections')
    parser.add_argument('--requests', type=int, default=40, help='timed requests per API call')
    parser.add_argument('--decode-workers', type=int, default=None, help="the server's --decode-workers")
    parser.add_argument('--protocol', choices=('http', 'grpc'), default='http', help='OTLP transport for ingest')
    args = parser.parse_args()

    t0 = time.perf_counter()
    bodies = make_bodies(args.spans, args.batch)
    print(f'encoded {len(bodies)} requests of {args.batch} spans in {time.perf_counter() - t0:.1f}s '
          f'({sum(map(len, bodies)) / 1e6:.0f} MB)', flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / 'bench.duckdb'
        port, grpc_port = free_port(), free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                *(os.environ.get('BENCH_SERVER', '-m tracegraph.cli serve').split()),
                '--port',
                str(port),
                '--db',
                str(db),
                '--grpc-port',
                str(grpc_port),
                *([] if args.decode_workers is None else ['--decode-workers', str(args.decode_workers)]),
            ],
            stdout=subprocess.DEVNULL,
            env={**os.environ, 'COLUMNS': '200'},
        )
        try:
            wait_up(port)
            load_before = os.getloadavg()[0]
            server_cpu, client_cpu = tree_cpu_seconds(server.pid), time.process_time()
            if args.protocol == 'grpc':
                elapsed = ingest_grpc(grpc_port, bodies, args.clients)
            else:
                elapsed = ingest(port, bodies, args.clients)
            server_cpu = tree_cpu_seconds(server.pid) - server_cpu
            client_cpu = time.process_time() - client_cpu
            print(f'CPU used during ingest: server and its decode workers {server_cpu:.1f}s '
                  f'({server_cpu / args.spans * 1e6:.1f} µs/span), client {client_cpu:.1f}s; '
                  f'{os.cpu_count()} cores would take {(server_cpu + client_cpu) / (os.cpu_count() or 1):.1f}s '
                  f'= {args.spans / ((server_cpu + client_cpu) / (os.cpu_count() or 1)):,.0f} spans/s with nothing '
                  'else running', flush=True)  # fmt: skip
            print(f'1-min load average before/after ingest: {load_before:.2f} / {os.getloadavg()[0]:.2f} '
                  f'on {os.cpu_count()} cores (other processes share the machine)', flush=True)  # fmt: skip
            rate = args.spans / elapsed
            print(f'ingest over OTLP/{args.protocol}: {args.spans:,} spans in {elapsed:.1f}s = {rate:,.0f} spans/s '
                  f'(batches of {args.batch}, {args.clients} connections)', flush=True)  # fmt: skip
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
            runs = get_json(conn, '/api/runs?limit=1000')
            assert isinstance(runs, list)
            assert runs
            rows = cast('list[dict[str, Any]]', runs)
            traces: list[str] = [r['trace_id'] for r in rows]
            befores: list[str] = [r['start'] for r in rows[::25]]
            rng = random.Random(1)
            cursors = [
                link.split('older=')[1].split('>')[0]
                for t in rows[::100]
                for link in [get_link(conn, f'/api/runs?limit=5&until={t["start"]}')]
                if link
            ]
            spans_of = [
                f'{t}/spans/{cast("list[dict[str, Any]]", get_json(conn, f"/api/traces/{t}"))[1]["span_id"]}'
                for t in traces[::50]
            ]
            calls = {
                '/api/runs': lambda: '/api/runs',
                '/api/runs?graph=&outcome=failed': lambda: f'/api/runs?graph={rng.choice(GRAPHS)}&outcome=failed',
                '/api/runs?until=': lambda: f'/api/runs?until={rng.choice(befores)}',
                '/api/runs?older= (next page)': lambda: f'/api/runs?older={rng.choice(cursors)}',
                '/api/runs?sort=duration': lambda: '/api/runs?sort=duration',
                '/api/runs?min_duration=&max_duration=': lambda: '/api/runs?min_duration=5ms&max_duration=2s',
                '/api/runs?node=': lambda: f'/api/runs?node={rng.choice(NODES)}',
                '/api/runs?attr=': lambda: f'/api/runs?attr=tracegraph.node.id={rng.choice(NODES)}',
                '/api/runs?q= (part of a graph name)': lambda: '/api/runs?q=graph_3',
                '/api/runs?service=&kind=run': lambda: '/api/runs?service=bench&kind=run',
                '/api/runs?outcome=running': lambda: '/api/runs?outcome=running',
                '/api/traces/{trace_id}': lambda: f'/api/traces/{rng.choice(traces)}',
                '/api/traces/{trace_id}/spans/{span_id}': lambda: f'/api/traces/{rng.choice(spans_of)}',
                '/api/runs/{trace_id}': lambda: f'/api/runs/{rng.choice(traces)}',
                '/api/graphs': lambda: '/api/graphs',
                '/api/graphs/{graph}/nodes': lambda: f'/api/graphs/{rng.choice(GRAPHS)}/nodes',
                '/api/graphs/{graph}/nodes?since=10m': lambda: f'/api/graphs/{rng.choice(GRAPHS)}/nodes?since=10m',
                '/api/graphs/{graph}/edges': lambda: f'/api/graphs/{rng.choice(GRAPHS)}/edges',
                'page /': lambda: '/',
                'page /runs/{trace_id}': lambda: f'/runs/{rng.choice(traces)}',
                'page /graphs/{graph}': lambda: f'/graphs/{rng.choice(GRAPHS)}',
            }
            count = get_json(conn, '/api/graphs')
            stored = sum(g['runs'] for g in count)  # pyright: ignore
            print(f'stored runs: {stored:,}', flush=True)
            print('\n| call | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|')
            worst = 0.0
            for name, make in calls.items():
                time_get(conn, make())  # warm
                samples = sorted(time_get(conn, make()) for _ in range(args.requests))
                p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
                worst = max(worst, p95)
                print(f'| `{name}` | {statistics.median(samples):.1f} | {p95:.1f} | {samples[-1]:.1f} |', flush=True)
            ok_ingest = rate >= TARGET_INGEST
            ok_api = worst < TARGET_P95_MS
            print(f'\ningest {rate:,.0f} spans/s (target {TARGET_INGEST:,}): {"OK" if ok_ingest else "MISSED"}; '
                  f'worst p95 {worst:.1f} ms (target < {TARGET_P95_MS:.0f}): {"OK" if ok_api else "MISSED"}')  # fmt: skip
        except Exception:
            traceback.print_exc()
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == '__main__':
    main()

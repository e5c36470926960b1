"""Exporter benchmark (run by hand): OTLP throughput, and a graph's step time with the backend up, down and slow.

    .venv/bin/python bench/export.py [--seconds 3] [--runs 300] [--steps 50] [--rounds 3] [--work-us 50] [--json out.json]

1. Throughput: spans per second through the SDK's OTLP/HTTP and OTLP/gRPC exporters and through
   tracegraph's spool (disk, then HTTP or gRPC, fsync on), each to a local receiver in its own process
   (`tests/exporters_helpers.py`, a real protobuf/grpcio receiver), in batches of 512 spans.
2. Step time: a graph whose node does `--work-us` of CPU work runs `--runs` runs of `--steps` steps through
   `configure()` (direct OTLP/HTTP, direct OTLP/gRPC, spool over HTTP, and `offload/http|grpc`:
   `configure(export_process=True)`, OTLP sent from a child process), with the backend up, down (nothing
   listening) and slow (every request answered after 0.5 s), and `drop`: the same batch processor over an
   exporter that drops every batch unencoded (the step time without the export's own work). Every step is timed
   around `GraphRun.next()`; p50 and p99 are printed with their ratio to the backend-up case and p99 to the
   drop case. `--switch-interval` sets `sys.setswitchinterval`
   (how long a thread waiting for the GIL lets the holder run, default 5 ms) to test how much of the tail is
   the exporter thread holding the GIL; `--no-throughput` skips part 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'tests'))

from exporters_helpers import free_port, make_spans  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings  # noqa: E402
from tracegraph.exporters import SpoolOptions, SpoolSpanExporter, configure  # noqa: E402
from tracegraph.exporters.process.offload import OffloadSpanProcessor  # noqa: E402
from tracegraph.exporters.settings import resolve_target  # noqa: E402

SLOW_DELAY = 0.5


def start_receiver(kind: str, port: int, delay: float = 0.0) -> subprocess.Popen[str]:
    code = (
        'import sys, time; sys.path.insert(0, sys.argv[1]); import exporters_helpers as h\n'
        'r = h.OtlpGrpcReceiver(int(sys.argv[3])) if sys.argv[2] == "grpc" else h.OtlpHttpReceiver(int(sys.argv[3]))\n'
        'r.keep = False; r.default_delay = float(sys.argv[4])\n'
        'with r:\n    print("listening", flush=True)\n    time.sleep(3600)\n'
    )
    proc = subprocess.Popen(
        [sys.executable, '-c', code, str(ROOT / 'tests'), kind, str(port), str(delay)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == 'listening'
    return proc


def stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is not None:
        proc.kill()
        proc.wait()


# --- 1. throughput ----------------------------------------------------------------------------------------------


def sdk_exporter(kind: str, endpoint: str) -> Any:
    if kind == 'grpc':
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc

        return Grpc(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    return Http(endpoint=f'{endpoint}/v1/traces')


def throughput(kind: str, seconds: float) -> dict[str, float]:
    batch = make_spans(runs=64, nodes=7)  # 512 spans
    port = free_port()
    receiver = start_receiver(kind, port)
    endpoint = f'http://127.0.0.1:{port}'
    try:
        exporter = sdk_exporter(kind, endpoint)
        sent, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            assert exporter.export(batch).name == 'SUCCESS'
            sent += len(batch)
        direct = sent / (time.perf_counter() - started)
        exporter.shutdown()

        protocol = 'grpc' if kind == 'grpc' else 'http/protobuf'
        target = resolve_target(endpoint=endpoint, protocol=protocol, headers=None, signal='traces')
        with tempfile.TemporaryDirectory() as spool_dir:
            spool = SpoolSpanExporter(spool_dir, target=target, fsync=True)
            sent, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                spool.export(batch)
                sent += len(batch)
            assert spool.force_flush(120_000)
            spooled = sent / (time.perf_counter() - started)
            spool.shutdown()

        # configure(export_process=True)'s processor: framing here (~7 µs a span, what a graph's thread pays),
        # rebuilding, encoding and sending in the child. As many spans as the direct exporter sent, framed as
        # fast as this thread can, then flushed: spans per second from the first frame to the child's last export.
        processor = OffloadSpanProcessor(target)
        started = time.perf_counter()
        for _ in range(max(1, int(direct * seconds) // len(batch))):
            for span in batch:
                processor.on_end(span)
        framed = time.perf_counter() - started
        assert processor.force_flush(120_000)
        elapsed = time.perf_counter() - started
        offloaded = max(1, int(direct * seconds) // len(batch)) * len(batch) / elapsed
        assert not processor.dropped.counts, processor.dropped.counts
        processor.shutdown()
        print(f'  ({kind}: framing took {framed / elapsed:.0%} of the export process run)')
    finally:
        stop(receiver)
    return {'direct': direct, 'spool': spooled, 'offload': offloaded}


# --- 2. step time -----------------------------------------------------------------------------------------------

WORK = {'loops': 0}


@dataclass
class Work(BaseNode[None, None, int]):
    left: int

    async def run(self, ctx: GraphRunContext) -> Work | End[int]:
        total = 0
        for i in range(WORK['loops']):
            total += i
        return Work(self.left - 1) if self.left > 1 else End(total)


def calibrate(work_us: float) -> None:
    loops = 100_000
    started = time.perf_counter()
    total = 0
    for i in range(loops):
        total += i
    per_loop = (time.perf_counter() - started) / loops
    WORK['loops'] = max(1, int(work_us * 1e-6 / per_loop))


async def time_steps(graph: Graph[None, None, int], runs: int, steps: int) -> list[float]:
    samples: list[float] = []
    for _ in range(runs):
        async with graph.iter(Work(steps)) as run:
            node: Any = run.next_node
            while not isinstance(node, End):
                started = time.perf_counter()
                node = await run.next(node)
                samples.append(time.perf_counter() - started)
    return samples


class _DropExporter(SpanExporter):
    """Drops every batch without encoding it: the step time of the pipeline minus the export itself."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def scenario(pipeline: str, backend: str, runs: int, steps: int) -> list[float]:
    kind = 'grpc' if pipeline.endswith('/grpc') else 'http'
    port = free_port()
    receiver = None
    if backend not in ('down', 'drop'):
        receiver = start_receiver(kind, port, SLOW_DELAY if backend == 'slow' else 0.0)
    spool_dir = tempfile.mkdtemp() if pipeline == 'spool/http' else None
    try:
        telemetry = configure(
            endpoint=f'http://127.0.0.1:{port}',
            protocol='grpc' if kind == 'grpc' else 'http/protobuf',
            spool=SpoolOptions(directory=spool_dir) if spool_dir else None,
            set_global=False,
            export_process=pipeline.startswith('offload/'),
        )
        tracer_provider = telemetry.tracer_provider
        if backend == 'drop':  # the same batch processor settings as configure(), over an exporter that drops
            tracer_provider = TracerProvider()
            tracer_provider.add_span_processor(BatchSpanProcessor(_DropExporter()))
        settings = InstrumentationSettings(tracer_provider=tracer_provider, meter_provider=telemetry.meter_provider)
        graph = Graph(nodes=(Work,), name='bench', instrumentation=settings)
        asyncio.run(time_steps(graph, 20, steps))  # warm up
        samples = asyncio.run(time_steps(graph, runs, steps))
        # shutting down against a dead backend waits for the SDK exporter's timeout: do it off the clock
        threading.Thread(target=telemetry.shutdown, daemon=True).start()
    finally:
        stop(receiver)
    return samples


def baseline(runs: int, steps: int) -> list[float]:
    graph = Graph(nodes=(Work,), name='bench', auto_instrument=False)
    asyncio.run(time_steps(graph, 20, steps))
    return asyncio.run(time_steps(graph, runs, steps))


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] if q < 100 else max(samples)


PIPELINES = ('otlp/http', 'otlp/grpc', 'spool/http', 'offload/http', 'offload/grpc')
"""`configure()` set-ups measured: direct OTLP in process, through the spool, or from the export process."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--seconds', type=float, default=3.0, help='seconds per throughput measurement')
    parser.add_argument('--runs', type=int, default=300)
    parser.add_argument('--steps', type=int, default=50)
    parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds of up/down/slow')
    parser.add_argument('--work-us', type=float, default=50.0, help='CPU work per node step, in µs')
    parser.add_argument('--json', type=Path, default=None, help='also write the results here')
    parser.add_argument('--switch-interval', type=float, default=None, help='sys.setswitchinterval (s) for the run')
    parser.add_argument('--no-throughput', action='store_true', help='only the step times')
    parser.add_argument(
        '--pipeline', dest='pipelines', action='append', choices=PIPELINES, default=None, help='only these (repeatable)'
    )
    args = parser.parse_args()
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    # the SDK exporters log every failed attempt: with the backend down on purpose, that is noise here
    logging.disable(logging.CRITICAL)
    os.environ.pop('OTEL_EXPORTER_OTLP_ENDPOINT', None)
    results: dict[str, Any] = {'cpus': os.cpu_count(), 'python': sys.version.split()[0], 'throughput': {}, 'steps': {}}

    print(f'throughput, spans/s (batches of 512, {args.seconds:.0f} s each)')
    for kind in () if args.no_throughput else ('http', 'grpc'):
        figures = throughput(kind, args.seconds)
        results['throughput'][kind] = figures
        print(
            f'  otlp/{kind:<5} direct {figures["direct"]:>9,.0f}   via spool (fsync) {figures["spool"]:>9,.0f}'
            f'   export process {figures["offload"]:>9,.0f}'
        )

    calibrate(args.work_us)
    base = baseline(args.runs, args.steps)
    results['steps']['no tracing'] = {'p50_us': pct(base, 50) * 1e6, 'p99_us': pct(base, 99) * 1e6}
    print(f'\nstep time, µs ({args.runs} runs x {args.steps} steps, node work {args.work_us:.0f} µs)')
    print(f'  {"no tracing":<22} p50 {pct(base, 50) * 1e6:8.1f}   p99 {pct(base, 99) * 1e6:8.1f}')
    for pipeline in args.pipelines or PIPELINES:
        pooled: dict[str, list[float]] = {'up': [], 'drop': [], 'down': [], 'slow': []}
        for _ in range(args.rounds):  # interleaved rounds, so drift of the machine hits every case alike
            for backend, samples in pooled.items():
                samples.extend(scenario(pipeline, backend, args.runs // args.rounds, args.steps))
        up = pooled['up']
        for backend, samples in pooled.items():
            p50, p99 = pct(samples, 50), pct(samples, 99)
            r50, r99 = p50 / pct(up, 50), p99 / pct(up, 99)
            d99 = p99 / pct(pooled['drop'], 99)
            results['steps'][f'{pipeline} {backend}'] = {
                'p50_us': p50 * 1e6,
                'p99_us': p99 * 1e6,
                'p50_ratio': r50,
                'p99_ratio': r99,
                'p99_vs_drop': d99,
            }
            print(
                f'  {pipeline + " " + backend:<22} p50 {p50 * 1e6:8.1f}   p99 {p99 * 1e6:8.1f}'
                f'   vs up: p50 x{r50:.2f}  p99 x{r99:.2f}   p99 vs drop x{d99:.2f}'
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == '__main__':
    main()

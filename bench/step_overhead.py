"""Microseconds per node step: tracegraph against classic `pydantic_graph==0.0.37` and a bare loop.

Run by hand, never in the test suite:

    .venv/bin/python bench/step_overhead.py            # everything, about 2-3 minutes
    .venv/bin/python bench/step_overhead.py --quick    # fewer repeats, for a smoke check
    .venv/bin/python bench/step_overhead.py --profile  # also cProfile tracegraph in `none` and `otel` modes

The classic side runs in its own venv (`bench/.venv-classic`, created on first use with
`python -m venv` + `pip install -r bench/requirements-classic.txt`: pydantic_graph==0.0.37, logfire, opentelemetry-sdk). Every (library, mode)
pair runs in a fresh worker process (this same file, `--worker`), because OpenTelemetry's global providers
can be set only once per process. Both sides exec the same `WORKLOAD` source with their library's imports.

Modes:
    none:    no OpenTelemetry SDK; on the classic side `logfire` is hidden so `logfire_api` is its no-op shim
             (the fastest classic `pydantic_graph` can be: the strictest baseline).
    otel:    a global SDK `TracerProvider` with a `BatchSpanProcessor` over an exporter that counts and drops
             spans; no `MeterProvider` (so tracegraph records no metrics: spans only, like the floor).
    otel_metrics: `otel` plus a global SDK `MeterProvider` with an `InMemoryMetricReader` (tracegraph's metrics on).
    otel_unsampled: `otel` with the sampler `ParentBased(ALWAYS_OFF)`: every run is sampled out, as most are in
             production under a ratio sampler; the floor's spans are sampled out too (tracegraph side only).
    logfire: `logfire.configure(send_to_logfire=False, console=False)` with the counting `BatchSpanProcessor`
             as an additional span processor (logfire also sets its own global `MeterProvider`).

Results: a table on stdout and the raw JSON in `bench/results/step_overhead.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, cast

from pydantic_core import to_json

__all__ = ('WORKLOAD', 'main')

BENCH_DIR = Path(__file__).resolve().parent
CLASSIC_VENV = BENCH_DIR / '.venv-classic'
CLASSIC_REQUIREMENTS = BENCH_DIR / 'requirements-classic.txt'
RESULTS = BENCH_DIR / 'results' / 'step_overhead.json'
QUICK_RESULTS = BENCH_DIR.parent / 'test-output' / 'step_overhead-quick.json'
MODES = ('none', 'otel', 'otel_metrics', 'otel_unsampled', 'logfire')
TRACEGRAPH_ONLY_MODES = ('otel_metrics', 'otel_unsampled')
"""Modes with no classic counterpart: classic records no metrics, and `otel` is its sampled-out case (no spans)."""
LONG_STEPS = 10_000
SHORT_STEPS = 5
SHORT_RUNS = 2_000

# The workload, written once and exec'd by both sides with `{lib}` replaced by `tracegraph` or `pydantic_graph`.
# Two nodes alternate until `limit` steps have run; state and deps are None, so the figures measure the engine.
WORKLOAD = """
from __future__ import annotations

from dataclasses import dataclass

from {lib} import BaseNode, End, Graph, GraphRunContext


@dataclass
class Ping(BaseNode[None, None, int]):
    n: int
    limit: int

    async def run(self, ctx: GraphRunContext) -> Pong | End[int]:
        return Pong(self.n + 1, self.limit) if self.n + 1 < self.limit else End(self.n + 1)


@dataclass
class Pong(BaseNode[None, None, int]):
    n: int
    limit: int

    async def run(self, ctx: GraphRunContext) -> Ping | End[int]:
        return Ping(self.n + 1, self.limit) if self.n + 1 < self.limit else End(self.n + 1)


ping_pong = Graph(nodes=(Ping, Pong), name='ping_pong')
"""


# ---------------------------------------------------------------------------------------------- worker side


class _Counter:
    """The span sink: counts what the `BatchSpanProcessor` exports, and drops it."""

    def __init__(self) -> None:
        self.spans = 0


def _setup_mode(mode: str, counter: _Counter, lib: str = 'tracegraph') -> tuple[Any, Any]:
    """Configure OpenTelemetry for `mode`; returns (span processor to flush, tracer for the bare-span floors)."""
    if mode == 'none':
        return None, None
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class CountingExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            counter.spans += len(spans)
            return SpanExportResult.SUCCESS

    # A queue big enough for a whole measured batch, so no span is dropped before it is counted.
    processor = BatchSpanProcessor(CountingExporter(), max_queue_size=1 << 17, max_export_batch_size=4096)
    if mode == 'logfire':
        import logfire

        logfire.configure(
            send_to_logfire=False, console=False, additional_span_processors=[processor], inspect_arguments=False
        )
    else:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

        provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF)) if mode == 'otel_unsampled' else TracerProvider()
        provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        if mode == 'otel_metrics':
            from opentelemetry import metrics
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader

            # a provider of one's own: tracegraph finds the SDK merge of pre-aggregated durations by entry point
            metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return processor, trace.get_tracer('bench.floor')


def _load_workload(lib: str, auto_instrument: bool = True) -> dict[str, Any]:
    source = WORKLOAD.format(lib=lib)
    if not auto_instrument:
        source = source.replace("name='ping_pong')", "name='ping_pong', auto_instrument=False)")
    namespace: dict[str, Any] = {'__name__': f'bench_workload_{lib}_{auto_instrument}'}
    # The dataclasses need their module importable for string annotations to resolve.
    module = type(sys)(namespace['__name__'])
    sys.modules[namespace['__name__']] = module
    exec(compile(source, f'<workload {lib}>', 'exec'), module.__dict__)
    return module.__dict__


_CONTRACT_PARTS = frozenset({'graph_and_run', 'node_and_step', 'input', 'next', 'outcome'})
BY_HAND: dict[str, frozenset[str]] = {
    # the node span of the span contract, written by hand on the SDK
    'bare_loop_one_span_same_attrs': _CONTRACT_PARTS,
    # the attributes the first tracing issue named
    'bare_loop_one_span_required_attrs': _CONTRACT_PARTS - {'outcome'},
    # the contract with one group left out each: what that group costs (`step_instructions.py --ladder`)
    'by_hand_without_graph_and_run': _CONTRACT_PARTS - {'graph_and_run'},
    'by_hand_without_node_and_step': _CONTRACT_PARTS - {'node_and_step'},
    'by_hand_without_input': _CONTRACT_PARTS - {'input'},
    'by_hand_without_end_attributes': _CONTRACT_PARTS - {'next', 'outcome'},
}
"""Hand-written node spans: variant name -> the groups of the contract's node-span attributes it sets."""


def _variants(lib: str, mode: str, tracer: Any) -> dict[str, Any]:
    """name -> (async long(steps) -> None, async short(runs, steps) -> None)."""
    ns = _load_workload(lib)
    ping, end, ctx_cls, graph = ns['Ping'], ns['End'], ns['GraphRunContext'], ns['ping_pong']

    async def graph_long(g: Any, steps: int) -> None:
        async with g.iter(ping(0, steps)) as run:
            async for _ in run:
                pass
        assert run.result.output == steps

    async def graph_short(g: Any, runs: int, steps: int) -> None:
        result = None
        for _ in range(runs):
            result = await g.run(ping(0, steps))
        assert result is not None
        assert result.output == steps

    async def bare_long(steps: int) -> None:
        ctx = ctx_cls(None, None)
        node = ping(0, steps)
        while not isinstance(node, end):
            node = await node.run(ctx)
        assert node.data == steps

    async def bare_short(runs: int, steps: int) -> None:
        for _ in range(runs):
            await bare_long(steps)

    async def span_long(steps: int) -> None:
        ctx = ctx_cls(None, None)
        node = ping(0, steps)
        while not isinstance(node, end):
            with tracer.start_as_current_span(f'run node {type(node).__name__}'):
                node = await node.run(ctx)
        assert node.data == steps

    async def span_short(runs: int, steps: int) -> None:
        for _ in range(runs):
            await span_long(steps)

    def attrs_loop(parts: frozenset[str]) -> Any:
        # The same span as tracegraph's node span on a plain SDK (name, attributes, current while the node runs),
        # built by hand with the attribute groups in `parts` (see `BY_HAND`): what the SDK itself charges for the
        # span contract, and for each part of it. No `logfire.*` attributes: tracegraph writes them only for
        # Logfire's own tracer provider.
        # Read once, not per step: the loop is the reference, so it should do nothing a hand-written one would not.
        ids, node_and_step, node_input = 'graph_and_run' in parts, 'node_and_step' in parts, 'input' in parts
        with_next, with_outcome = 'next' in parts, 'outcome' in parts

        async def long(steps: int) -> None:
            ctx = ctx_cls(None, None)
            node = ping(0, steps)
            run_id, step = uuid.uuid4().hex, 0
            while not isinstance(node, end):
                step += 1
                node_id = type(node).__name__
                attributes: dict[str, Any] = {}
                if ids:
                    attributes['tracegraph.graph.name'] = 'ping_pong'
                    attributes['tracegraph.run.id'] = run_id
                if node_and_step:
                    attributes['tracegraph.node.id'] = node_id
                    attributes['tracegraph.step'] = step
                if node_input:
                    attributes['tracegraph.node.input'] = to_json(node).decode()  # as tracegraph serialises it
                with tracer.start_as_current_span(f'run node {node_id}', attributes=attributes) as span:
                    node = await node.run(ctx)
                    if with_next:
                        span.set_attribute('tracegraph.node.next', type(node).__name__)
                    if with_outcome:
                        span.set_attribute('tracegraph.node.outcome', 'completed')
            assert node.data == steps

        async def short(runs: int, steps: int) -> None:
            for _ in range(runs):
                await long(steps)

        return long, short

    label = 'tracegraph' if lib == 'tracegraph' else 'pydantic_graph'
    variants: dict[str, Any] = {
        label: (functools.partial(graph_long, graph), functools.partial(graph_short, graph)),
        f'bare_loop[{label}]': (bare_long, bare_short),
    }
    if lib == 'tracegraph':
        from tracegraph import Graph, InstrumentationSettings

        no_input = InstrumentationSettings(include_node_input=False)
        without_input = Graph(nodes=(ping, ns['Pong']), name='ping_pong', instrumentation=no_input)
        variants['tracegraph_without_input'] = (
            functools.partial(graph_long, without_input),
            functools.partial(graph_short, without_input),
        )
        plain = _load_workload(lib, auto_instrument=False)['ping_pong']
        variants['tracegraph_uninstrumented'] = (
            functools.partial(graph_long, plain),
            functools.partial(graph_short, plain),
        )
        if tracer is not None:
            variants['bare_loop_one_span'] = (span_long, span_short)
            for name, parts in BY_HAND.items():
                variants[name] = attrs_loop(parts)
    return variants


def _flush(processor: Any) -> None:
    if processor is not None:
        processor.force_flush()


def run_worker(lib: str, mode: str, repeats: int, long_steps: int, short_runs: int, profile: bool) -> dict[str, Any]:
    """Measure every variant of `lib` in `mode`; the figures are medians over `repeats`, interleaved."""
    if lib == 'pydantic_graph' and mode == 'none':
        sys.modules['logfire'] = None  # pyright: ignore[reportArgumentType]  # logfire_api falls back to its no-op shim
    counter = _Counter()
    processor, tracer = _setup_mode(mode, counter, lib)
    variants = _variants(lib, mode, tracer)
    samples: dict[str, dict[str, list[float]]] = {name: {'long': [], 'short': []} for name in variants}
    spans: dict[str, dict[str, int]] = {name: {'long': 0, 'short': 0} for name in variants}
    short_steps = short_runs * SHORT_STEPS

    async def measure() -> None:
        for long_fn, short_fn in variants.values():  # warm-up: caches, tracers, JIT-free but lazy imports
            await long_fn(200)
            await short_fn(20, SHORT_STEPS)
        _flush(processor)
        # `none` samples take milliseconds: take more of them, the machine's noise matters most there.
        for _ in range(repeats * 3 if mode == 'none' else repeats):
            for name, (long_fn, short_fn) in variants.items():
                for workload, call, steps in (
                    ('long', lambda f=long_fn: f(long_steps), long_steps),
                    ('short', lambda f=short_fn: f(short_runs, SHORT_STEPS), short_steps),
                ):
                    gc.collect()
                    before = counter.spans
                    t0 = time.perf_counter()
                    await call()
                    elapsed = time.perf_counter() - t0
                    _flush(processor)
                    spans[name][workload] = counter.spans - before
                    samples[name][workload].append(elapsed / steps * 1e6)

    asyncio.run(measure())
    library = sys.modules['tracegraph' if lib == 'tracegraph' else 'pydantic_graph']
    result: dict[str, Any] = {
        'lib': lib,
        'mode': mode,
        'python': platform.python_version(),
        'library_file': library.__file__,
        'variants': {},
    }
    for name, by_workload in samples.items():
        result['variants'][name] = {
            workload: {
                'us_per_step': statistics.median(values),
                'us_per_step_min': min(values),
                'samples': values,
                'spans_per_repeat': spans[name][workload],
                'steps_per_repeat': long_steps if workload == 'long' else short_steps,
            }
            for workload, values in by_workload.items()
        }
    if profile and lib == 'tracegraph':
        result['profile'] = _profile(variants['tracegraph'][0], long_steps, processor)
    return result


def _profile(long_fn: Any, steps: int, processor: Any) -> str:
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(long_fn(steps))
    profiler.disable()
    _flush(processor)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats('tottime').print_stats(25)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- driver side


def ensure_classic_venv() -> Path:
    """The classic venv's interpreter, creating it from `requirements-classic.txt` when it is missing or broken."""
    python = CLASSIC_VENV / 'bin' / 'python'
    check = [str(python), '-c', 'import pydantic_graph, logfire, opentelemetry.sdk']
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f'creating {CLASSIC_VENV} from {CLASSIC_REQUIREMENTS.name} ...', flush=True)
    subprocess.run([sys.executable, '-m', 'venv', '--clear', str(CLASSIC_VENV)], check=True)
    subprocess.run([str(python), '-m', 'pip', 'install', '-q', '-r', str(CLASSIC_REQUIREMENTS)], check=True)
    return python


def _merge(results: dict[str, Any], key: str, worker: dict[str, Any]) -> None:
    if key not in results:
        results[key] = worker
        return
    for variant, by_workload in worker['variants'].items():
        for workload, data in by_workload.items():
            merged = results[key]['variants'][variant][workload]
            merged['samples'] += data['samples']
            merged['us_per_step'] = statistics.median(merged['samples'])
            merged['us_per_step_min'] = min(merged['samples'])
            merged['spans_per_repeat'] = data['spans_per_repeat']


def _spawn(python: Path, lib: str, mode: str, args: argparse.Namespace, *, profile: bool) -> dict[str, Any]:
    cmd = [str(python), str(Path(__file__).resolve()), '--worker', lib, '--mode', mode]
    cmd += ['--repeats', str(args.repeats), '--long-steps', str(args.long_steps), '--short-runs', str(args.short_runs)]
    if profile:
        cmd.append('--profile')
    env = {**os.environ, 'PYTHONHASHSEED': '0', 'LOGFIRE_IGNORE_NO_CONFIG': '1'}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=BENCH_DIR)
    if done.returncode != 0:
        raise SystemExit(f'worker {lib}/{mode} failed:\n{done.stderr}')
    return json.loads(done.stdout.strip().splitlines()[-1])


_TG = 'tracegraph'
_PG = 'pydantic_graph'
# (name, numerator, denominator, target or None for context, aim): numerator/denominator = (lib, mode, variant).
RATIOS: tuple[tuple[str, tuple[str, str, str], tuple[str, str, str], tuple[float, float] | None], ...] = (
    # (label, numerator, denominator, (long target, short target) or None for context); the targets' table first.
    ('none: tracegraph / pydantic_graph', (_TG, 'none', _TG), (_PG, 'none', _PG), (0.5, 0.6)),
    ('otel: tracegraph / bare loop with one span', (_TG, 'otel', _TG), (_TG, 'otel', 'bare_loop_one_span'), (1.5, 1.6)),
    (
        'otel+metrics: tracegraph / bare loop with one span',
        (_TG, 'otel_metrics', _TG),
        (_TG, 'otel_metrics', 'bare_loop_one_span'),
        (1.5, 1.7),
    ),
    # Like for like: both under logfire's span processors.
    ('logfire: tracegraph / pydantic_graph+logfire', (_TG, 'logfire', _TG), (_PG, 'logfire', _PG), (0.6, 0.5)),
    ('none: auto_instrument=True / False', (_TG, 'none', _TG), (_TG, 'none', 'tracegraph_uninstrumented'), (1.1, 1.1)),
    ('otel+metrics / otel: tracegraph', (_TG, 'otel_metrics', _TG), (_TG, 'otel', _TG), None),
    (
        'otel: tracegraph / bare loop, one span with the same attributes',
        (_TG, 'otel', _TG),
        (_TG, 'otel', 'bare_loop_one_span_same_attrs'),
        None,
    ),
    (
        'otel: the same attributes by hand / one-span floor',
        (_TG, 'otel', 'bare_loop_one_span_same_attrs'),
        (_TG, 'otel', 'bare_loop_one_span'),
        None,
    ),
    (
        'otel: without node.outcome, by hand / one-span floor',
        (_TG, 'otel', 'bare_loop_one_span_required_attrs'),
        (_TG, 'otel', 'bare_loop_one_span'),
        None,
    ),
    ('otel: tracegraph / logfire: pydantic_graph+logfire', (_TG, 'otel', _TG), (_PG, 'logfire', _PG), None),
    # A sampled-out run: what most runs cost in production under a ratio sampler.
    ('otel unsampled: tracegraph / none: tracegraph', (_TG, 'otel_unsampled', _TG), (_TG, 'none', _TG), None),
    (
        'otel unsampled: tracegraph / bare loop with one span',
        (_TG, 'otel_unsampled', _TG),
        (_TG, 'otel_unsampled', 'bare_loop_one_span'),
        None,
    ),
    (
        'logfire: bare loop with one span / pydantic_graph+logfire',
        (_TG, 'logfire', 'bare_loop_one_span'),
        (_PG, 'logfire', _PG),
        None,
    ),
    (
        'logfire: tracegraph / bare loop with one span',
        (_TG, 'logfire', _TG),
        (_TG, 'logfire', 'bare_loop_one_span'),
        None,
    ),
)


def _us(results: dict[str, Any], lib: str, mode: str, variant: str, workload: str, stat: str = 'us_per_step') -> float:
    return results[f'{lib}/{mode}']['variants'][variant][workload][stat]


def _report(results: dict[str, Any]) -> dict[str, Any]:
    rows: list[tuple[str, str, str, float, float, str]] = []
    for key, worker in results.items():
        if key.startswith('_'):
            continue
        for variant, data in worker['variants'].items():
            long, short = data['long'], data['short']
            spans = f'{long["spans_per_repeat"]}/{long["steps_per_repeat"]} {short["spans_per_repeat"]}/{short["steps_per_repeat"]}'
            rows.append((worker['mode'], worker['lib'], variant, long['us_per_step'], short['us_per_step'], spans))
    print()
    print(f'{"mode":<15}{"variant":<34}{"long µs/step":>14}{"short µs/step":>15}   spans/steps (long short)')
    for mode, _lib, variant, long, short, spans in sorted(rows, key=lambda r: (MODES.index(r[0]), r[1], r[2])):
        print(f'{mode:<15}{variant:<34}{long:>14.2f}{short:>15.2f}   {spans}')

    checks: list[dict[str, Any]] = []
    for w in ('long', 'short'):
        for name, num, den, targets in RATIOS:
            ratio = _us(results, *num, w) / _us(results, *den, w)
            ratio_min = _us(results, *num, w, 'us_per_step_min') / _us(results, *den, w, 'us_per_step_min')
            target = None if targets is None else targets[0 if w == 'long' else 1]
            met = None if target is None else ratio <= target
            checks.append(
                {'check': f'[{w}] {name}', 'ratio': ratio, 'ratio_of_mins': ratio_min, 'target': target, 'met': met}
            )
    print()
    print(f'{"ratio (of medians; of minimums)":<70}{"median":>8}{"min":>7}{"target":>9}   result')
    for c in checks:
        figures = f'{c["check"]:<70}{c["ratio"]:>8.2f}{c["ratio_of_mins"]:>7.2f}'
        if c['target'] is None:
            print(f'{figures}{"":>9}   (context)')
            continue
        print(f'{figures}{"<= " + format(c["target"], ".2f"):>9}   {"met" if c["met"] else "MISSED"}')
    return {'checks': checks}


def main() -> None:
    """Parse arguments; either run one worker (printing JSON) or drive every worker and report."""
    parser = argparse.ArgumentParser(description=(__doc__ or '').splitlines()[0])
    parser.add_argument('--worker', choices=('tracegraph', 'pydantic_graph'), help=argparse.SUPPRESS)
    parser.add_argument('--mode', choices=MODES, default='none', help=argparse.SUPPRESS)
    parser.add_argument('--rounds', type=int, default=3, help='rounds of workers (samples are pooled)')
    parser.add_argument('--repeats', type=int, default=2, help='timed repeats per figure per round (x3 in none)')
    parser.add_argument('--long-steps', type=int, default=LONG_STEPS, help='steps of the long run')
    parser.add_argument('--short-runs', type=int, default=SHORT_RUNS, help=f'runs of {SHORT_STEPS} steps')
    parser.add_argument('--quick', action='store_true', help='1 round of 3 repeats, smaller workloads')
    parser.add_argument('--profile', action='store_true', help='cProfile tracegraph in none and otel modes')
    parser.add_argument('--output', type=Path, default=None, help='where to write the raw JSON results')
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.repeats, args.long_steps, args.short_runs = 1, 3, 2_000, 400
    if args.output is None:  # a smoke run never overwrites the tracked results
        args.output = QUICK_RESULTS if args.quick else RESULTS
    if args.worker:
        print(
            json.dumps(run_worker(args.worker, args.mode, args.repeats, args.long_steps, args.short_runs, args.profile))
        )
        return

    classic = ensure_classic_venv()
    results: dict[str, Any] = {
        '_meta': {
            'python': platform.python_version(),
            'machine': platform.machine(),
            'cpus': os.cpu_count(),
            'rounds': args.rounds,
            'repeats_per_round': args.repeats,
            'long_steps': args.long_steps,
            'short_runs': args.short_runs,
            'short_steps': SHORT_STEPS,
            'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        }
    }
    # Several rounds of short workers, alternating the libraries, so that noise from the rest of the machine
    # lands on both sides instead of on whichever ran during a busy minute.
    for round_no in range(args.rounds):
        for mode in MODES:
            for lib, python in (('tracegraph', Path(sys.executable)), ('pydantic_graph', classic)):
                if lib == 'pydantic_graph' and mode in TRACEGRAPH_ONLY_MODES:
                    continue
                print(f'round {round_no + 1}/{args.rounds}: {lib} in mode {mode} ...', flush=True)
                worker = _spawn(python, lib, mode, args, profile=args.profile and round_no == 0)
                _merge(results, f'{lib}/{mode}', worker)
    results['_checks'] = _report(results)['checks']
    profiles: dict[str, str] = {
        k: cast('dict[str, Any]', v).pop('profile')
        for k, v in results.items()
        if isinstance(v, dict) and 'profile' in v
    }
    if profiles:
        for key, text in profiles.items():
            if key.endswith(('/none', '/otel')):
                print(f'\n=== cProfile, {key}, long run (sorted by own time) ===\n{text}')
        results['_profiles'] = profiles
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + '\n')
    print(f'\nraw results: {args.output}')


if __name__ == '__main__':
    main()

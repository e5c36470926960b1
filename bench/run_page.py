"""Run page benchmark (run by hand): how fast a big run's page shows its Gantt chart in Chromium.

    .venv/bin/python bench/run_page.py [--steps 10000] [--rounds 7] [--resumed] [--json PATH]

Serves an in-memory dashboard on a free 127.0.0.1 port, runs a real graph of `--steps` steps (each opening one
nested span) with its spans exported to it over OTLP/HTTP, then loads the run's page in Debian's headless Chromium
`--rounds` times, each in a fresh browser context: the time from navigation to the first Gantt bar being visible,
to the `load` event, and from clicking a bar to its detail panel's title, and the page's size. Target: the Gantt
visible in < 0.5 s. The page fetched alone over HTTP (the server's share) is timed too. Medians are printed; to
compare two checkouts, run each with `PYTHONPATH=<checkout>` in turn.

`--resumed` runs the graph in two parts instead: half its steps, then the rest resumed from its persistence in a
new, linked trace, and loads the second part's page, which also draws every step of both parts on one chart.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer
from playwright.sync_api import sync_playwright

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings, SimpleStatePersistence
from tracegraph.dashboard.server.server import ServerThread

CHROMIUM = '/usr/bin/chromium'
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run']
TARGET_GANTT_S = 0.5


@dataclass
class Plan:
    steps: int
    tracer: Tracer


@dataclass
class Work(BaseNode[None, Plan, int]):
    n: int = 1

    async def run(self, ctx: GraphRunContext[None, Plan]) -> Work | End[int]:
        with ctx.deps.tracer.start_as_current_span('call tool'):
            pass
        return Work(self.n + 1) if self.n < ctx.deps.steps else End(self.n)


async def _in_two_parts(graph: Graph[None, Plan, int], plan: Plan) -> tuple[str, str]:
    """Half the run's steps, then the rest resumed from its persistence: the second part's trace and run ids."""
    persistence = SimpleStatePersistence()
    async with graph.iter(Work(), deps=plan, persistence=persistence) as first:
        for _ in range(plan.steps // 2):
            await first.next()
    async with graph.iter_from_persistence(persistence, deps=plan) as second:
        async for _ in second:
            pass
    assert second.trace_id is not None
    return second.trace_id, second.run_id


def _seed(server: ServerThread, steps: int, *, resumed: bool) -> str:
    """Run the graph once (in two parts when `resumed`), its spans sent to `server`; the path of the (last part's)
    run page, once the server has stored every step."""
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f'{server.url}/v1/traces')
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=4 * steps + 100))  # keep every span
    graph = Graph(
        nodes=[Work], name='bench_run_page', instrumentation=InstrumentationSettings(tracer_provider=provider)
    )
    plan = Plan(steps=steps, tracer=provider.get_tracer('bench'))
    if resumed:
        trace_id, run_id = asyncio.run(_in_two_parts(graph, plan))
        path, expected = f'/runs/{trace_id}?run_id={run_id}', steps - steps // 2
    else:
        result = graph.run_sync(Work(), deps=plan)
        assert result.trace_id is not None
        trace_id, path, expected = result.trace_id, f'/runs/{result.trace_id}', steps
    provider.shutdown()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs: list[dict[str, Any]] = httpx.get(
            f'{server.url}/api/runs', params={'graph': 'bench_run_page'}, timeout=30
        ).json()
        if any(r['trace_id'] == trace_id and r['steps'] == expected and r['outcome'] == 'completed' for r in runs):
            return path
        time.sleep(0.2)
    raise SystemExit('the server did not store the run in 120 s')


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or '').splitlines()[0])
    parser.add_argument('--steps', type=int, default=10_000)
    parser.add_argument('--rounds', type=int, default=7)
    parser.add_argument('--resumed', action='store_true', help='run the graph in two parts; load the second')
    parser.add_argument('--json', type=Path, default=None)
    args = parser.parse_args()
    with ServerThread(port=0) as server:
        url = server.url + _seed(server, args.steps, resumed=args.resumed)
        size = len(httpx.get(url, timeout=60).content)
        rows: list[dict[str, float]] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for _ in range(args.rounds):
                fetched = time.perf_counter()
                httpx.get(url, timeout=60).raise_for_status()
                served = time.perf_counter() - fetched
                context = browser.new_context(viewport={'width': 1280, 'height': 900})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(url, wait_until='commit')
                page.locator('svg.gantt rect.bar.node').first.wait_for(state='visible')
                gantt = time.perf_counter() - started
                page.wait_for_load_state('load')
                loaded = time.perf_counter() - started
                clicked = time.perf_counter()
                page.locator('svg.gantt rect.bar.node').nth(5).click()
                page.locator('#detail h2').wait_for(state='visible')
                detail = time.perf_counter() - clicked
                rows.append({'server_s': served, 'gantt_s': gantt, 'load_s': loaded, 'detail_s': detail})
                context.close()
            browser.close()
    medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    what = 'run page, second of its two parts' if args.resumed else 'run page'
    print(f'{args.steps:,}-step {what}: {size / 1e3:.0f} kB of HTML; medians of {args.rounds} loads:')
    print(
        f'  Gantt visible {medians["gantt_s"]:.3f} s (target < {TARGET_GANTT_S} s), load event {medians["load_s"]:.3f} s, '
    )
    print(
        f'  detail panel after a click {medians["detail_s"] * 1e3:.0f} ms; the page alone over HTTP {medians["server_s"]:.3f} s'
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {'steps': args.steps, 'resumed': args.resumed, 'html_bytes': size, 'medians': medians, 'rounds': rows},
                indent=1,
            )
        )


if __name__ == '__main__':
    main()

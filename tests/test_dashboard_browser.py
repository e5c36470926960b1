"""The dashboard's pages in real headless Chromium (Debian's `chromium`, driven by Playwright)."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote

import httpx
import pytest
from browser_helpers import require_chromium, shot
from serve_helpers import (
    SampleRun,
    crafted_body,
    crafted_run,
    emit_run,
    exporting_provider,
    kv,
    running_server,
    trace_of,
)

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings
from tracegraph.dashboard.server.server import ServerThread
from tracegraph.dashboard.web.svg import OUTCOME_COLOURS

AGENT_STEPS = ('UserPromptNode', 'ModelRequestNode', 'CallToolsNode', 'ModelRequestNode', 'CallToolsNode')

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402 - only once chromium is there


@pytest.fixture(scope='module')
def seeded() -> Iterator[tuple[ServerThread, list[SampleRun]]]:
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            runs = [emit_run(provider, graph='pipeline', fail=i == 2) for i in range(4)]
            runs.append(emit_run(provider, graph='agent', steps=AGENT_STEPS))
        yield server, runs


def test_runs_list(seeded: tuple[ServerThread, list[SampleRun]], page: Page) -> None:
    server, runs = seeded
    page.goto(server.url + '/')
    rows = page.locator('table.runs tbody tr.run')
    expect(rows).to_have_count(len(runs))
    # newest first
    assert rows.evaluate_all('rs => rs.map(r => r.dataset.trace)') == [r.trace_id for r in reversed(runs)]
    expect(page.locator('.card')).to_have_count(2)
    shot(page, 'dashboard-runs.png')
    page.select_option('select[name=outcome]', 'failed')
    page.click('form.filters button')
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute('data-trace') == runs[2].trace_id
    expect(rows.first.locator('.badge')).to_have_text('failed')


def test_run_page_gantt(seeded: tuple[ServerThread, list[SampleRun]], page: Page) -> None:
    server, runs = seeded
    agent = runs[-1]
    page.goto(server.url + '/')
    page.click(f'tr[data-trace="{agent.trace_id}"] a.runlink')
    bars = page.locator('svg.gantt rect.bar.node')
    expect(bars).to_have_count(len(AGENT_STEPS))
    info = bars.evaluate_all(
        'bs => bs.map(b => [Number(b.dataset.step), b.dataset.node, b.getBBox().x, b.getBBox().width])'
    )
    assert [(step, node) for step, node, _, _ in info] == list(enumerate(AGENT_STEPS, start=1))
    xs = [x for _, _, x, _ in info]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    # each bar starts after the previous one ended (the steps are sequential)
    assert all(info[i][2] + info[i][3] <= info[i + 1][2] + 0.5 for i in range(len(info) - 1))
    # nested spans are drawn under the second step
    expect(page.locator('svg.gantt rect.bar.span')).to_have_count(2)
    expect(bars.nth(1).locator('title')).to_have_text(re.compile(r'^step 2: ModelRequestNode · '))
    shot(page, 'dashboard-run.png')


def test_run_page_shows_the_exception(seeded: tuple[ServerThread, list[SampleRun]], page: Page) -> None:
    server, runs = seeded
    failed = runs[2]
    page.goto(f'{server.url}/runs/{failed.trace_id}')
    last = page.locator('svg.gantt rect.bar.node').last
    assert last.get_attribute('data-outcome') == 'failed'
    assert last.get_attribute('fill') == OUTCOME_COLOURS['failed']
    expect(page.locator('.exception h3')).to_have_text('Step 3 Answer raised ValueError: the answer is not 42')
    expect(page.locator('.exception pre.traceback')).to_contain_text('raise ValueError(plan.error)')
    shot(page, 'dashboard-run-failed.png')


def test_graph_page(seeded: tuple[ServerThread, list[SampleRun]], page: Page) -> None:
    server, _ = seeded
    page.goto(server.url + '/graphs/agent')
    rows = page.locator('table.nodes tbody tr.node-row')
    expect(rows).to_have_count(3)
    assert rows.evaluate_all('rs => rs.map(r => r.dataset.node)') == [
        'UserPromptNode',
        'ModelRequestNode',
        'CallToolsNode',
    ]
    cells = rows.nth(1).locator('td')
    expect(cells.nth(1)).to_have_text('2')
    expect(cells.nth(2)).to_have_text('0.0%')
    expect(page.locator('svg.diagram g.gnode')).to_have_count(4)
    edges = page.locator('svg.diagram g.edge:not(.never)')
    expect(edges).to_have_count(4)  # taken; the graph's other declared edges are dashed (g.edge.never)
    expect(page.locator('svg.diagram g.edge.never').first).to_be_attached()
    widths = edges.evaluate_all(
        'es => es.map(e => [e.dataset.source, e.dataset.target, Number(e.querySelector("path").getAttribute("stroke-width"))])'
    )
    by_edge = {(s, t): w for s, t, w in widths}
    assert by_edge[('ModelRequestNode', 'CallToolsNode')] > by_edge[('UserPromptNode', 'ModelRequestNode')]
    shot(page, 'dashboard-graph.png')


def test_demo_runs_in_the_browser(page: Page) -> None:
    """`tracegraph demo` sends its runs through the real exporters; the dashboard lists and draws them."""
    import subprocess
    import sys

    from tracegraph.demo.runner import DEMO_RUNS

    with running_server() as server:
        command = [sys.executable, '-m', 'tracegraph.cli', 'demo', '--once', '--endpoint', server.url]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        page.goto(server.url + '/?limit=100')
        rows = page.locator('table.runs tbody tr.run')
        expect(rows).to_have_count(DEMO_RUNS)
        text = page.locator('table.runs').inner_text()
        for graph in ('thermostat', 'flaky_fetch', 'weather_agent'):
            assert graph in text
        shot(page, 'demo-runs.png')

        agent = page.locator('table.runs tbody tr.run', has_text='weather_agent').first
        agent.locator('a.runlink').click()
        bars = page.locator('svg.gantt rect.bar.node')
        expect(bars).to_have_count(5)
        nodes = bars.evaluate_all('bs => bs.map(b => b.dataset.node)')
        assert nodes == ['UserPromptNode', 'ModelRequestNode', 'CallToolsNode', 'ModelRequestNode', 'CallToolsNode']
        expect(page.locator('svg.gantt rect.bar.span').first).to_be_visible()  # the model call and tool spans
        shot(page, 'demo-agent-run.png')


XSS = '"><img src=x onerror="window.__xss=1"><script>window.__xss=1</script><svg onload="window.__xss=1">'


def test_script_payloads_in_span_data_never_run(page: Page) -> None:
    """Names, ids, attributes, outcomes and exception texts carrying script are shown as text; nothing executes."""
    spans = crafted_run(graph=f'g{XSS}', outcome=f'done{XSS}', nodes=2)
    node = spans[1]
    node.attributes.extend([kv(f'key{XSS}', f'value{XSS}'), kv('tracegraph.node.input', f'{{"q": "{XSS}"}}')])
    node.status.code = node.status.STATUS_CODE_ERROR
    node.events.add(
        name='exception',
        time_unix_nano=node.start_time_unix_nano,
        attributes=[kv('exception.type', f'Err{XSS}'), kv('exception.message', XSS), kv('exception.stacktrace', XSS)],
    )
    problems: list[str] = []
    page.on('pageerror', lambda e: problems.append(f'page error: {e}'))
    page.on('response', lambda r: problems.append(f'{r.status} {r.url}') if r.status >= 400 else None)
    with running_server() as server:
        httpx.post(
            server.url + '/v1/traces', content=crafted_body(*spans), headers={'Content-Type': 'application/x-protobuf'}
        ).raise_for_status()
        for path in (
            '/',
            f'/runs/{trace_of(spans)}',
            f'/graphs/{quote(spans[0].attributes[0].value.string_value, safe="")}',
        ):
            response = page.goto(server.url + path)
            assert response is not None and response.status == 200, path
            assert "script-src 'self'" in response.headers['content-security-policy']
            for bar in page.locator('[data-span]').all()[:6]:
                bar.click()  # the detail panel renders the span's attributes and events
                expect(page.locator('#detail')).not_to_contain_text('Loading')
            assert page.evaluate('window.__xss') is None, path
            expect(page.locator('main')).to_contain_text('onerror="window.__xss=1"')  # shown, as text
        shot(page, 'dashboard-xss.png')
    assert problems == []


# --- find, page, watch, read ------------------------------------------------------------------------------------

T0 = 1_790_000_000 * 10**9


@pytest.fixture(scope='module')
def many() -> Iterator[tuple[ServerThread, list[SampleRun]]]:
    """Twelve runs a minute apart: `alpha` (two steps, every third failing) and `beta` (one step)."""
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            runs = [
                emit_run(
                    provider,
                    graph='alpha' if i % 2 else 'beta',
                    steps=('Fetch', 'Think') if i % 2 else ('Fetch',),
                    fail=i % 3 == 0,
                    start_ns=T0 + i * 60 * 10**9,
                )
                for i in range(12)
            ]
        yield server, runs


def listed(page: Page) -> list[str]:
    return page.locator('table.runs tbody tr.run').evaluate_all('rs => rs.map(r => r.dataset.run)')


def test_filters_and_the_search_box(many: tuple[ServerThread, list[SampleRun]], page: Page) -> None:
    server, runs = many
    newest_first = [r.run_id for r in reversed(runs)]
    page.goto(server.url + '/')
    assert listed(page) == newest_first
    page.select_option('select[name=graph]', 'alpha')
    expect(page.locator('input[name=node]')).to_be_hidden()  # folded until asked for: a phone shows the runs first
    page.click('details.more summary')
    page.fill('input[name=node]', 'Think')
    page.click('form.filters button[type=submit]')
    assert listed(page) == [r.run_id for r in reversed(runs) if r.graph == 'alpha']
    assert 'graph=alpha' in page.url and 'node=Think' in page.url  # the filters are in the URL
    page.select_option('select[name=outcome]', 'failed')
    page.click('form.filters button[type=submit]')
    assert listed(page) == [r.run_id for r in reversed(runs) if r.graph == 'alpha' and r.outcome == 'failed']
    expect(page.locator('input[name=node]')).to_be_visible()  # a folded filter in use keeps them unfolded
    page.goto(server.url + '/')
    page.click('details.more summary')
    page.fill('input[name=min_duration]', '30ms')  # two steps last 33 ms, one 12 ms
    page.select_option('select[name=sort]', 'duration')
    page.click('form.filters button[type=submit]')
    assert sorted(listed(page)) == sorted(r.run_id for r in runs if r.graph == 'alpha')
    page.goto(server.url + '/')
    page.click('details.more summary')
    page.fill('input[name=attr]', 'tracegraph.run.start_node=Fetch')
    page.fill('input[name=until]', _iso(T0 + 3 * 60 * 10**9))
    page.click('form.filters button[type=submit]')
    assert listed(page) == [r.run_id for r in reversed(runs[:3])]
    shot(page, 'dashboard-runs-filtered.png')
    page.goto(server.url + '/')
    page.click('details.more summary')
    page.fill('input[name=max_duration]', '20ms')  # one step: 12 ms
    page.fill('input[name=service]', 'dashboard-tests')
    page.click('form.filters button[type=submit]')
    assert listed(page) == [r.run_id for r in reversed(runs) if r.graph == 'beta']
    page.goto(server.url + '/')
    page.click('details.more summary')
    since = datetime.fromtimestamp((T0 + 9 * 60 * 10**9) / 1e9, timezone.utc).strftime('%Y-%m-%dT%H:%M:%S')
    page.fill('input.pick[data-for=since]', since)  # the date picker fills the Since field
    expect(page.locator('input[name=since]')).to_have_value(since)
    page.click('form.filters button[type=submit]')
    assert listed(page) == [r.run_id for r in reversed(runs[9:])]
    page.goto(server.url + '/')
    page.click('details.more summary')
    page.select_option('select[name=kind]', 'trace')
    page.click('form.filters button[type=submit]')
    assert listed(page) == []
    expect(page.locator('p.empty')).to_contain_text('No run matches these filters.')
    page.goto(server.url + '/')
    page.fill('input[name=q]', runs[5].trace_id)
    page.press('input[name=q]', 'Enter')
    expect(page).to_have_url(re.compile(f'/runs/{runs[5].trace_id}'))
    expect(page.locator('h1')).to_contain_text(runs[5].run_id)


def test_paging_forward_and_back(many: tuple[ServerThread, list[SampleRun]], page: Page) -> None:
    server, runs = many
    page.goto(server.url + '/?limit=4')
    pages = [listed(page)]
    for _ in range(2):
        page.click('a.older')
        pages.append(listed(page))
    expect(page.locator('a.older')).to_have_count(0)  # the last page
    seen = [run_id for p in pages for run_id in p]
    assert seen == [r.run_id for r in reversed(runs)]  # every row once, in order, over 3 pages
    page.click('a.newer')
    assert listed(page) == pages[1]
    page.click('a.newer')
    assert listed(page) == pages[0]
    expect(page.locator('a.newer')).to_have_count(0)


@dataclass
class Counter:
    count: int = 0
    log: list[str] = field(default_factory=list[str])


@dataclass
class Bump(BaseNode[Counter, None, int]):
    by: int

    async def run(self, ctx: GraphRunContext[Counter]) -> Bump | End[int]:
        ctx.state.count += self.by
        ctx.state.log.append(f'+{self.by}')
        return Bump(self.by + 1) if ctx.state.count < 6 else End(ctx.state.count)


def test_a_run_appears_while_running_then_completes_without_reload(page: Page) -> None:
    step = threading.Event()
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        settings = InstrumentationSettings(tracer_provider=provider, state='diff')
        graph = Graph(nodes=[Bump], name='live', instrumentation=settings)

        async def drive() -> None:
            async with graph.iter(Bump(1), state=Counter()) as run:
                await run.next()
                step.wait(30)  # the browser looks at the run while it runs
                async for _ in run:
                    pass

        page.goto(server.url + '/')
        expect(page.locator('#live-state')).to_have_text('updating every 2 s')
        worker = threading.Thread(target=lambda: asyncio.run(drive()))
        worker.start()
        try:
            row = page.locator('table.runs tbody tr.run')
            expect(row).to_have_count(1, timeout=10_000)  # appeared without a reload
            expect(row.locator('.badge')).to_have_text('running')
            shot(page, 'dashboard-live-running.png')
            running = page.context.new_page()  # the run's own page updates itself too, with its own pause control
            running.goto(f'{server.url}/runs/{row.get_attribute("data-trace")}')
            expect(running.locator('#live-toggle')).to_have_text('Pause updates')
            expect(running.locator('.meta .badge')).to_have_text('running')
            step.set()
            expect(row.locator('.badge')).to_have_text('completed', timeout=10_000)
            expect(running.locator('.meta .badge')).to_have_text('completed', timeout=10_000)
            running.close()
        finally:
            step.set()
            worker.join(30)
        page.click('#live-toggle')
        expect(page.locator('#live-state')).to_have_text('paused')

        # the detail panel: by click, then by keyboard, with the node's input and its state change
        row.locator('a.runlink').click()
        page.locator('svg.gantt rect.bar.node').nth(1).click()
        panel = page.locator('#detail')
        expect(panel).to_be_visible()
        expect(panel.locator('h2')).to_have_text('run node Bump')
        expect(panel).to_contain_text('"by": 2')  # node input, pretty-printed
        diff = panel.locator('table.state-diff tbody tr')
        expect(diff).to_have_count(2)
        assert diff.first.inner_text().split() == ['count', '1', '3']
        expect(panel.locator('details.logfire')).to_have_count(0)  # a plain SDK: no logfire.* attributes
        shot(page, 'dashboard-detail-panel.png')
        page.keyboard.press('Escape')
        expect(panel).to_be_hidden()
        first_row = page.locator('tr.step-row').first
        first_row.focus()
        page.keyboard.press('Enter')
        expect(panel).to_be_visible()
        expect(panel).to_contain_text('"by": 1')
        panel.locator('ul.around a').first.click()  # to the parent: the run span
        expect(panel.locator('h2')).to_have_text('run graph live')


def test_a_ten_thousand_step_run_page_loads_quickly(page: Page) -> None:
    spans = crafted_run(nodes=10_000)
    with running_server() as server:
        for i in range(0, len(spans), 2000):
            httpx.post(
                server.url + '/v1/traces',
                content=crafted_body(*spans[i : i + 2000]),
                headers={'Content-Type': 'application/x-protobuf'},
                timeout=60,
            ).raise_for_status()
        started = time.perf_counter()
        page.goto(f'{server.url}/runs/{trace_of(spans)}', wait_until='load')
        seconds = time.perf_counter() - started
        size = page.evaluate('document.documentElement.outerHTML.length')
        print(
            f'\n10,000-step run page: loaded in {seconds:.2f} s, {size / 1e6:.2f} MB of HTML'
        )  # reported, not asserted
        expect(page.locator('svg.gantt rect.bar.node')).to_have_count(200)
        expect(page.locator('svg.overview rect.bucket')).to_have_count(200)
        expect(page.locator('.window .pager')).to_contain_text('steps 1–200 of 10000')
        page.locator('svg.overview a').last.click()
        expect(page.locator('.window .pager')).to_contain_text('of 10000')
        assert page.locator('svg.gantt rect.bar.node').last.get_attribute('data-step') == '10000'
        shot(page, 'dashboard-big-run.png')


def test_narrow_screens_scroll_tables_not_the_page(
    many: tuple[ServerThread, list[SampleRun]], browser: Browser
) -> None:
    server, runs = many
    context = browser.new_context(viewport={'width': 390, 'height': 844})
    narrow = context.new_page()
    try:
        for path in ('/', f'/runs/{runs[1].trace_id}', '/graphs/alpha'):
            narrow.goto(server.url + path)
            overflow = narrow.evaluate('document.documentElement.scrollWidth - document.documentElement.clientWidth')
            assert overflow <= 0, (path, overflow)
        narrow.goto(server.url + '/')
        shot(narrow, 'dashboard-runs-390.png')
    finally:
        context.close()


def _iso(ns: int) -> str:
    from tracegraph.tracing.clock import ns_to_datetime

    return ns_to_datetime(ns).isoformat()


def test_graph_page_series_diagram_and_edges(page: Page) -> None:
    nine = tuple('ABCDEFGHI')
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            runs = [
                emit_run(provider, graph='wide', steps=nine[: 5 + i % 5], fail=i == 3, start_ns=T0 + i * 60 * 10**9)
                for i in range(8)
            ]
        page.goto(server.url + '/graphs/wide')
        expect(page.locator('figure.chart')).to_have_count(3)
        expect(page.locator('figure.chart rect.bar.failed')).to_have_count(1)
        expect(page.locator('figure.chart figcaption').first).to_contain_text('failed')  # a legend, not colour alone
        # The time axis is labelled between its ends (eight runs a minute apart: to the second), and the
        # percentile labels at a line's end never overlap, as Chromium lays them out.
        times = page.locator('figure.chart').first.locator('text.axis-label[text-anchor="middle"]').all_text_contents()
        assert len(times) == 3 and all(re.fullmatch(r'\d\d:\d\d:\d\d', t) for t in times) and times == sorted(times)
        boxes = page.locator('figure.chart text.line-label').evaluate_all(
            'ts => ts.map(t => { const b = t.getBBox(); return [t.textContent, b.y, b.y + b.height]; })'
        )
        assert [name for name, _, _ in boxes] == ['p50', 'p95', 'p99']
        spans = sorted((top, bottom) for _, top, bottom in boxes)
        assert all(a[1] <= b[0] + 0.5 for a, b in itertools.pairwise(spans)), boxes
        diagram = page.locator('svg.diagram')
        expect(diagram.locator('g.gnode')).to_have_count(10)  # nine nodes and End
        fits = page.evaluate(
            'Math.ceil(document.querySelector("svg.diagram").getBoundingClientRect().right) '
            '<= document.querySelector("main").getBoundingClientRect().right'
        )
        assert fits  # the whole diagram is on the page at 1280 px, nothing cut off
        fills = diagram.locator('g.gnode:not(.failing) rect').evaluate_all('rs => rs.map(r => r.getAttribute("fill"))')
        assert OUTCOME_COLOURS['failed'] not in fills  # red is kept for failure
        shot(page, 'dashboard-graph-wide.png')
        diagram.locator('g.edge[data-source="H"][data-target="I"] text.edge-label').click()
        expect(page).to_have_url(re.compile(r'edge=H-%3EI'))
        took = [r.run_id for r in reversed(runs) if [n for n, _ in r.nodes][-2:] == ['H', 'I']]
        assert listed(page) == took and took


def test_compare_view(many: tuple[ServerThread, list[SampleRun]], page: Page) -> None:
    server, runs = many
    page.goto(f'{server.url}/runs/{runs[3].trace_id}')  # alpha (Fetch, Think); the alpha run before it: runs[1]
    page.click('a.compare-previous')
    expect(page.locator('h1')).to_have_text('Compare runs')
    expect(page.locator('table.compare tbody tr')).to_have_count(2)
    expect(page.locator('main')).to_contain_text('The two runs took the same path.')
    page.goto(f'{server.url}/runs/{runs[3].trace_id}')
    page.fill('.compare-form input[name=b]', runs[2].trace_id)  # beta: Fetch only
    page.click('.compare-form button')
    expect(page.locator('.mark.diverge')).to_have_text('paths diverge here')
    expect(page.locator('main')).to_contain_text(
        'The paths diverge at step 2: 1 step on both paths, 1 only in A, 0 only in B.'
    )
    shot(page, 'dashboard-compare.png')


def test_the_detail_panel_folds_logfire_attributes_away(page: Page) -> None:
    spans = crafted_run(nodes=1)
    spans[1].attributes.extend([kv('logfire.msg', 'run node N'), kv('logfire.span_type', 'span')])
    with running_server() as server:
        httpx.post(
            server.url + '/v1/traces', content=crafted_body(*spans), headers={'Content-Type': 'application/x-protobuf'}
        ).raise_for_status()
        page.goto(f'{server.url}/runs/{trace_of(spans)}')
        page.locator('svg.gantt rect.bar.node').first.click()
        folded = page.locator('#detail details.logfire')
        expect(folded).to_have_count(1)
        expect(folded.locator('summary')).to_have_text('Logfire attributes (2)')
        expect(folded).not_to_have_attribute('open', '')
        expect(page.locator('#detail table.attrs').first).not_to_contain_text('logfire.msg')

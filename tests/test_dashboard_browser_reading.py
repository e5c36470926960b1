"""Reading the dashboard in real Chromium: legible diagrams, live pages that keep the reader's place, running steps.

Contrast is computed from the styles Chromium rendered, not from the markup; live updates are waited for by what
they change on the page, never by sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from browser_helpers import require_chromium, shot
from serve_helpers import emit_run, exporting_provider, running_server

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Page, expect  # noqa: E402 - only once chromium is there

LONG_NAMES = tuple(f'Step{i:02d}CallTheQuarterlyReportGenerator' for i in range(1, 13))
"""Twelve nodes: step `i` lasts `10 * i` ms (`sample_runs`), so the later ones fall in the dark p95 bands."""

CONTRAST = """
els => els.map(text => {
  const lum = rgb => {
    const c = rgb.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number).map(v => v / 255)
      .map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const rect = text.parentElement.querySelector('rect');
  const ink = getComputedStyle(text).fill, paper = getComputedStyle(rect).fill;
  const [hi, lo] = [lum(ink), lum(paper)].sort((a, b) => b - a);
  const t = text.getBBox(), r = rect.getBBox();
  return {text: text.textContent, ratio: (hi + 0.05) / (lo + 0.05),
          inside: t.x >= r.x && t.x + t.width <= r.x + r.width};
})
"""


def test_every_diagram_label_is_legible_and_inside_its_box(page: Page) -> None:
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            for _ in range(3):
                emit_run(provider, graph='report', steps=LONG_NAMES)
        page.goto(server.url + '/graphs/report')
        labels = page.locator('svg.diagram g.gnode text').evaluate_all(CONTRAST)
        shot(page, 'dashboard-diagram-contrast.png')
    assert len(labels) >= 2 * (len(LONG_NAMES) + 1)
    assert [label for label in labels if label['ratio'] < 4.5] == []
    assert [label['text'] for label in labels if not label['inside']] == []
    names = [label['text'] for label in labels if label['text'].startswith('Step')]
    assert names and all(name.endswith('…') for name in names)  # cut visibly, the whole name in the box's title


@dataclass
class Waiting:
    count: int = 0


@dataclass
class Prepare(BaseNode[Waiting, None, int]):
    async def run(self, ctx: GraphRunContext[Waiting]) -> AwaitApproval:
        ctx.state.count += 1
        return AwaitApproval()


@dataclass
class AwaitApproval(BaseNode[Waiting, None, int]):
    async def run(self, ctx: GraphRunContext[Waiting]) -> End[int]:
        return End(ctx.state.count)


@pytest.fixture
def waiting_run() -> Iterator[tuple[str, str]]:
    """A run of graph `approval` stopped in `AwaitApproval` (its first step done), on a server: (url, trace id)."""
    release = threading.Event()
    started: list[str] = []
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        graph = Graph(nodes=[Prepare, AwaitApproval], name='approval', instrumentation=InstrumentationSettings(
            tracer_provider=provider, state='diff'))  # fmt: skip

        async def drive() -> None:
            async with graph.iter(Prepare(), state=Waiting()) as run:
                await run.next()
                assert run.trace_id is not None
                started.append(run.trace_id)
                release.wait(60)
                async for _ in run:
                    pass

        worker = threading.Thread(target=lambda: asyncio.run(drive()))
        worker.start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for _ in range(200):  # the first step's span reaches the server
                    if started and client.get('/api/runs', params={'graph': 'approval'}).json():
                        break
                    release.wait(0.05)
            assert started
            yield server.url, started[0]
        finally:
            release.set()
            worker.join(30)


def test_a_waiting_run_shows_its_running_step_and_its_graph(waiting_run: tuple[str, str], page: Page) -> None:
    url, trace_id = waiting_run
    page.goto(f'{url}/runs/{trace_id}')
    expect(page.locator('p.pending')).to_contain_text('Running step 2: AwaitApproval since')
    running = page.locator('svg.gantt rect.bar.running')
    expect(running).to_have_count(1)
    expect(page.locator('svg.gantt line.now')).to_have_count(1)
    first = running.get_attribute('width')
    assert first is not None
    expect(running).not_to_have_attribute('width', first, timeout=15_000)  # it grows, without a reload
    shot(page, 'dashboard-running-step.png')
    # the graph is there while its first run runs, and the runs list keeps the graph filter it was opened with
    page.goto(f'{url}/graphs/approval')
    expect(page.locator('h1')).to_have_text('Graph approval')
    expect(page.locator('svg.diagram g.gnode[data-node="Prepare"]')).to_have_count(1)
    page.goto(f'{url}/?graph=approval')
    expect(page.locator('select[name=graph]')).to_have_value('approval')
    expect(page.locator('table.runs tbody tr.run')).to_have_count(1)


def test_live_updates_keep_focus_and_escape_gives_it_back(waiting_run: tuple[str, str], page: Page) -> None:
    url, trace_id = waiting_run
    page.goto(f'{url}/runs/{trace_id}')
    bar = page.locator('svg.gantt rect.bar.node').first
    span = bar.get_attribute('data-span')
    bar.focus()
    page.keyboard.press('Enter')
    panel = page.locator('#detail')
    expect(panel).to_be_visible()
    page.keyboard.press('Escape')
    expect(panel).to_be_hidden()
    focused = 'document.activeElement && document.activeElement.dataset.span'
    assert page.evaluate(focused) == span
    # two live swaps (the running bar's label changes with each), and the focus and selection stay with the bar
    running = page.locator('g.pending text.dur')
    for _ in range(2):
        expect(running).not_to_have_text(running.text_content() or '', timeout=15_000)
    assert page.evaluate(focused) == span
    assert page.evaluate(f'document.querySelector(\'rect.bar[data-span="{span}"]\').classList.contains("selected")')


def test_the_empty_runs_page_names_the_address_it_is_reached_on(page: Page) -> None:
    with running_server() as server:
        page.goto(server.url + '/')
        expect(page.locator('p.empty code')).to_have_text(f'OTEL_EXPORTER_OTLP_ENDPOINT={server.url}')


def test_the_search_box_finds_nested_spans_errors_and_id_prefixes(page: Page) -> None:
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            runs = [emit_run(provider, graph='pipeline', fail=i == 1) for i in range(3)]
        page.goto(server.url + '/')
        for text, expected in (
            ('http POST', [r.trace_id for r in reversed(runs)]),  # a span nested two levels inside step 2
            ('answer is NOT 42', [runs[1].trace_id]),  # the exception's message, in another case
            (runs[2].trace_id[:10], [runs[2].trace_id]),  # a trace id's start
        ):
            page.fill('input[name=q]', text)
            page.click('form.filters button')
            rows = page.locator('table.runs tbody tr.run')
            expect(rows).to_have_count(len(expected))
            assert rows.evaluate_all('rs => rs.map(r => r.dataset.trace)') == expected
            noun = 'run matches' if len(expected) == 1 else 'runs match'
            expect(page.locator('p.found')).to_have_text(f'{len(expected)} {noun}')

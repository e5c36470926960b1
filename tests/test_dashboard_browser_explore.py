"""Exploring a run in real Chromium: zoom and pan without a page load, sortable steps, the slowest steps, the
selected step in the URL, a duration-coded overview, and the run's steps as CSV.

The sample runs' clock is fixed (`sample_runs`): step `n` lasts `10 * n` ms, so the longest steps are the last.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

import httpx
import pytest
from browser_helpers import require_chromium, shot
from serve_helpers import SampleRun, emit_run, exporting_provider, running_server

from tracegraph.dashboard.server.server import ServerThread

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402 - only once chromium is there

LONG_RUN = tuple(('Plan', 'Work', 'Check')[i % 3] for i in range(300))
"""300 steps: more than a page's window (200), so the longest ones (the last) are not in the first window."""


@pytest.fixture(scope='module')
def served() -> Iterator[tuple[ServerThread, SampleRun, SampleRun]]:
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            short = emit_run(provider, graph='pipeline', steps=('Fetch', 'Think', 'Answer', 'Store', 'Notify'))
            long = emit_run(provider, graph='long', steps=LONG_RUN, nested_calls=False)
        yield server, short, long


def _ticks(page: Page) -> list[str]:
    return page.locator('svg.gantt g.axis text.tick').all_text_contents()


def _bar_box(page: Page, step: int) -> tuple[float, float]:
    box = page.locator(f'svg.gantt rect.bar.node[data-step="{step}"]').evaluate(
        'b => [b.getBBox().x, b.getBBox().width]'
    )
    return box[0], box[1]


def test_zooming_changes_the_axis_without_a_page_load(
    served: tuple[ServerThread, SampleRun, SampleRun], page: Page
) -> None:
    server, short, _ = served
    page.goto(f'{server.url}/runs/{short.trace_id}?run_id={short.run_id}')
    page.evaluate('window.notReloaded = true')
    whole = _ticks(page)
    x5, w5 = _bar_box(page, 5)
    w4 = _bar_box(page, 4)[1]

    page.get_by_role('button', name='Zoom in').click()
    expect(page.locator('#zoom-range')).to_contain_text('showing +')
    zoomed = _ticks(page)
    assert zoomed != whole and len(zoomed) >= 3
    assert _bar_box(page, 4)[1] == pytest.approx(2 * w4, rel=0.01)  # the middle step: twice as wide
    assert page.evaluate('window.notReloaded') is True
    assert re.search(r'#zoom=[0-9.e-]+-[0-9.e-]+$', page.url)

    # Panning moves the time range in view; the chart's last step leaves it when panning to the start.
    page.get_by_role('button', name='← Earlier').click()
    page.get_by_role('button', name='← Earlier').click()
    expect(page.locator('svg.gantt rect.bar.node[data-step="5"]')).to_have_css('visibility', 'hidden')

    # A drag across the chart zooms into the dragged range, and opens no step.
    page.get_by_role('button', name='Whole window').click()
    expect(page.locator('#zoom-range')).to_have_text('showing the whole window')
    assert _ticks(page) == whole and _bar_box(page, 5) == pytest.approx((x5, w5), abs=0.15)
    chart = page.locator('svg.gantt').bounding_box()
    assert chart is not None
    y = chart['y'] + 40
    page.mouse.move(chart['x'] + 240, y)
    page.mouse.down()
    page.mouse.move(chart['x'] + 400, y, steps=5)
    page.mouse.up()
    expect(page.locator('#zoom-range')).to_contain_text('showing +')
    assert page.locator('#detail').is_hidden()
    assert _ticks(page) != whole

    # The zoom is in the URL: the same link opens the same view.
    dragged = _ticks(page)
    page.reload()
    expect(page.locator('#zoom-range')).to_contain_text('showing +')
    assert _ticks(page) == dragged
    shot(page, 'dashboard-run-zoomed.png')

    # With a bar focused, the keyboard zooms too.
    page.locator('svg.gantt rect.bar.node[data-step="1"]').focus()
    page.keyboard.press('0')
    expect(page.locator('#zoom-range')).to_have_text('showing the whole window')
    page.keyboard.press('+')
    expect(page.locator('#zoom-range')).to_contain_text('showing +')


def test_steps_sort_by_any_column(served: tuple[ServerThread, SampleRun, SampleRun], page: Page) -> None:
    server, short, _ = served
    page.goto(f'{server.url}/runs/{short.trace_id}?run_id={short.run_id}')
    steps = page.locator('table.steps tbody tr td:first-child')
    expect(steps).to_have_text(['1', '2', '3', '4', '5'])
    duration = page.locator('table.steps th', has_text='Duration')
    duration.get_by_role('button').click()
    expect(duration).to_have_attribute('aria-sort', 'ascending')
    expect(steps).to_have_text(['1', '2', '3', '4', '5'])  # step n lasts 10n ms
    duration.get_by_role('button').click()
    expect(duration).to_have_attribute('aria-sort', 'descending')
    expect(steps).to_have_text(['5', '4', '3', '2', '1'])
    node = page.locator('table.steps th', has_text='Node')
    node.get_by_role('button').click()
    expect(page.locator('table.steps tbody tr td:nth-child(2)')).to_have_text(
        ['Answer', 'Fetch', 'Notify', 'Store', 'Think']
    )


def test_the_slowest_steps_link_to_their_step_opened(
    served: tuple[ServerThread, SampleRun, SampleRun], page: Page
) -> None:
    server, _, long = served
    page.goto(f'{server.url}/runs/{long.trace_id}?run_id={long.run_id}')
    expect(page.locator('.window .pager')).to_contain_text('steps 1–200 of 300')
    expect(page.locator('p.summary')).to_contain_text('ran 100× (33% of the steps) · longest step: step 300')
    slowest = page.locator('ol.slowest li')
    expect(slowest).to_have_count(10)
    expect(slowest.first).to_contain_text('step 300 Check 3.000s')
    expect(slowest.nth(1)).to_contain_text('step 299 Work 2.990s')

    slowest.first.get_by_role('link').click()
    expect(page.locator('.window .pager')).to_contain_text('of 300')
    selected = page.locator('svg.gantt rect.bar.node.selected')
    expect(selected).to_have_attribute('data-step', '300')
    expect(page.locator('#detail h2')).to_have_text('run node Check')
    assert re.search(r'#span=[0-9a-f]{16}$', page.url)
    span_in_url = page.url.rsplit('=', 1)[1]
    assert selected.get_attribute('data-span') == span_in_url

    # Esc closes the panel and takes the span out of the URL; the link opens it again.
    page.keyboard.press('Escape')
    expect(page.locator('#detail')).to_be_hidden()
    assert '#span=' not in page.url
    page.goto(f'{server.url}/runs/{long.trace_id}?run_id={long.run_id}#span={span_in_url}')
    expect(page.locator('#detail h2')).to_have_text('run node Check')

    # "Longest" of each node links to that node's longest step.
    page.goto(f'{server.url}/runs/{long.trace_id}?run_id={long.run_id}')
    page.locator('table.by-node tr', has_text='Plan').get_by_role('link').click()
    expect(page.locator('svg.gantt rect.bar.node.selected')).to_have_attribute('data-step', '298')


def test_the_overview_is_as_tall_as_each_buckets_longest_step(
    served: tuple[ServerThread, SampleRun, SampleRun], page: Page
) -> None:
    server, _, long = served
    page.goto(f'{server.url}/runs/{long.trace_id}?run_id={long.run_id}')
    buckets = page.locator('svg.overview rect.bucket')
    expect(buckets).to_have_count(150)  # 300 steps, 2 per bar
    heights = buckets.evaluate_all('bs => bs.map(b => b.getBBox().height)')
    assert heights == sorted(heights) and heights[-1] > 4 * heights[0]  # the steps get longer
    expect(buckets.last.locator('title')).to_have_text('steps 299–300 · longest 3.000s · completed worst')


def test_a_runs_steps_download_as_csv(served: tuple[ServerThread, SampleRun, SampleRun], page: Page) -> None:
    server, _, long = served
    page.goto(f'{server.url}/runs/{long.trace_id}?run_id={long.run_id}')
    with page.expect_download() as download:
        page.get_by_role('link', name='CSV').click()
    assert download.value.suggested_filename == f'long-{long.run_id}.csv'
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding='utf-8'))))
    assert len(rows) == 300
    assert [(r['step'], r['node_id'], r['outcome']) for r in rows[:2]] == [
        ('1', 'Plan', 'completed'),
        ('2', 'Work', 'completed'),
    ]
    assert float(rows[-1]['duration']) == pytest.approx(3.0)
    assert rows[0]['trace_id'] == long.trace_id and rows[0]['start'].endswith('+00:00')

    missing = httpx.get(f'{server.url}/api/runs/{"0" * 32}/steps.csv', timeout=10)
    assert missing.status_code == 404 and 'No run found' in missing.json()['detail']


def test_the_run_page_draws_the_runs_path_through_the_graph(
    served: tuple[ServerThread, SampleRun, SampleRun], page: Page
) -> None:
    server, short, _ = served
    page.goto(f'{server.url}/runs/{short.trace_id}?run_id={short.run_id}')
    diagram = page.locator('section', has_text='Path through the graph').locator('svg.diagram')
    taken = diagram.locator('g.edge.taken').evaluate_all('es => es.map(e => e.dataset.source + ">" + e.dataset.target)')
    assert sorted(taken) == ['Answer>Store', 'Fetch>Think', 'Notify>End', 'Store>Notify', 'Think>Answer']
    assert diagram.locator('g.edge.never').count() > 0  # declared by the graph, taken by no stored run
    diagram.locator('a', has=page.locator('g.gnode[data-node="Think"]')).click()
    expect(page.locator('h1')).to_have_text('Node Think of pipeline')


def test_nested_spans_fold_away_per_step_or_all_at_once(
    served: tuple[ServerThread, SampleRun, SampleRun], page: Page
) -> None:
    server, short, _ = served
    page.goto(f'{server.url}/runs/{short.trace_id}?run_id={short.run_id}')
    children = page.locator('svg.gantt g.row.child')
    expect(children).to_have_count(2)  # `call model` and its `http POST`, under step 2
    height = float(page.locator('svg.gantt').get_attribute('height') or 0)
    answer_y = page.locator('svg.gantt rect.bar.node[data-step="3"]').evaluate('b => b.getBoundingClientRect().y')

    page.locator('svg.gantt text.label.foldable').click()  # step 2's name
    expect(children.first).to_be_hidden()
    expect(page.locator('svg.gantt text.label.foldable')).to_have_text('2. Think (+2)')
    moved = page.locator('svg.gantt rect.bar.node[data-step="3"]').evaluate('b => b.getBoundingClientRect().y')
    assert moved == pytest.approx(answer_y - 2 * 22, abs=1)  # two rows up
    assert float(page.locator('svg.gantt').get_attribute('height') or 0) == height - 2 * 22

    page.locator('svg.gantt rect.bar.node[data-step="2"]').focus()
    page.keyboard.press('f')
    expect(children.first).to_be_visible()
    page.get_by_role('button', name='Fold nested spans').click()
    expect(children.last).to_be_hidden()
    expect(page.get_by_role('button', name='Unfold nested spans')).to_have_attribute('aria-pressed', 'true')


def test_on_a_phone_the_gantt_fits_the_screen(
    served: tuple[ServerThread, SampleRun, SampleRun], browser: Browser
) -> None:
    server, short, _ = served
    context = browser.new_context(viewport={'width': 390, 'height': 844})
    try:
        page = context.new_page()
        page.goto(f'{server.url}/runs/{short.trace_id}?run_id={short.run_id}')
        chart = page.locator('svg.gantt')
        expect(chart).to_have_attribute('width', re.compile(r'^3\d\d$'))
        holder = chart.locator('xpath=..')
        assert holder.evaluate('el => el.scrollWidth <= el.clientWidth + 1')  # no sideways scrolling
        assert len(_ticks(page)) >= 3
        xs = page.locator('svg.gantt rect.bar.node').evaluate_all('bs => bs.map(b => b.getBBox().x)')
        assert min(xs) >= 104 and xs == sorted(xs)
        names = page.locator('svg.gantt g.row:not(.child) text.label').all_text_contents()
        assert names[0] == '1. Fetch' and all(len(n) <= 15 for n in names)
        shot(page, 'dashboard-phone-run-gantt.png')
    finally:
        context.close()

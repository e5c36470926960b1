"""A run interrupted and resumed from its persistence is shown as one story: each part links to the others."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import httpx
import pytest
from browser_helpers import require_chromium, shot
from opentelemetry.sdk.trace import TracerProvider
from persisted_graph import Article, Draft, in_three_parts, traced_articles
from playwright.sync_api import Page, expect
from serve_helpers import exporting_provider, running_server

from tracegraph import FullStatePersistence, GraphRun

Run = GraphRun[Article, None, str]

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize('join_trace', [False, True], ids=['linked', 'one_trace'])
async def test_resumed_run_pages_link_both_ways(join_trace: bool) -> None:
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        graph = traced_articles(provider)
        persistence = FullStatePersistence()
        async with graph.iter(Draft(), state=Article('T'), persistence=persistence) as first:
            await first.next()  # leave after the first step
        async with graph.iter_from_persistence(persistence, join_trace=join_trace) as second:
            async for _ in second:
                pass
        provider.force_flush()
        assert first.trace_id is not None and second.trace_id is not None
        assert (second.trace_id == first.trace_id) is join_trace
        with httpx.Client(base_url=server.url, timeout=10) as client:
            later = client.get(f'/api/runs/{second.trace_id}', params={'run_id': second.run_id}).json()
            earlier = client.get(f'/api/runs/{first.trace_id}', params={'run_id': first.run_id}).json()
            page = client.get(f'/runs/{second.trace_id}', params={'run_id': second.run_id}).text
    assert [(r['trace_id'], r['run_id'], r['outcome']) for r in later['resumed_from']] == [
        (first.trace_id, first.run_id, 'interrupted')
    ]
    assert later['resumed_by'] == []
    assert [(r['trace_id'], r['run_id'], r['outcome']) for r in earlier['resumed_by']] == [
        (second.trace_id, second.run_id, 'completed')
    ]
    assert '<h2>Resumed run</h2>' in page
    assert f'href="/runs/{first.trace_id}?run_id={first.run_id}"' in page


async def test_an_interrupted_run_shows_the_node_it_waits_in_until_resumed() -> None:
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        graph = traced_articles(provider)
        persistence = FullStatePersistence()
        async with graph.iter(Draft(), state=Article('T'), persistence=persistence) as first:
            await first.next()  # Draft ran; Review is next, and nothing runs it
        provider.force_flush()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            waiting = client.get(f'/runs/{first.trace_id}', params={'run_id': first.run_id}).text
            assert 'Waiting in <b>Review</b> (step 2) since ' in waiting
            assert 'the run was interrupted there and has not been resumed' in waiting
            assert '<g class="gnode current" data-node="Review">' in waiting  # on the run's path through the graph
            async with graph.iter_from_persistence(persistence) as second:
                async for _ in second:
                    pass
            provider.force_flush()
            resumed = client.get(f'/runs/{first.trace_id}', params={'run_id': first.run_id}).text
            later = client.get(f'/runs/{second.trace_id}', params={'run_id': second.run_id}).text
    assert 'Waiting in' not in resumed and '<h2>Resumed run</h2>' in resumed
    # Each part's diagram draws the whole run's path (all its parts), and no node it waits in once it ended.
    for html in (resumed, later):
        assert 'The transitions this run (all its parts) took' in html
        assert 'gnode current' not in html
        taken = re.findall(r'<g class="edge taken" data-source="(\w+)" data-target="(\w+)" data-count="(\d+)"', html)
        assert sorted(taken) == [('Draft', 'Review', '1'), ('Publish', 'End', '1'), ('Review', 'Publish', '1')]
    # The resumed part numbers its steps on from the first part's one step: one story, one count.
    assert 'its steps are steps 2–3 of the whole run, after the 1 step of the earlier parts' in later
    assert re.findall(
        r'<tr class="step-row[^"]*" tabindex="0" data-span="[0-9a-f]+"><td class="num">(\d+)</td>', later
    ) == [
        '2',
        '3',
    ]
    assert 'data-step="2"' in later and '2. Review' in later
    # Both parts as one story: the first part's step, the wait, then this part's steps 2-3.
    parts = re.findall(r'<li class="(part[^"]*|wait)"[^>]*>(.*?)</li>', later)
    assert [(kind.split('"')[0], re.sub(r'<[^>]+>', '', text).split(' ')[0:2]) for kind, text in parts] == [
        ('part', ['step', '1']),
        ('wait', ['waited', parts[1][1].split(' ')[1]]),
        ('part current', ['steps', '2–3']),
    ]
    assert f'href="/runs/{first.trace_id}?run_id={first.run_id}"' in parts[0][1]


@asynccontextmanager
async def _resumed_once(provider: TracerProvider) -> AsyncGenerator[tuple[Run, Run]]:
    """The articles run left after Draft, then resumed (in a linked trace) for one step, Review: both parts, the
    second still open."""
    graph = traced_articles(provider)
    persistence = FullStatePersistence()
    async with graph.iter(Draft(), state=Article('T'), persistence=persistence) as first:
        await first.next()  # Draft
    async with graph.iter_from_persistence(persistence) as second:
        await second.next()  # Review; Publish is next
        yield first, second


async def test_an_earlier_part_shows_the_node_the_latest_part_waits_in() -> None:
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        async with _resumed_once(provider) as (first, second):
            pass  # and nothing runs Publish
        provider.force_flush()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            pages = [client.get(f'/runs/{r.trace_id}', params={'run_id': r.run_id}).text for r in (first, second)]
    for html in pages:
        assert '<g class="gnode current" data-node="Publish">' in html
        assert 'gnode current" data-node="Review"' not in html  # the first part's next node ran in the second
    assert 'Waiting in <b>Publish</b> (step 3) since ' in pages[1]


async def test_a_part_still_running_is_a_part_both_ways() -> None:
    """The run span ends last; the node spans of a resumed part name the trace it continues, so while it runs it
    is numbered on from the earlier part, and the earlier part knows it was resumed."""
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        async with _resumed_once(provider) as (first, second):  # the second part open: its run span not ended
            provider.force_flush()
            with httpx.Client(base_url=server.url, timeout=10) as client:
                running = client.get(f'/runs/{second.trace_id}', params={'run_id': second.run_id}).text
                earlier = client.get(f'/runs/{first.trace_id}', params={'run_id': first.run_id}).text
                detail = client.get(f'/api/runs/{first.trace_id}', params={'run_id': first.run_id}).json()
            async for _ in second:
                pass
    assert 'its step is step 2 of the whole run, after the 1 step of the earlier parts' in running
    assert re.findall(r'class="part-head"[^>]*>([^<]+)<', running) == ['step 1', 'step 2']
    assert re.findall(r'<g class="(part[^"]*)" data-run="([^"]+)"', running)[1] == ('part current', second.run_id)
    assert [(r['run_id'], r['outcome'], r['steps']) for r in detail['resumed_by']] == [(second.run_id, 'running', None)]
    assert 'Waiting in' not in earlier  # resumed, and running now
    assert f'href="/runs/{second.trace_id}?run_id={second.run_id}"' in earlier


async def test_a_chain_of_three_linked_parts_is_one_run_from_each_of_them() -> None:
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        parts = await in_three_parts(provider)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            details = [client.get(f'/api/runs/{t}', params={'run_id': r}).json() for t, r in parts]
            pages = [client.get(f'/runs/{t}', params={'run_id': r}).text for t, r in parts]
            third_csv = client.get(f'/api/runs/{parts[2][0]}/steps.csv', params={'run_id': parts[2][1]}).text
    # The export numbers the steps as the page does: through the whole run.
    assert [row['step'] for row in csv.DictReader(io.StringIO(third_csv))] == ['3']
    # Each part finds every other one, through the chain of traces: the third names only the second's trace.
    for i, detail in enumerate(details):
        assert [(p['trace_id'], p['run_id']) for p in detail['resumed_from']] == parts[:i]
        assert [(p['trace_id'], p['run_id']) for p in detail['resumed_by']] == parts[i + 1 :]
    assert 'its step is step 3 of the whole run, after the 2 steps of the earlier parts' in pages[2]
    assert all('<h2>Slowest steps</h2>' not in page for page in pages)  # each part has one step: no list of them
    assert re.findall(
        r'<tr class="step-row[^"]*" tabindex="0" data-span="[0-9a-f]+"><td class="num">(\d+)</td>', pages[2]
    ) == ['3']
    # One chart through every part, from any of them: a part per run, its step numbered through the whole run.
    for i, page in enumerate(pages):
        # the diagram left to right from the graph's entry, though each part numbers its step 1
        assert re.findall(r'<g class="gnode[^"]*" data-node="(\w+)"', page) == ['Draft', 'Review', 'Publish', 'End']
        chart = page.split('<svg class="whole-run"', 1)[1].split('</svg>', 1)[0]
        assert re.findall(r'<g class="(part[^"]*)" data-run="([^"]+)"', chart) == [
            ('part current' if j == i else 'part', run) for j, (_, run) in enumerate(parts)
        ]
        assert re.findall(r'class="part-head"[^>]*>([^<]+)<', chart) == ['step 1', 'step 2', 'step 3']
        assert len(re.findall(r'<g class="wait"[^>]*><title>waited ', chart)) == 2
        bars = re.findall(r'<a href="([^"]+)"><title>([^<]+)</title><rect class="bar"', chart)
        assert [label for _, label in bars] == [
            'step 1: Draft · completed',
            'step 2: Review · completed',
            'step 3: Publish · completed',
        ]
        for (href, _), (trace, run) in zip(bars, parts):
            assert href.startswith(f'/runs/{trace}?run_id={run}#span=')


@pytest.mark.browser
def test_the_whole_run_chart_opens_a_step_of_another_part(page: Page) -> None:
    require_chromium()
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
            parts = pool.submit(asyncio.run, in_three_parts(provider)).result()
        (t1, r1), _, (t3, r3) = parts
        page.goto(f'{server.url}/runs/{t3}?run_id={r3}')
        chart = page.locator('svg.whole-run')
        expect(chart.locator('g.part')).to_have_count(3)
        box = chart.bounding_box()
        assert box is not None and box['width'] > 900
        # The parts keep their order on the axis, the waits between them drawn as breaks.
        xs = [
            chart.get_by_role('link', name=label).locator('rect').bounding_box()
            for label in ('step 1: Draft', 'step 3: Publish')
        ]
        assert xs[0] is not None and xs[1] is not None and xs[0]['x'] < xs[1]['x']
        shot(page, 'dashboard-resumed-run.png')
        chart.get_by_role('link', name='step 1: Draft').click()
        expect(page).to_have_url(re.compile(rf'/runs/{t1}\?run_id={r1}#span=[0-9a-f]{{16}}$'))
        expect(page.locator('#detail')).to_be_visible()
        expect(page.locator('#detail')).to_contain_text('Draft')
        # The first part's own page draws the same run, itself current.
        expect(page.locator('svg.whole-run g.part.current')).to_have_attribute('data-run', r1)
        # On a phone the chart is drawn to the screen's width: every part in view, no sideways scrolling.
        page.set_viewport_size({'width': 390, 'height': 844})
        page.goto(f'{server.url}/runs/{t3}?run_id={r3}')
        bands = chart.locator('rect.part-band')
        expect(bands).to_have_count(3)
        rights = [
            b['x'] + b['width'] for b in (bands.nth(i).bounding_box() or {'x': 1e9, 'width': 0} for i in range(3))
        ]
        assert max(rights) <= 390 and rights == sorted(rights)
        assert page.evaluate('document.documentElement.scrollWidth') <= 390
        shot(page, 'dashboard-phone-resumed-run-chart.png')
        chart.get_by_role('link', name='step 2: Review').click()
        expect(page).to_have_url(re.compile(r'#span=[0-9a-f]{16}$'))
        expect(page.locator('#detail')).to_contain_text('Review')

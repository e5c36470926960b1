"""A run's state after step N, rebuilt by the dashboard from what the node spans recorded (`state='diff'` or
`'full'`), over the API and in the detail panel of a real Chromium."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from browser_helpers import require_chromium
from playwright.sync_api import Page, expect
from serve_helpers import exporting_provider, running_server

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings
from tracegraph.dashboard.server.server import ServerThread


@dataclass
class Tally:
    count: int = 0
    label: str = 'new'
    notes: list[str] = field(default_factory=list[str])


@dataclass
class Bump(BaseNode[Tally, None, int]):
    async def run(self, ctx: GraphRunContext[Tally, None]) -> Bump | Name:
        ctx.state.count += 1
        return Bump() if ctx.state.count < 3 else Name()


@dataclass
class Name(BaseNode[Tally, None, int]):
    async def run(self, ctx: GraphRunContext[Tally, None]) -> End[int]:
        ctx.state.label = 'done'
        return End(ctx.state.count)


@dataclass(frozen=True)
class Runs:
    server: ServerThread
    by_mode: dict[str, tuple[str, str]]
    """state mode -> (trace id, run id)"""


@pytest.fixture(scope='module')
def runs() -> Iterator[Runs]:
    with running_server() as server:
        by_mode: dict[str, tuple[str, str]] = {}
        with exporting_provider(server.url) as (provider, _):
            for mode in ('diff', 'full', 'none'):
                settings = InstrumentationSettings(tracer_provider=provider, state=mode, metrics=False)
                graph = Graph(nodes=[Bump, Name], name=f'tally-{mode}', instrumentation=settings)
                result = asyncio.run(graph.run(Bump(), state=Tally()))  # a loop closed here, not left to GC
                assert result.output == 3 and result.trace_id is not None
                by_mode[mode] = (result.trace_id, result.timeline.run_id)
        yield Runs(server=server, by_mode=by_mode)


def _state(runs: Runs, mode: str, step: int | str) -> httpx.Response:
    trace_id, run_id = runs.by_mode[mode]
    query = {'run_id': run_id, 'step': step}
    return httpx.get(f'{runs.server.url}/api/runs/{trace_id}/state', params=query, timeout=10)


def test_from_diffs_the_fields_some_step_changed(runs: Runs) -> None:
    after_2 = _state(runs, 'diff', 2).json()
    assert after_2 == {
        'step': 2,
        'recorded': 'diff',
        'fields': {'count': {'value': 2, 'changed_at': 2}, 'label': {'value': 'new', 'changed_at': None}},
        'complete': False,
    }  # `notes` no step changed: unknown from diffs
    after_4 = _state(runs, 'diff', 4).json()
    assert after_4['fields'] == {'count': {'value': 3, 'changed_at': 3}, 'label': {'value': 'done', 'changed_at': 4}}


def test_from_full_state_the_whole_state(runs: Runs) -> None:
    after_2 = _state(runs, 'full', 2).json()
    assert after_2 == {
        'step': 2,
        'recorded': 'full',
        'fields': {
            'count': {'value': 2, 'changed_at': 2},
            'label': {'value': 'new', 'changed_at': None},
            'notes': {'value': [], 'changed_at': None},
        },
        'complete': True,
    }


def test_without_recorded_state_nothing_is_known_and_bad_requests_say_why(runs: Runs) -> None:
    assert _state(runs, 'none', 1).json() == {'step': 1, 'recorded': 'none', 'fields': {}, 'complete': False}
    missing = _state(runs, 'diff', 9)
    assert missing.status_code == 404 and 'has no step 9' in missing.json()['detail']
    bad = _state(runs, 'diff', 'two')
    assert bad.status_code == 400
    assert bad.json()['detail'] == "step must be a step number (1 or more, ASCII digits), got 'two'."
    trace_id, _ = runs.by_mode['diff']
    no_run = httpx.get(f'{runs.server.url}/api/runs/{trace_id}/state', params={'step': 1}, timeout=10)
    assert no_run.status_code == 400 and no_run.json()['detail'].startswith('run_id is required')


@pytest.fixture
def chromium_page(request: pytest.FixtureRequest) -> Page:
    require_chromium()  # skips this test (not the API tests above) where Chromium is missing
    page: Page = request.getfixturevalue('page')
    return page


@pytest.mark.browser
def test_the_detail_panel_shows_the_state_after_the_step(runs: Runs, chromium_page: Page) -> None:
    page = chromium_page
    trace_id, run_id = runs.by_mode['diff']
    page.goto(f'{runs.server.url}/runs/{trace_id}?run_id={run_id}')
    page.locator('svg.gantt rect.bar.node[data-step="2"]').click()
    box = page.locator('#detail section.state-at')
    expect(box.locator('h3')).to_have_text('State after step 2')
    expect(box.locator('tbody tr')).to_have_text(
        [re.compile(r'^count\s*2\s*this step$'), re.compile(r'^label\s*"new"\s*from the start$')]
    )
    expect(box).to_contain_text('only the fields some step changed are known')
    # The state a step changed is shown once, in its own table, not again among the attributes.
    expect(page.locator('#detail table.attrs')).not_to_contain_text('tracegraph.state.diff')

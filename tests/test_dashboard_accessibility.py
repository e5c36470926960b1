"""Every dashboard page checked by axe-core (vendored in tests/vendor/axe-core) in Chromium, light and dark, and
laid out at phone width without sideways scrolling of the page.

axe runs in a context that bypasses the page's Content-Security-Policy, which would (rightly) refuse its script.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pytest
from browser_helpers import require_chromium, shot
from persisted_graph import in_three_parts
from serve_helpers import SampleRun, emit_run, exporting_provider, running_server

from tracegraph.dashboard.server.server import ServerThread

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Browser  # noqa: E402 - only once chromium is there

AXE = Path(__file__).resolve().parent / 'vendor' / 'axe-core' / 'axe.min.js'
SERIOUS = ('serious', 'critical')
Scheme = Literal['light', 'dark']
SCHEMES: tuple[Scheme, ...] = ('light', 'dark')


@pytest.fixture(scope='module')
def site() -> Iterator[tuple[ServerThread, list[SampleRun]]]:
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            runs = [emit_run(provider, graph='pipeline', fail=i == 1) for i in range(3)]
            with ThreadPoolExecutor(1) as pool:  # a thread of its own: a browser fixture may hold this one's loop
                pool.submit(asyncio.run, in_three_parts(provider)).result()
            tracer = provider.get_tracer('plain')
            with tracer.start_as_current_span('GET /health'), tracer.start_as_current_span('SELECT 1'):
                pass
        yield server, runs


def _pages(server: ServerThread, runs: list[SampleRun]) -> dict[str, str]:
    a, b = runs[0], runs[1]
    assert server.store is not None
    (plain,) = [r.trace_id for r in server.store.runs(kind='trace')]
    resumed = next(r for r in server.store.runs(graph='articles') if r.outcome == 'completed')
    return {
        'runs': '/',
        'search': '/?q=call+model',
        'run': f'/runs/{a.trace_id}',
        'failed run': f'/runs/{b.trace_id}',
        'resumed run': f'/runs/{resumed.trace_id}?run_id={resumed.run_id}',
        'graph': '/graphs/pipeline',
        'node': '/graphs/pipeline/nodes/Think',
        'trace': f'/traces/{plain}',
        'compare': f'/compare?a={a.trace_id}&b={b.trace_id}',
        'not found': '/graphs/nothing-here',
    }


def _serious(result: dict[str, Any]) -> list[str]:
    return [
        f'{v["id"]} ({v["impact"]}): {v["help"]} at {[n["target"] for n in v["nodes"]][:3]}'
        for v in result['violations']
        if v['impact'] in SERIOUS
    ]


@pytest.mark.parametrize('scheme', SCHEMES)
def test_no_serious_axe_finding_on_any_page(
    site: tuple[ServerThread, list[SampleRun]], browser: Browser, scheme: Scheme
) -> None:
    server, runs = site
    context = browser.new_context(viewport={'width': 1280, 'height': 900}, bypass_csp=True, color_scheme=scheme)
    page = context.new_page()
    findings: dict[str, list[str]] = {}
    try:
        for name, path in _pages(server, runs).items():
            page.goto(server.url + path)
            page.add_script_tag(path=str(AXE))
            result: dict[str, Any] = page.evaluate('async () => await axe.run(document)')
            if serious := _serious(result):
                findings[name] = serious
            if name in ('compare', 'resumed run'):
                shot(page, f'dashboard-{name.replace(" ", "-")}-{scheme}.png')
    finally:
        context.close()
    assert findings == {}


@pytest.mark.parametrize('scheme', SCHEMES)
def test_pages_fit_a_phone_without_sideways_scrolling(
    site: tuple[ServerThread, list[SampleRun]], browser: Browser, scheme: Scheme
) -> None:
    server, runs = site
    context = browser.new_context(viewport={'width': 390, 'height': 844}, color_scheme=scheme)
    page = context.new_page()
    overflowing: dict[str, int] = {}
    try:
        for name, path in _pages(server, runs).items():
            page.goto(server.url + path)
            width = page.evaluate('document.documentElement.scrollWidth')
            if width > 390:
                overflowing[name] = width
            if name in ('runs', 'run', 'graph', 'resumed run'):
                shot(page, f'dashboard-phone-{name.replace(" ", "-")}-{scheme}.png')
    finally:
        context.close()
    assert overflowing == {}


def test_dark_mode_follows_the_system(site: tuple[ServerThread, list[SampleRun]], browser: Browser) -> None:
    server, runs = site
    backgrounds: dict[str, str] = {}
    for scheme in SCHEMES:
        context = browser.new_context(viewport={'width': 1280, 'height': 900}, color_scheme=scheme)
        page = context.new_page()
        try:
            page.goto(f'{server.url}/runs/{runs[0].trace_id}')
            backgrounds[scheme] = page.evaluate('getComputedStyle(document.body).backgroundColor')
            shot(page, f'dashboard-run-{scheme}.png')
        finally:
            context.close()
    assert backgrounds['light'] != backgrounds['dark']
    channels = [int(c) for c in backgrounds['dark'].removeprefix('rgb(').rstrip(')').split(',')]
    assert max(channels) < 60  # a dark page, not a tinted light one

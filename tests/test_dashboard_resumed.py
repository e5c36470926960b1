"""A run interrupted and resumed from its persistence is shown as one story: each part links to the others."""

from __future__ import annotations

import re

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from persisted_graph import Article, Draft, articles
from serve_helpers import exporting_provider, running_server

from tracegraph import FullStatePersistence, Graph
from tracegraph.tracing.instrumentation_settings import InstrumentationSettings

pytestmark = pytest.mark.anyio


def _traced_articles(provider: TracerProvider) -> Graph[Article, None, str]:
    """The persisted articles graph, its spans going to `provider`."""
    return Graph(
        nodes=list(articles.get_nodes()),
        name='articles',
        instrumentation=InstrumentationSettings(tracer_provider=provider),
    )


@pytest.mark.parametrize('join_trace', [False, True], ids=['linked', 'one_trace'])
async def test_resumed_run_pages_link_both_ways(join_trace: bool) -> None:
    with running_server() as server, exporting_provider(server.url) as (provider, _):
        graph = _traced_articles(provider)
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
        graph = _traced_articles(provider)
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

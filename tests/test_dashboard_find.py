"""Finding runs through the JSON API: every filter, keyset pages, runs in progress, plain traces, span details."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from sample_runs import SampleRunResult
from serve_helpers import crafted_body, crafted_run, emit_run, exporting_provider, running_server

from tracegraph import BaseNode, End, Graph, GraphRunContext, InstrumentationSettings
from tracegraph.dashboard.server.server import ServerThread

T0 = 1_790_000_000 * 10**9
MINUTE = 60 * 10**9


@dataclass(kw_only=True)
class Seeded:
    server: ServerThread
    client: httpx.Client
    runs: list[SampleRunResult]
    plain_trace: str


@pytest.fixture(scope='module')
def seeded() -> Iterator[Seeded]:
    """Ten runs a minute apart: `alpha` (1 to 4 steps, the 4th failing) and `beta` (from service `other`), plus a
    plain trace of other instrumentation."""
    with running_server(stale_after=3600) as server:
        runs: list[SampleRunResult] = []
        with exporting_provider(server.url) as (provider, _):
            for i in range(6):
                steps = ('Fetch', 'Think', 'Answer', 'Check')[: 1 + i % 4]
                runs.append(emit_run(provider, graph='alpha', steps=steps, fail=i == 3, start_ns=T0 + i * MINUTE))
        with exporting_provider(server.url, service='other') as (provider, _):
            for i in range(6, 10):
                runs.append(emit_run(provider, graph='beta', steps=('X', 'Y'), start_ns=T0 + i * MINUTE))
            tracer = provider.get_tracer('plain')
            with (
                tracer.start_as_current_span('GET /items', start_time=T0 + 20 * MINUTE) as root,
                tracer.start_as_current_span('SELECT items', start_time=T0 + 20 * MINUTE + 1000),
            ):
                pass
            plain = f'{root.get_span_context().trace_id:032x}'
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield Seeded(server=server, client=client, runs=runs, plain_trace=plain)


def ids(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [r['run_id'] for r in reply.json()]


def expected(runs: list[SampleRunResult], keep: Callable[[SampleRunResult], bool]) -> list[str]:
    return [r.run_id for r in reversed(runs) if keep(r)]


def test_each_filter_alone_and_combined(seeded: Seeded) -> None:
    c, runs = seeded.client, seeded.runs

    def get(**params: str) -> list[str]:
        return ids(c.get('/api/runs', params={'kind': 'run', **params}))

    assert get() == expected(runs, lambda r: True)
    assert get(graph='alpha') == expected(runs, lambda r: r.graph == 'alpha')
    assert get(service='other') == expected(runs, lambda r: r.graph == 'beta')
    assert get(outcome='failed') == [runs[3].run_id]
    assert get(since=_iso(T0 + 8 * MINUTE)) == [runs[9].run_id, runs[8].run_id]
    assert get(until=_iso(T0 + 2 * MINUTE)) == [runs[1].run_id, runs[0].run_id]
    # 1 step lasts 12 ms, 2 steps 33 ms, 3 steps 64 ms, 4 steps 105 ms (see sample_runs)
    assert get(min_duration='100ms') == [runs[3].run_id]
    assert get(max_duration='0.02') == expected(runs, lambda r: len(r.nodes) == 1)
    assert get(node='Answer') == expected(runs, lambda r: 'Answer' in dict(r.nodes))
    assert get(attr='tracegraph.run.start_node=X') == expected(runs, lambda r: r.graph == 'beta')
    assert get(attr='tracegraph.node.input={"n":3}') == expected(runs, lambda r: len(r.nodes) >= 3)
    assert get(q='alp') == expected(runs, lambda r: r.graph == 'alpha')
    assert get(q=runs[4].run_id) == [runs[4].run_id]
    assert get(q=runs[5].trace_id.upper()) == [runs[5].run_id]
    both = c.get(
        '/api/runs',
        params=[('graph', 'alpha'), ('node', 'Think'), ('attr', 'tracegraph.step=2'), ('max_duration', '70ms')],
    )
    assert ids(both) == expected(runs, lambda r: r.graph == 'alpha' and len(r.nodes) in (2, 3))
    longest = c.get('/api/runs', params={'kind': 'run', 'sort': 'duration', 'limit': 3}).json()
    assert longest[0]['run_id'] == runs[3].run_id
    assert [r['duration'] for r in longest] == sorted((r['duration'] for r in longest), reverse=True)


def test_plain_traces_are_listed_and_shown_as_span_trees(seeded: Seeded) -> None:
    c = seeded.client
    (trace,) = c.get('/api/runs', params={'kind': 'trace'}).json()
    assert (trace['trace_id'], trace['name'], trace['service'], trace['outcome']) == (
        seeded.plain_trace,
        'GET /items',
        'other',
        'completed',
    )
    assert ids(c.get('/api/runs', params={'q': 'get /it'})) == [trace['run_id']]
    tree = c.get(f'/api/traces/{seeded.plain_trace}').json()
    assert [(s['name'], s['depth']) for s in tree] == [('GET /items', 0), ('SELECT items', 1)]
    page = c.get(f'/runs/{seeded.plain_trace}', follow_redirects=False)
    assert (page.status_code, page.headers['location']) == (303, f'/traces/{seeded.plain_trace}')
    html = c.get(f'/traces/{seeded.plain_trace}').text
    assert 'SELECT items' in html and 'no graph run in this trace' in html


def test_keyset_pages_never_repeat_or_skip_a_row(seeded: Seeded) -> None:
    c = seeded.client
    everything = ids(c.get('/api/runs', params={'limit': 1000}))
    assert len(everything) == 11
    for sort in ('start', 'duration'):
        seen: list[str] = []
        url: str | None = f'/api/runs?limit=4&sort={sort}'
        pages = 0
        while url is not None:
            reply = c.get(url)
            seen += ids(reply)
            pages += 1
            url = _link(reply, 'next')
        assert pages == 3
        assert sorted(seen) == sorted(everything) and len(set(seen)) == len(seen)
        # and back: the last page's "prev" link leads to the rows just before it
        last = c.get(f'/api/runs?limit=4&sort={sort}&older=' + _cursor_after(c, sort, 8))
        back = _link(last, 'prev')
        assert back is not None
        assert ids(c.get(back)) == seen[4:8]
    # limit=1 walks every row, one at a time (it showed the same run forever once)
    one_by_one: list[str] = []
    url = '/api/runs?limit=1'
    while url is not None and len(one_by_one) < 20:
        reply = c.get(url)
        one_by_one += ids(reply)
        url = _link(reply, 'next')
    assert one_by_one == everything


def test_bad_parameters_are_clear_400s(seeded: Seeded) -> None:
    c = seeded.client
    cases = {
        'min_duration=fast': "min_duration must be a duration: 'fast' is not a duration such as 250ms, 2s, 1.5m or 1h.",
        'sort=name': "sort must be one of start, duration, got 'name'.",
        'kind=span': "kind must be one of run, trace, got 'span'.",
        'outcome=ok': "outcome must be one of completed, failed, interrupted, running, stale, got 'ok'.",
        'attr=novalue': 'attr must be key=value with a key of letters, digits and _.:/@- (e.g. attr=user.id=42), '
        "got 'novalue'.",
        'attr=a%20b=1': 'attr must be key=value with a key of letters, digits and _.:/@- (e.g. attr=user.id=42), '
        "got 'a b=1'.",
        'older=12': "older must be a page cursor: '12' is not a page cursor (use the older/newer links of a page).",
        f'older=1.{"0" * 32}.r&newer=1.{"0" * 32}.r': 'pass older or newer, not both.',
        'until=soon': "until must be a duration back from now (30m, 6h, 7d, 2w) or an ISO 8601 timestamp: 'soon' is "
        'neither a duration like 30m, 6h, 7d nor an ISO 8601 timestamp.',
    }
    for query, message in cases.items():
        reply = c.get(f'/api/runs?{query}')
        assert (reply.status_code, reply.json()) == (400, {'detail': message}), query
        page = c.get(f'/?{query}')
        assert page.status_code == 400 and 'text/html' in page.headers['content-type'], query
    run = seeded.runs[0]
    bad = c.get(f'/runs/{run.trace_id}', params={'steps': '5-2'})
    assert bad.status_code == 400 and 'steps must be a range of step numbers' in bad.text
    assert c.get(f'/api/traces/{run.trace_id}/spans/xyz').json() == {
        'detail': "span_id must be 16 hexadecimal digits, got 'xyz'."
    }
    assert c.get(f'/api/traces/{run.trace_id}/spans/{"0" * 16}').status_code == 404


def test_the_search_box_goes_straight_to_what_it_names(seeded: Seeded) -> None:
    c, run = seeded.client, seeded.runs[2]
    for q, target in (
        (run.trace_id, f'/runs/{run.trace_id}?run_id={run.run_id}'),
        (run.run_id, f'/runs/{run.trace_id}?run_id={run.run_id}'),
        ('beta', '/graphs/beta'),
        (seeded.plain_trace, f'/traces/{seeded.plain_trace}'),
    ):
        reply = c.get('/', params={'q': q}, follow_redirects=False)
        assert (reply.status_code, reply.headers.get('location')) == (303, target), q
    listed = c.get('/', params={'q': 'alp'})
    assert listed.status_code == 200 and listed.text.count('<tr class="run"') == 6


def test_span_detail_has_every_attribute_its_parent_and_children(seeded: Seeded) -> None:
    c, run = seeded.client, seeded.runs[2]  # Fetch, Think (with nested spans), Answer
    think = f'{run.node_span_ids[1]:016x}'
    detail = c.get(f'/api/traces/{run.trace_id}/spans/{think}').json()
    assert detail['span']['name'] == 'run node Think'
    assert detail['span']['attributes']['tracegraph.node.input'] == '{"n":2}'
    assert detail['parent'] == {'span_id': run.run_span_id, 'name': 'run graph alpha'}
    assert [ch['name'] for ch in detail['children']] == ['call model']
    child = c.get(f'/api/traces/{run.trace_id}/spans/{detail["children"][0]["span_id"]}').json()
    assert child['parent']['span_id'] == think and [g['name'] for g in child['children']] == ['http POST']


def test_each_exception_is_shown_once(seeded: Seeded) -> None:
    failed = seeded.runs[3]
    html = seeded.client.get(f'/runs/{failed.trace_id}').text
    assert html.count('class="exception"') == 1  # the node's; the run span's copy of the same error is not repeated
    assert 'Step 4 <code>Check</code> raised <code>ValueError</code>: the answer is not 42' in html


# --- runs in progress ----------------------------------------------------------------------------------------


@dataclass
class Slow(BaseNode[None, None, int]):
    n: int

    async def run(self, ctx: GraphRunContext) -> Slow | End[int]:
        return Slow(self.n + 1) if self.n < 3 else End(self.n)


@pytest.mark.anyio
async def test_a_run_is_listed_while_it_runs_and_then_completes() -> None:
    with running_server(stale_after=3600) as server, exporting_provider(server.url) as (provider, _):
        graph = Graph(nodes=[Slow], name='live', instrumentation=InstrumentationSettings(tracer_provider=provider))
        with httpx.Client(base_url=server.url) as c:
            async with graph.iter(Slow(1)) as run:
                await run.next()
                await run.next()  # two node spans sent; the run span ends last
                (listed,) = c.get('/api/runs').json()
                assert (listed['run_id'], listed['outcome'], listed['steps']) == (run.run_id, 'running', 2)
                assert ids(c.get('/api/runs', params={'outcome': 'running'})) == [run.run_id]
                page = c.get(f'/runs/{run.trace_id}').text
                assert 'data-live' in page and page.count('<tr class="step-row') == 2
                async for _ in run:
                    pass
            (listed,) = c.get('/api/runs').json()
            assert (listed['outcome'], listed['steps']) == ('completed', 3)
            assert 'data-live' not in c.get(f'/runs/{run.trace_id}').text


@pytest.mark.anyio
async def test_a_run_that_never_finishes_turns_stale() -> None:
    with running_server(stale_after=1) as server, exporting_provider(server.url) as (provider, _):
        graph = Graph(nodes=[Slow], name='abandoned', instrumentation=InstrumentationSettings(tracer_provider=provider))
        with httpx.Client(base_url=server.url) as c:
            async with graph.iter(Slow(1)) as run:
                await run.next()
                assert c.get('/api/runs').json()[0]['outcome'] == 'running'
                time.sleep(1.2)
                assert c.get('/api/runs').json()[0]['outcome'] == 'stale'
                assert ids(c.get('/api/runs', params={'outcome': 'stale'})) == [run.run_id]
                async for _ in run:
                    pass


# --- helpers -----------------------------------------------------------------------------------------------------


def _iso(ns: int) -> str:
    from tracegraph.tracing.clock import ns_to_datetime

    return ns_to_datetime(ns).isoformat()


def _link(reply: httpx.Response, rel: str) -> str | None:
    match = re.search(rf'<([^>]+)>; rel="{rel}"', reply.headers.get('link', ''))
    return match[1] if match else None


def _cursor_after(c: httpx.Client, sort: str, n: int) -> str:
    """The `older` cursor of the page ending with row `n` (1-based)."""
    reply = c.get(f'/api/runs?limit={n}&sort={sort}')
    link = _link(reply, 'next')
    assert link is not None
    return link.split('older=')[1]


# --- analyse -----------------------------------------------------------------------------------------------------


def test_the_edge_filter_lists_the_runs_that_took_a_transition(seeded: Seeded) -> None:
    c, runs = seeded.client, seeded.runs
    took = expected(runs, lambda r: [n for n, _ in r.nodes][-1:] == ['Think'] and r.outcome == 'completed')
    assert ids(c.get('/api/runs', params={'edge': 'Think->End'})) == took
    assert ids(c.get('/api/runs', params={'edge': 'Think->Answer'})) == expected(runs, lambda r: len(r.nodes) >= 3)
    bad = c.get('/api/runs', params={'edge': 'Think'})
    assert (bad.status_code, bad.json()) == (
        400,
        {'detail': "edge must be SOURCE->TARGET, two node ids (e.g. edge=Fetch->End), got 'Think'."},
    )


def test_time_series_count_every_run_in_its_bucket(seeded: Seeded) -> None:
    c, runs = seeded.client, seeded.runs
    alpha = c.get('/api/graphs/alpha/timeseries').json()
    # six runs a minute apart over five minutes: 5 s buckets (at most 60), one run in each of six
    assert [(b['width'], b['count'], b['completed'], b['failed']) for b in alpha] == [
        (5.0, 1, 1, 0),
        (5.0, 1, 1, 0),
        (5.0, 1, 1, 0),
        (5.0, 1, 0, 1),
        (5.0, 1, 1, 0),
        (5.0, 1, 1, 0),
    ]
    assert [b['p50'] for b in alpha] == pytest.approx([0.012, 0.033, 0.064, 0.105, 0.012, 0.033])
    think = c.get('/api/graphs/alpha/timeseries', params={'node': 'Think'}).json()
    assert sum(b['count'] for b in think) == sum(1 for r in runs if 'Think' in dict(r.nodes))
    assert [b['p99'] for b in think] == pytest.approx([0.02] * len(think))  # the second step lasts 20 ms
    wide = c.get('/api/graphs/beta/timeseries', params={'since': _iso(T0 - 3600 * 10**9)}).json()
    assert sum(b['count'] for b in wide) == 4 and {b['width'] for b in wide} == {300.0}


def test_graph_and_node_pages_draw_the_series_and_the_diagram(seeded: Seeded) -> None:
    c = seeded.client
    html = c.get('/graphs/alpha').text
    assert html.count('<figure class="chart">') == 3
    assert html.count('<rect class="bar failed"') == 1 and 'fill="url(#hatch-failed)"' in html
    assert 'href="/?graph=alpha&amp;edge=Think-%3EAnswer"' in html  # every edge links to its runs
    assert 'class="gnode failing"' in html  # Check failed once: outlined
    node = c.get('/graphs/alpha/nodes/Think')
    assert node.status_code == 200 and node.text.count('<figure class="chart">') == 3
    assert c.get('/graphs/alpha/nodes/Nowhere').status_code == 404


def test_compare_two_runs_and_a_run_against_the_typical_run(seeded: Seeded) -> None:
    c, runs = seeded.client, seeded.runs
    two, four = runs[1], runs[3]  # Fetch, Think — and Fetch, Think, Answer, Check (failed)
    html = c.get('/compare', params={'a': two.trace_id, 'b': four.trace_id}).text
    assert 'The paths diverge at step 3: 2 steps on both paths, 0 only in A, 2 only in B.' in html
    assert html.count('class="step-pair"') == 2 and html.count('class="step-pair diverged"') == 2
    assert html.count('input differs') == 0  # same steps, same inputs ({"n": 1}, {"n": 2})
    assert 'B took 72.0ms longer.' in html  # 105 ms against 33 ms
    same = c.get('/compare', params={'a': two.trace_id, 'b': runs[5].trace_id}).text
    assert 'The two runs took the same path.' in same
    bad = c.get('/compare', params={'a': 'x', 'b': two.trace_id})
    assert bad.status_code == 400 and 'a must be the 32-hex-digit trace id of a run, got &#x27;x&#x27;.' in bad.text
    page = c.get(f'/runs/{runs[5].trace_id}').text
    assert 'Compare with the previous run' in page and f'b={runs[5].trace_id}' in page
    assert '<th class="num">Node p50 / p95</th>' in page and '10.0ms / 10.0ms' in page


def test_unknown_pages_say_what_is_there(seeded: Seeded) -> None:
    c = seeded.client
    graph = c.get('/graphs/nope')
    assert graph.status_code == 404
    assert 'No runs of a graph named &#x27;nope&#x27; are stored. Graphs stored: beta, alpha.' in graph.text
    run = c.get(f'/runs/{"0" * 32}')
    assert (
        run.status_code == 404
        and 'its search box finds runs by id (or its first characters), graph, span name, error text' in run.text
    )


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_badge_and_node_colours_meet_wcag_aa_contrast() -> None:
    from tracegraph.dashboard.web.svg import DURATION_BANDS, OUTCOME_COLOURS

    def contrast(a: str, b: str) -> float:
        high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
        return (high + 0.05) / (low + 0.05)

    for outcome, colour in OUTCOME_COLOURS.items():
        assert contrast(colour, '#ffffff') >= 4.5, outcome  # white badge text
    for bound, fill, ink in DURATION_BANDS:
        assert contrast(fill, ink) >= 4.5, bound  # node names on the diagram
    assert contrast('#566172', '#f6f8fa') >= 4.5  # muted text on the page background (dashboard.css)


def test_the_critical_path_marks_what_a_step_waited_for() -> None:
    t0 = time.time_ns()
    ms = 1_000_000
    run, node = crafted_run(start=t0, end=t0 + 15 * ms)
    node.start_time_unix_nano, node.end_time_unix_nano = t0, t0 + 15 * ms

    def child(name: str, parent: PbSpan, start: float, end: float) -> PbSpan:
        return PbSpan(
            trace_id=run.trace_id, span_id=os.urandom(8), parent_span_id=parent.span_id, name=name,
            start_time_unix_nano=t0 + int(start * ms), end_time_unix_nano=t0 + int(end * ms),
        )  # fmt: skip

    a = child('a', node, 1, 9)
    inner = child('a-inner', a, 3, 8)
    beside = child('beside-a', node, 2, 5)  # ran alongside the longer `a` and ended first: not waited for
    after = child('after-a', node, 9.5, 12)
    with running_server() as server, httpx.Client(base_url=server.url) as c:
        c.post(
            '/v1/traces',
            content=crafted_body(run, node, a, inner, beside, after),
            headers={'Content-Type': 'application/x-protobuf'},
        ).raise_for_status()
        html = c.get(f'/runs/{run.trace_id.hex()}').text
    critical = set(re.findall(r'<rect class="bar span critical"[^>]*data-span="([0-9a-f]{16})"', html))
    assert critical == {s.span_id.hex() for s in (a, inner, after)}
    assert f'data-span="{beside.span_id.hex()}"' in html


def test_the_search_reaches_nested_spans_errors_and_id_prefixes(seeded: Seeded) -> None:
    c, runs = seeded.client, seeded.runs
    failed = runs[3]

    def found(q: str) -> list[str]:
        return sorted(ids(c.get('/api/runs', params={'q': q, 'kind': 'run'})))

    two_steps_or_more = sorted(r.run_id for r in runs if len(r.nodes) >= 2)
    assert found('CALL MODEL') == two_steps_or_more  # a span the user's code opened inside step 2, any case
    assert found('http post') == two_steps_or_more  # nested deeper
    assert found('the answer is not') == [failed.run_id]  # the exception's message
    assert found('ValueError') == [failed.run_id]  # its type
    assert found(failed.trace_id[:8]) == [failed.run_id]  # a trace id's start, as copied from a log line
    assert found(failed.run_id[:8]) == [failed.run_id]
    assert found(failed.trace_id[:5]) == []  # too short to be taken for an id
    page = c.get('/', params={'q': 'the answer is not'})
    assert '1 run matches' in page.text


def test_a_graph_runs_trace_page_and_its_run_page_link_each_other(seeded: Seeded) -> None:
    c, run = seeded.client, seeded.runs[2]
    trace_page = c.get(f'/traces/{run.trace_id}').text
    assert 'no graph run in this trace' not in trace_page
    assert f'1 graph run: <a href="/runs/{run.trace_id}?run_id={run.run_id}">alpha run' in trace_page
    assert f'<a href="/traces/{run.trace_id}">' in c.get(f'/runs/{run.trace_id}').text


def test_steps_are_marked_slow_only_against_enough_steps_of_their_node() -> None:
    with running_server() as server:
        with exporting_provider(server.url) as (provider, _):
            few = [emit_run(provider, graph='few', steps=('A',) * n, start_ns=T0 + n * MINUTE) for n in (1, 2, 3)]
            many = [emit_run(provider, graph='many', steps=('A',), start_ns=T0 + i * MINUTE) for i in range(20)]
            slow = emit_run(provider, graph='many', steps=('A', 'A', 'A'), start_ns=T0 + 30 * MINUTE)
        with httpx.Client(base_url=server.url, timeout=30) as c:
            # six steps of A (10, 10, 20, 10, 20, 30 ms): the 30 ms one is above their p95, but six are too few to say
            assert 'mark slow' not in c.get(f'/runs/{few[-1].trace_id}').text
            assert 'mark slow' not in c.get(f'/runs/{many[0].trace_id}').text  # 10 ms, like nearly all A steps
            # its third step lasts 30 ms, above the p95 of 23 steps of A that mostly last 10 ms
            assert c.get(f'/runs/{slow.trace_id}').text.count('<span class="mark slow">') >= 1

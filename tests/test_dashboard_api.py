"""The JSON API and the store behind it: filters, paging, statistics, edges, nesting and retention."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context
from serve_helpers import (
    crafted_body,
    crafted_run,
    emit_run,
    exporting_provider,
    protobuf_body,
    running_server,
    trace_of,
)

from tracegraph.dashboard.ingest.otlp import parse_traces
from tracegraph.dashboard.store.database import Store, default_db_path
from tracegraph.dashboard.store.models import parse_since
from tracegraph.dashboard.web.runpage import TRACE_WINDOW

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
T0 = int(NOW.timestamp()) * 1_000_000_000


def store_with_runs(store: Store) -> None:
    """Five runs of `alpha` a minute apart (the 2nd and 4th failed) and one of `beta` (steps X -> Y -> X)."""
    with exporting_provider() as (provider, memory):
        for i in range(5):
            emit_run(provider, graph='alpha', fail=i in (1, 3), start_ns=T0 + i * 60 * 10**9)
        emit_run(provider, graph='beta', steps=('X', 'Y', 'X'), start_ns=T0 + 10 * 60 * 10**9)
    store.insert_spans(parse_traces(protobuf_body(memory.get_finished_spans()), 'application/x-protobuf'))


@pytest.fixture
def store() -> Iterator[Store]:
    with Store(':memory:') as s:
        store_with_runs(s)
        yield s


def test_runs_newest_first_with_filters(store: Store) -> None:
    runs = store.runs()
    assert [(r.graph, r.start) for r in runs] == [
        ('beta', NOW + timedelta(minutes=10)),
        *[('alpha', NOW + timedelta(minutes=i)) for i in (4, 3, 2, 1, 0)],
    ]
    assert [r.outcome for r in store.runs(graph='alpha')] == ['completed', 'failed', 'completed', 'failed', 'completed']
    assert [r.start for r in store.runs(graph='alpha', outcome='failed')] == [
        NOW + timedelta(minutes=3),
        NOW + timedelta(minutes=1),
    ]
    page = store.runs(graph='alpha', limit=2)
    older = store.runs(graph='alpha', limit=2, until=page[-1].start)
    assert [r.start.minute for r in page + older] == [4, 3, 2, 1]
    assert [r.start.minute for r in store.runs(since=NOW + timedelta(minutes=3))] == [10, 4, 3]
    longest = [r.duration for r in store.runs(sort='duration')]
    assert longest == sorted(longest, reverse=True) and len(longest) == 6
    assert runs[0].steps == 3
    assert runs[0].duration == pytest.approx(0.064)


def test_graphs(store: Store) -> None:
    """Each graph with its ended runs and when it last started a step (its latest run's last node)."""

    def last_step(graph: str) -> datetime:
        details = [store.run(r.trace_id) for r in store.runs(graph=graph)]
        return max(n.start for d in details if d is not None for n in d.timeline.nodes)

    assert [(g.name, g.runs, g.last_seen) for g in store.graphs()] == [
        ('beta', 1, last_step('beta')),
        ('alpha', 5, last_step('alpha')),
    ]
    assert last_step('alpha') > NOW + timedelta(minutes=4)


def test_node_stats(store: Store) -> None:
    stats = {s.node_id: s for s in store.node_stats('alpha')}
    assert list(stats) == ['Fetch', 'Think', 'Answer']
    assert [stats[n].count for n in stats] == [5, 5, 5]
    assert stats['Answer'].error_rate == pytest.approx(0.4)
    assert stats['Fetch'].error_rate == 0.0
    assert (stats['Think'].p50, stats['Think'].p95, stats['Think'].p99) == pytest.approx((0.02, 0.02, 0.02))
    assert stats['Answer'].total == pytest.approx(0.15)
    beta = store.node_stats('beta')
    assert [(s.node_id, s.count) for s in beta] == [('X', 2), ('Y', 1)]
    # X took 10 ms at step 1 and 30 ms at step 3: the percentiles interpolate between them
    assert (beta[0].p50, beta[0].p95, beta[0].p99) == pytest.approx((0.02, 0.029, 0.0298))
    assert [s.count for s in store.node_stats('alpha', since=NOW + timedelta(minutes=3))] == [2, 2, 2]
    assert store.node_stats('nope') == []


def test_edges(store: Store) -> None:
    """The transitions taken, most frequent first, then those the graph declares (the sample nodes may go to any
    node or end) that no step took, with a count of 0."""
    alpha = [(e.source, e.target, e.count) for e in store.edges('alpha')]
    assert alpha[:3] == [('Fetch', 'Think', 5), ('Think', 'Answer', 5), ('Answer', 'End', 3)]
    nodes = ('Fetch', 'Think', 'Answer')
    declared = {(a, b) for a in nodes for b in (*nodes, 'End')}
    assert {(a, b) for a, b, count in alpha[3:] if count == 0} == declared - {(a, b) for a, b, _ in alpha[:3]}
    assert len(alpha) == len(declared)
    beta = [(e.source, e.target, e.count) for e in store.edges('beta')]
    assert [t for t in beta if t[2]] == [('X', 'End', 1), ('X', 'Y', 1), ('Y', 'X', 1)]


def test_retention(store: Store) -> None:
    total = store.span_count()
    assert total == 6 * 6
    # spans end within a second of their run's start; cut between the alpha run at +2 min and the one at +3 min
    deleted = store.apply_retention(1, now=NOW + timedelta(days=1, minutes=2, seconds=30))
    assert deleted == 3 * 6
    assert [r.start.minute for r in store.runs()] == [10, 4, 3]
    assert store.apply_retention(1, now=NOW + timedelta(days=1, minutes=2, seconds=30)) == 0


def test_retention_at_server_start(tmp_path: Path) -> None:
    db = tmp_path / 'traces.duckdb'
    with Store(db) as s:
        store_with_runs(s)
        with exporting_provider() as (provider, memory):
            emit_run(provider, graph='fresh')
        s.insert_spans(parse_traces(protobuf_body(memory.get_finished_spans()), 'application/x-protobuf'))
    with running_server(db=db, retention_days=7) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        deadline = time.monotonic() + 10
        while len(c.get('/api/runs').json()) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [r['graph'] for r in c.get('/api/runs').json()] == ['fresh']


def test_data_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / 'traces.duckdb'
    with running_server(db=db) as server, exporting_provider(server.url) as (provider, _):
        run = emit_run(provider)
    with running_server(db=db) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        assert [r['run_id'] for r in c.get('/api/runs').json()] == [run.run_id]


def test_sub_run_nests_under_its_parent_node() -> None:
    """A node that runs another graph: the inner run nests under that node; `run_id` picks either run."""
    with exporting_provider() as (provider, memory):
        tracer = provider.get_tracer('test')
        with tracer.start_as_current_span('request'):
            outer = emit_run(provider, graph='outer', start_ns=T0)
        node_ctx = SpanContext(
            int(outer.trace_id, 16), outer.node_span_ids[1], is_remote=False, trace_flags=TraceFlags(1)
        )
        inner = emit_run(
            provider,
            graph='inner',
            steps=('Sub',),
            start_ns=T0 + 22_000_000,
            parent=set_span_in_context(NonRecordingSpan(node_ctx)),
        )
    with Store(':memory:') as store:
        store.insert_spans(parse_traces(protobuf_body(memory.get_finished_spans()), 'application/x-protobuf'))
        detail = store.run(outer.trace_id)
        assert detail is not None
        assert detail.timeline.run_id == outer.run_id
        assert [s.name for s in detail.other_spans] == ['request']
        think = detail.nodes[1]
        assert [(c.name, c.depth) for c in think.children] == [
            ('call model', 1),
            ('http POST', 2),
            ('run graph inner', 1),
            ('run node Sub', 2),
        ]
        inner_detail = store.run(outer.trace_id, run_id=inner.run_id)
        assert inner_detail is not None
        assert [n.node_id for n in inner_detail.timeline.nodes] == ['Sub']
        assert store.run(outer.trace_id, run_id='missing') is None
        assert [r.graph for r in store.runs()] == ['inner', 'outer']


def test_api_matches_store(tmp_path: Path) -> None:
    db = tmp_path / 'traces.duckdb'
    with Store(db) as s:
        store_with_runs(s)
        expected_runs = [r.model_dump(mode='json') for r in s.runs(graph='alpha', outcome='failed')]
        expected_nodes = [n.model_dump(mode='json') for n in s.node_stats('beta')]
        expected_edges = [e.model_dump(mode='json') for e in s.edges('alpha')]
        expected_graphs = [g.model_dump(mode='json') for g in s.graphs()]
    with running_server(db=db) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.get('/api/runs', params={'graph': 'alpha', 'outcome': 'failed'}).json() == expected_runs
        assert c.get('/api/graphs/beta/nodes').json() == expected_nodes
        assert c.get('/api/graphs/alpha/edges').json() == expected_edges
        assert c.get('/api/graphs').json() == expected_graphs
        assert [(g['name'], g['runs']) for g in expected_graphs] == [('beta', 1), ('alpha', 5)]
        first = c.get('/api/runs', params={'limit': 2}).json()
        second = c.get('/api/runs', params={'limit': 2, 'before': first[-1]['start']}).json()
        assert [r['start'] for r in first + second] == [
            '2026-03-01T12:10:00Z',
            '2026-03-01T12:04:00Z',
            '2026-03-01T12:03:00Z',
            '2026-03-01T12:02:00Z',
        ]
        assert c.get('/api/graphs/alpha/nodes', params={'since': '2026-03-01T12:03:00Z'}).json()[0]['count'] == 2


def test_parse_since() -> None:
    assert parse_since('90m', now=NOW) == NOW - timedelta(minutes=90)
    assert parse_since('7d', now=NOW) == NOW - timedelta(days=7)
    assert parse_since('2026-01-02T03:04:05') == datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match=r"^'3 fortnights' is neither a duration like 30m, 6h, 7d nor an ISO 8601"):
        parse_since('3 fortnights')


def test_default_db_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv('XDG_DATA_HOME', str(tmp_path))
    assert default_db_path() == tmp_path / 'tracegraph' / 'traces.duckdb'
    monkeypatch.delenv('XDG_DATA_HOME')
    assert default_db_path() == Path.home() / '.local' / 'share' / 'tracegraph' / 'traces.duckdb'


def test_any_sql_comes_back_as_arrow_or_pandas(store: Store) -> None:
    table = store.query_arrow(
        'SELECT graph, count(*) AS runs FROM spans WHERE is_run AND graph = ? GROUP BY graph', ['alpha']
    )
    assert table.to_pylist() == [{'graph': 'alpha', 'runs': 5}]
    frame = store.query_pandas("SELECT node_id, end_ns - start_ns AS ns FROM spans WHERE node_id = 'X'")
    assert list(frame.columns) == ['node_id', 'ns'] and len(frame) == 2


def test_a_big_traces_page_draws_one_window_of_its_spans() -> None:
    spans = crafted_run(nodes=2 * TRACE_WINDOW + 500)
    with running_server() as server:
        httpx.post(
            f'{server.url}/v1/traces',
            content=crafted_body(*spans),
            headers={'Content-Type': 'application/x-protobuf'},
            timeout=60,
        ).raise_for_status()
        url = f'{server.url}/traces/{trace_of(spans)}'
        first = httpx.get(url, timeout=30).text
        last = httpx.get(url, params={'from': 2 * TRACE_WINDOW + 1}, timeout=30).text
        bad = httpx.get(url, params={'from': 'x'}, timeout=30)
    assert first.count('class="span-row"') == TRACE_WINDOW
    assert 'spans 1–1000 of 2,501' in first and 'later spans →' in first and '← earlier spans' not in first
    assert last.count('class="span-row"') == 501 and 'spans 2001–2501 of 2,501' in last and 'later spans' not in last
    assert 'graph run' in first  # the runs of the trace are linked from every window
    assert (
        bad.status_code == 400
        and 'from must be a span number (1 or more, ASCII digits), got &#x27;x&#x27;.' in bad.text
    )

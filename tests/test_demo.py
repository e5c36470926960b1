"""`tracegraph demo --once`: example graphs sent through the real exporters to the embedded dashboard and stored."""

from __future__ import annotations

import io
import re
from pathlib import Path

from rich.console import Console

from tracegraph.dashboard.store.database import Store, default_db_path
from tracegraph.demo.main import demo, demo_db_path
from tracegraph.demo.runner import DEMO_RUNS


def test_demo_once_stores_every_run(tmp_path: Path) -> None:
    out = io.StringIO()
    db = tmp_path / 'demo.duckdb'
    assert demo(endpoint=None, once=True, db=db, port=0, console=Console(file=out, width=160)) == 0
    printed = out.getvalue()
    assert f'{DEMO_RUNS} runs (2 failed on purpose)' in printed
    delivered = re.search(r'^(\d+) spans delivered$', printed, re.M)
    assert delivered is not None and int(delivered[1]) > DEMO_RUNS
    # The embedded dashboard stops with `--once`: the output names the store and how to open it, not a dead URL.
    assert 'http://' not in printed
    assert f'the runs are stored in {db}' in ' '.join(printed.split())
    assert f'next: tracegraph serve --db {db}' in ' '.join(printed.split())
    assert 'UpstreamError: https://api.example.com/items answered 503 3 times in a row' in printed

    store = Store(db)
    try:
        graphs = {g.name: g.runs for g in store.graphs()}
        assert graphs == {'thermostat': 9, 'flaky_fetch': 14, 'weather_agent': 2, 'expense_approval': 2}
        runs = store.runs(limit=100)
        assert len(runs) == DEMO_RUNS
        assert sorted(r.outcome for r in runs).count('failed') == 2
        agent = next(r for r in runs if r.graph == 'weather_agent')
        detail = store.run(agent.trace_id)
        assert detail is not None
        assert [n.node_id for n in detail.timeline.nodes] == [
            'UserPromptNode',
            'ModelRequestNode',
            'CallToolsNode',
            'ModelRequestNode',
            'CallToolsNode',
        ]
        # the demo records each step's state change: the run page's state column is never empty there
        assert all('tracegraph.state.diff' in node.span.attributes for node in detail.nodes)
        nested = {s.name for node in detail.nodes for s in node.children}
        assert {'chat scripted-model', 'running tool get_weather'} <= nested

        # The approval flow was interrupted for a person and resumed from its file: two runs that link both ways.
        first, second = sorted((r for r in runs if r.graph == 'expense_approval'), key=lambda r: r.start)
        assert (first.outcome, second.outcome) == ('interrupted', 'completed')
        resumed = store.run(second.trace_id)
        original = store.run(first.trace_id)
        assert resumed is not None and original is not None
        assert [(r.trace_id, r.run_id) for r in resumed.resumed_from] == [(first.trace_id, first.run_id)]
        assert [(r.trace_id, r.run_id) for r in original.resumed_by] == [(second.trace_id, second.run_id)]
        assert [n.node_id for n in resumed.timeline.nodes] == ['AwaitApproval', 'PayOut']
    finally:
        store.close()


def test_the_demo_store_is_apart_from_the_serve_store() -> None:
    # The autouse fixture points XDG_DATA_HOME at the test's own directory.
    assert demo_db_path().parent == default_db_path().parent
    assert demo_db_path() != default_db_path()

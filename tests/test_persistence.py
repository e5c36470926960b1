"""The persistence API (pydantic_graph 0.0.40–1.x): snapshots, statuses, resumes across processes and their traces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from inline_snapshot import snapshot
from opentelemetry.trace import StatusCode
from persisted_graph import Article, Draft, Publish, Review, articles
from tracing_helpers import Pipeline, finished

from tracegraph import BaseNode, End, FullStatePersistence, Graph, GraphRun, GraphRunContext, SimpleStatePersistence
from tracegraph import nodes as tracegraph_nodes
from tracegraph.exceptions import GraphNodeStatusError, GraphRuntimeError
from tracegraph.exporters import read_spans
from tracegraph.persistence import EndSnapshot, NodeSnapshot, build_snapshot_list_type_adapter
from tracegraph.persistence.file import FileStatePersistence
from tracegraph.tracing import attributes as attr

pytestmark = pytest.mark.anyio
SCRIPT = Path(__file__).parent / 'persisted_graph.py'


@dataclass
class Flaky(BaseNode[Article, None, str]):
    async def run(self, ctx: GraphRunContext[Article]) -> End[str]:
        raise ValueError('the press is down')


def traced_articles(otel: Pipeline) -> Graph[Article, None, str]:
    return Graph(nodes=[Draft, Review, Publish, Flaky], name='articles', instrumentation=otel.settings())


async def test_full_persistence_records_every_snapshot_with_its_status(otel: Pipeline) -> None:
    graph = traced_articles(otel)
    persistence = FullStatePersistence()
    result = await graph.run(Draft(), state=Article('T'), persistence=persistence)
    assert result.persistence is persistence
    history = persistence.history
    assert [type(s.node).__name__ for s in history] == ['Draft', 'Review', 'Publish', 'End']
    assert [s.status for s in history if isinstance(s, NodeSnapshot)] == ['success'] * 3
    assert all(s.duration is not None and s.start_ts is not None for s in history if isinstance(s, NodeSnapshot))
    # A node snapshot holds the state before its node ran; the end snapshot the final state.
    assert [s.state.edits for s in history] == [
        [],
        ['drafted'],
        ['drafted', 'reviewed by ada'],
        ['drafted', 'reviewed by ada', 'published'],
    ]
    # Each snapshot records the run span's traceparent, and each node span the snapshot it ran.
    assert {s.traceparent for s in history} == {result.traceparent}
    node_spans = [s for s in otel.spans if s.name.startswith('run node')]
    assert [s.attributes[attr.SNAPSHOT_ID] for s in node_spans] == [s.id for s in history[:3]]
    # The JSON round trip keeps everything, and dumps no traceparent key for an untraced snapshot.
    dumped = persistence.dump_json(indent=2)
    copy = FullStatePersistence()
    copy.set_graph_types(graph)
    copy.load_json(dumped)
    assert copy.history == history
    assert [s.traceparent for s in copy.history] == [s.traceparent for s in history]
    # As upstream's, a snapshot compares and prints by its own fields: tests that compare snapshots hold whether or
    # not a tracer provider is set.
    first = history[0]
    assert isinstance(first, NodeSnapshot)
    bare = NodeSnapshot(
        state=first.state,
        node=first.node,
        start_ts=first.start_ts,
        duration=first.duration,
        status='success',
        id=first.id,
    )
    assert first == bare and repr(first) == repr(bare) and 'traceparent' not in repr(first)


async def test_a_failing_snapshot_is_error_and_its_span_error_exactly_once(otel: Pipeline) -> None:
    graph = traced_articles(otel)
    persistence = FullStatePersistence()
    with pytest.raises(ValueError, match='the press is down'):
        await graph.run(Flaky(), state=Article('T'), persistence=persistence)
    (failed,) = persistence.history
    assert isinstance(failed, NodeSnapshot) and failed.status == 'error' and failed.duration is not None
    node = otel.span('run node Flaky')
    run = otel.span('run graph articles')
    assert node.status.status_code == StatusCode.ERROR and run.status.status_code == StatusCode.ERROR
    assert [e.name for e in node.events] == ['exception']
    assert [e.name for e in run.events] == ['exception']


async def test_wrong_statuses_and_unknown_snapshots_are_clear_errors() -> None:
    persistence = FullStatePersistence()
    await articles.run(Draft(), state=Article('T'), persistence=persistence)
    done = persistence.history[0]
    with pytest.raises(GraphNodeStatusError) as exc_info:
        async with persistence.record_run(done.id):
            pass
    assert str(exc_info.value) == snapshot("Incorrect snapshot status 'success', must be 'created' or 'pending'.")
    assert exc_info.value.actual_status == 'success'
    with pytest.raises(LookupError, match=r"^No snapshot found with id='nope'$"):
        async with persistence.record_run('nope'):
            pass
    with pytest.raises(GraphRuntimeError, match='Only node snapshots can be run'):
        async with persistence.record_run(persistence.history[-1].id):
            pass
    with pytest.raises(GraphRuntimeError, match='^Unable to restore snapshot from state persistence.$'):
        async with articles.iter_from_persistence(persistence):
            pass


async def test_history_and_persistence_together_is_an_error() -> None:
    with pytest.raises(TypeError) as exc_info:
        async with articles.iter(Draft(), state=Article('T'), history=[], persistence=FullStatePersistence()):
            pass
    assert str(exc_info.value) == snapshot(
        'Pass `history=` (the classic API) or `persistence=` (the 0.0.40+ API) to a run, not both; a `FullStatePersistence` keeps every step of a persisted run.'
    )


async def test_the_same_graph_runs_the_classic_way_and_the_persisted_way() -> None:
    classic = await articles.run(Draft(), state=Article('T'))
    assert [s.kind for s in classic.history] == ['node', 'node', 'node', 'end']
    assert isinstance(classic.persistence, SimpleStatePersistence)
    assert isinstance(classic.persistence.last_snapshot, EndSnapshot)
    persisted = await articles.run(Draft(), state=Article('T'), persistence=SimpleStatePersistence())
    assert persisted.output == classic.output


async def test_yield_start_node_per_run() -> None:
    async with articles.iter(Draft(), state=Article('T'), yield_start_node=True) as run:
        seen = [type(node).__name__ async for node in run]
    assert seen == ['Draft', 'Review', 'Publish', 'End']
    async with articles.iter(Draft(), state=Article('T')) as run:
        seen = [type(node).__name__ async for node in run]
    assert seen == ['Review', 'Publish', 'End']


async def test_snapshot_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    node = Review(reviewer='ada')
    first = node.get_snapshot_id()
    assert first.startswith('Review:') and len(first) == len('Review:') + 32 and node.get_snapshot_id() == first
    node.set_snapshot_id('Review:fixed')
    assert node.get_snapshot_id() == 'Review:fixed'
    assert node == Review(reviewer='ada')  # the id is no field: equality and repr are the dataclass's
    end = End('x')
    assert end.get_snapshot_id().startswith('end:')
    assert end.deep_copy_data().get_snapshot_id() == end.get_snapshot_id()
    assert node.deep_copy().get_snapshot_id() == 'Review:fixed'

    ids = iter(range(100))

    def numbered(node_id: str) -> str:
        return f'{node_id}:{next(ids)}'

    monkeypatch.setattr(tracegraph_nodes, 'generate_snapshot_id', numbered)
    persistence = FullStatePersistence()
    await articles.run(Draft(), state=Article('T'), persistence=persistence)
    assert [s.id for s in persistence.history] == ['Draft:0', 'Review:1', 'Publish:2', 'end:3']


def test_get_node_id_and_get_id_are_one() -> None:
    @dataclass
    class Renamed(BaseNode[None, None, int]):
        @classmethod
        def get_node_id(cls) -> str:  # the 1.x way
            return 'renamed'

        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End(1)

    assert Renamed.get_id() == Renamed.get_node_id() == 'renamed'
    assert Draft.get_node_id() == Draft.get_id() == 'Draft'
    assert Graph(nodes=[Renamed]).get_nodes() == [Renamed]
    assert articles.inferred_types == (Article, str)


async def test_build_snapshot_list_type_adapter_needs_the_nodes() -> None:
    """pydantic_graph 1.x's text, which callers match and which names the way out."""
    with pytest.raises(RuntimeError) as raised:
        build_snapshot_list_type_adapter(Article, str)
    assert str(raised.value) == snapshot(
        'Unable to build a Pydantic schema for `BaseNode` without setting `nodes_type_context`. '
        'You should build Pydantic schemas for snapshots using `StatePersistence.set_types()`.'
    )


def _script(*args: str | Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('OTEL_')}
    proc = subprocess.run(
        [sys.executable, '-W', 'error', str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize('join', [False, True], ids=['link', 'join_trace'])
def test_interrupted_run_resumed_in_another_process_joins_its_trace(tmp_path: Path, join: bool) -> None:
    state_file, first_spans, second_spans = tmp_path / 'run.json', tmp_path / 'a.jsonl', tmp_path / 'b.jsonl'
    first = _script('start', state_file, first_spans)
    assert first['next'] == 'Publish()'
    second = _script('resume', state_file, second_spans, *(['join'] if join else []))
    assert second['output'] == 'Graphs: drafted, reviewed by ada, published'

    snapshots = json.loads(state_file.read_text())
    assert [(s['kind'], s.get('status')) for s in snapshots] == [
        ('node', 'success'),
        ('node', 'success'),
        ('node', 'success'),
        ('end', None),
    ]
    a = {s.name: s for s in finished(read_spans(first_spans))}
    b = {s.name: s for s in finished(read_spans(second_spans))}
    assert sorted(a) == ['run graph articles', 'run node Draft', 'run node Review']
    assert sorted(b) == ['run graph articles', 'run node Publish']
    a_run, b_run = a['run graph articles'], b['run graph articles']
    assert a_run.attributes[attr.RUN_OUTCOME] == 'interrupted'
    assert b_run.attributes[attr.RUN_OUTCOME] == 'completed'
    assert b['run node Publish'].attributes[attr.SNAPSHOT_ID] == snapshots[2]['id']
    a_trace = f'{a_run.context.trace_id:032x}'
    assert snapshots[2]['traceparent'] == first['traceparent'] == f'00-{a_trace}-{a_run.context.span_id:016x}-03'
    if join:
        # One trace: the resumed run span is a child of the first run's span.
        assert second['trace_id'] == first['trace_id'] == a_trace
        assert b_run.parent is not None
        assert b_run.parent.span_id == a_run.context.span_id
        assert attr.RUN_RESUMED_FROM not in b['run node Publish'].attributes  # nothing to name: the same trace
    else:
        assert second['trace_id'] != a_trace
        assert b_run.attributes[attr.RUN_RESUMED_FROM] == a_trace
        assert b['run node Publish'].attributes[attr.RUN_RESUMED_FROM] == a_trace  # known while the run runs
        assert [(link.context.trace_id, link.context.span_id) for link in b_run.links] == [
            (a_run.context.trace_id, a_run.context.span_id)
        ]
    assert snapshots[3]['traceparent'] == second['traceparent']


def test_concurrent_writers_to_one_file(tmp_path: Path) -> None:
    state_file = tmp_path / 'shared.json'
    env = {k: v for k, v in os.environ.items() if not k.startswith('OTEL_')}
    procs = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), 'hammer', str(state_file), '25', f'w{i}'],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for i in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    persistence = FileStatePersistence(state_file)
    persistence.set_graph_types(articles)
    import asyncio

    snapshots = asyncio.run(persistence.load_all())
    titles = sorted(s.state.title for s in snapshots)
    assert len(snapshots) == 100
    assert titles == sorted(f'w{w}-{i}' for w in range(4) for i in range(25))
    assert not list(tmp_path.glob('*.tmp'))


class ListPersistence(FullStatePersistence):
    """A user's own persistence: stores snapshots it builds itself, with no tracing code of its own."""

    async def snapshot_node(self, state: Any, next_node: BaseNode[Any, Any, Any]) -> None:
        self.history.append(NodeSnapshot(state=state, node=next_node))

    async def snapshot_end(self, state: Any, end: End[Any]) -> None:
        self.history.append(EndSnapshot(state=state, result=end))


async def test_a_custom_persistence_records_traceparents_without_extra_work(otel: Pipeline) -> None:
    graph = traced_articles(otel)
    persistence = ListPersistence(deep_copy=False)
    result = await graph.run(Draft(), state=Article('T'), persistence=persistence)
    assert result.traceparent is not None
    assert [s.traceparent for s in persistence.history] == [result.traceparent] * 4
    # Outside a run nothing is recorded: a snapshot made by hand has no traceparent.
    assert NodeSnapshot(state=Article('x'), node=Draft()).traceparent is None


async def test_a_persisted_run_records_each_step_once_in_its_persistence() -> None:
    copies: list[Article] = []

    def counting_copy(state: Article) -> Article:
        copies.append(state)
        return Article(state.title, list(state.edits))

    graph = Graph(nodes=[Draft, Review, Publish], name='articles', snapshot_state=counting_copy)
    persistence = FullStatePersistence()
    async with graph.iter(Draft(), state=Article('T'), persistence=persistence) as run:
        async for _ in run:
            pass
    assert run.result is not None
    # The snapshots are the steps' record: no classic history is kept beside them, and no copy of the state made for it.
    assert run.history == [] and run.result.history == [] and copies == []
    assert [type(s).__name__ for s in persistence.history] == ['NodeSnapshot'] * 3 + ['EndSnapshot']
    assert [(r.step, r.node_id, r.next_node) for r in run.timeline.nodes] == [
        (1, 'Draft', 'Review'),
        (2, 'Review', 'Publish'),
        (3, 'Publish', attr.END_NODE_ID),
    ]
    classic = await graph.run(Draft(), state=Article('T'))
    assert [s.kind for s in classic.history] == ['node', 'node', 'node', 'end'] and len(copies) == 3


async def test_a_run_made_with_a_traceparent_records_it_in_its_snapshots() -> None:
    traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
    persistence = ListPersistence(deep_copy=False)
    persistence.set_graph_types(articles)
    run = GraphRun(articles, Draft(), state=Article('T'), persistence=persistence, traceparent=traceparent)
    while not isinstance(await run.next(), End):
        pass
    assert run.traceparent == traceparent and run._traceparent() == traceparent  # pyright: ignore[reportPrivateUsage]
    assert [s.traceparent for s in persistence.history] == [traceparent] * 4

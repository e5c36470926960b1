"""`tracegraph.v1`: pydantic_graph 1.x's module tree over the same classes, and the private hooks its clients call."""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from inline_snapshot import snapshot
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, use_span
from tracing_helpers import Pipeline

import tracegraph
import tracegraph.v1
from tracegraph import BaseNode, End, GraphRunContext
from tracegraph.exceptions import GraphRuntimeError, GraphSetupError
from tracegraph.persistence import NodeSnapshot
from tracegraph.persistence.file import FileStatePersistence
from tracegraph.persistence.in_mem import FullStatePersistence, SimpleStatePersistence

pytestmark = pytest.mark.anyio

V1_MODULES = (
    ('tracegraph.v1', 'tracegraph'),
    ('tracegraph.v1.nodes', 'tracegraph.nodes'),
    ('tracegraph.v1.basenode', 'tracegraph.nodes'),
    ('tracegraph.v1.exceptions', 'tracegraph.exceptions'),
    ('tracegraph.v1.mermaid', 'tracegraph.mermaid'),
    ('tracegraph.v1._utils', 'tracegraph._utils'),
    ('tracegraph.v1.persistence', 'tracegraph.persistence'),
    ('tracegraph.v1.persistence.in_mem', 'tracegraph.persistence.in_mem'),
    ('tracegraph.v1.persistence.file', 'tracegraph.persistence.file'),
    ('tracegraph.v1.persistence._utils', 'tracegraph.persistence._utils'),
)


@dataclass
class Hop(BaseNode[None, None, int]):
    n: int = 0

    async def run(self, ctx: GraphRunContext) -> Hop | End[int]:
        return Hop(self.n + 1) if self.n < 2 else End(self.n)


@pytest.mark.parametrize(('v1_name', 'classic_name'), V1_MODULES)
def test_every_v1_name_is_the_classic_object(v1_name: str, classic_name: str) -> None:
    """Only `Graph` differs (a subclass with the 0.0.54+ default); everything else is the very same object."""
    v1, classic = importlib.import_module(v1_name), importlib.import_module(classic_name)
    assert v1.__all__
    for name in v1.__all__:
        if name == 'Graph':
            assert issubclass(getattr(v1, name), tracegraph.Graph)
        else:
            assert getattr(v1, name) is getattr(classic, name), name


def test_v1_modules_reach_private_helpers() -> None:
    """Private names (which `__all__` leaves out) resolve too: clients and tests call some."""
    from tracegraph.v1 import _utils, graph
    from tracegraph.v1.persistence import file

    assert _utils.infer_obj_name is tracegraph._utils.infer_obj_name
    assert file.FileStatePersistence._lock is FileStatePersistence._lock  # pyright: ignore[reportPrivateUsage]
    assert graph.GraphRunResult is tracegraph.GraphRunResult


async def test_the_era_default_is_the_only_difference() -> None:
    classic_graph = tracegraph.Graph(nodes=[Hop])
    v1_graph = tracegraph.v1.Graph(nodes=[Hop])
    async with classic_graph.iter(Hop()) as run:
        assert [node async for node in run] == [Hop(1), Hop(2), End(2)]
    async with v1_graph.iter(Hop()) as run:
        assert [node async for node in run] == [Hop(0), Hop(1), Hop(2), End(2)]
    async with tracegraph.v1.Graph(nodes=[Hop], yield_start_node=False).iter(Hop()) as run:
        assert [node async for node in run] == [Hop(1), Hop(2), End(2)]


async def test_a_persistence_made_through_one_path_resumes_through_the_other() -> None:
    persistence = FullStatePersistence()
    await tracegraph.Graph(nodes=[Hop]).initialize(Hop(), persistence)
    async with tracegraph.v1.Graph(nodes=[Hop]).iter_from_persistence(persistence) as run:
        assert [node async for node in run] == [Hop(0), Hop(1), Hop(2), End(2)]
    assert [type(s).__name__ for s in await persistence.load_all()] == ['NodeSnapshot'] * 3 + ['EndSnapshot']


@pytest.mark.parametrize(
    'module', ['tracegraph.nodes', 'tracegraph.basenode', 'tracegraph.v1.nodes', 'tracegraph.v1.basenode']
)
async def test_snapshot_ids_follow_every_patch_point(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """0.0.40-0.0.53 tests patch `nodes.generate_snapshot_id`, 1.x tests `basenode` (pydantic_ai 1.x still `nodes`)."""
    counter = iter(range(1, 100))

    def numbered(node_id: str) -> str:
        return f'{node_id}:{next(counter)}'

    monkeypatch.setattr(f'{module}.generate_snapshot_id', numbered)
    persistence = FullStatePersistence()
    await tracegraph.v1.Graph(nodes=[Hop]).run(Hop(), persistence=persistence)
    assert [s.id for s in persistence.history] == ['Hop:1', 'Hop:2', 'Hop:3', 'end:4']


def _remote_span() -> NonRecordingSpan:
    return NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)))


TRACEPARENT = '00-00000000000000000000000000000abc-0000000000000def-01'


@pytest.mark.parametrize('auto_instrument', [True, False])
async def test_a_given_span_is_the_runs_without_a_provider(auto_instrument: bool) -> None:
    """pydantic_ai 1.x builds its graph with `auto_instrument=False`, passes `span=use_span(run_span)` and reads
    `_traceparent(required=False)` at the end of every agent run: the given span's traceparent, SDK or not."""
    graph = tracegraph.v1.Graph(nodes=[Hop], auto_instrument=auto_instrument)
    async with graph.iter(Hop(), span=use_span(_remote_span())) as run:
        assert trace.get_current_span().get_span_context().span_id == 0xDEF  # entered
        async for _ in run:
            pass
    assert run._traceparent(required=False) == TRACEPARENT  # pyright: ignore[reportPrivateUsage]
    assert run.traceparent == TRACEPARENT
    assert run.result is not None
    assert run.result._traceparent() == TRACEPARENT  # pyright: ignore[reportPrivateUsage]


async def test_a_given_span_is_the_runs_with_an_sdk_and_auto_instrument_off(otel: Pipeline) -> None:
    tracer = otel.tracer_provider.get_tracer('client')
    graph = tracegraph.v1.Graph(nodes=[Hop], auto_instrument=False)
    with tracer.start_as_current_span('agent run') as run_span:
        async with graph.iter(Hop(), span=use_span(run_span)) as run:
            async for _ in run:
                pass
    context = run_span.get_span_context()
    assert run._traceparent() == f'00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}'  # pyright: ignore[reportPrivateUsage]
    assert [s.name for s in otel.exporter.get_finished_spans()] == ['agent run']  # nothing of ours: not instrumented


async def test_traceparent_required_without_a_span() -> None:
    async with tracegraph.v1.Graph(nodes=[Hop], auto_instrument=False).iter(Hop()) as run:
        async for _ in run:
            pass
    assert run._traceparent(required=False) is None  # pyright: ignore[reportPrivateUsage]
    with pytest.raises(GraphRuntimeError, match='^No span was created for this graph run$'):
        run._traceparent()  # pyright: ignore[reportPrivateUsage]
    assert run.result is not None
    with pytest.raises(GraphRuntimeError, match=r'^No span was created for this graph run\.$'):
        run.result._traceparent()  # pyright: ignore[reportPrivateUsage]


async def test_graph_next_with_a_persistence_is_deprecated_as_upstream() -> None:
    graph = tracegraph.Graph(nodes=[Hop])
    persistence = FullStatePersistence()
    with pytest.warns(DeprecationWarning, match='^`next` is deprecated') as warned:
        assert await graph.next(Hop(), persistence) == Hop(1)
    assert str(warned[0].message) == snapshot(
        '`next` is deprecated, use `async with graph.iter(...) as run:  run.next()` instead'
    )
    assert [s.status for s in persistence.history if isinstance(s, NodeSnapshot)] == ['success', 'created']
    assert len(persistence.history) == 2
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        history: list[Any] = []
        assert await graph.next(Hop(), history) == Hop(1)  # the classic form does not warn
    assert len(history) == 1


async def test_next_after_the_end_per_era() -> None:
    graph = tracegraph.Graph(nodes=[Hop])
    async with graph.iter(Hop(2), persistence=SimpleStatePersistence()) as run:
        assert await run.next() == End(2)
        with pytest.raises(TypeError, match=r'^`next` must be called with a `BaseNode` instance, got End\(data=2\)\.$'):
            await run.next()
    async with graph.iter(Hop(2), history=[]) as run:
        await run.next()
        with pytest.raises(GraphRuntimeError, match=r'^This graph run has already ended\.$'):
            await run.next()


def test_inferred_types_of_nodes_without_generic_arguments() -> None:
    @dataclass
    class Bare(BaseNode):
        async def run(self, ctx: GraphRunContext) -> Bare:
            return Bare()

    graph = tracegraph.v1.Graph(nodes=[Bare])
    assert graph.inferred_types == (None, None)  # 0.0.40+
    with pytest.raises(
        GraphSetupError, match=r'^Could not infer run end type from nodes, please set `run_end_type`\.$'
    ):
        graph._get_run_end_type()  # pyright: ignore[reportPrivateUsage]  # the classic check stays
    persistence = FullStatePersistence()
    persistence.set_graph_types(graph)
    persistence.load_json(b'[{"state": null, "node": {"node_id": "Bare"}, "kind": "node", "id": "Bare:1"}]')
    assert persistence.history == [NodeSnapshot(state=None, node=Bare(), id='Bare:1')]


async def test_file_lock_hook_times_out(tmp_path: Path) -> None:
    persistence = FileStatePersistence(tmp_path / 'run.json')
    async with persistence._lock():  # pyright: ignore[reportPrivateUsage]
        with pytest.raises(TimeoutError, match='run.json.lock within 0.1 s'):
            async with persistence._lock(timeout=0.1):  # pyright: ignore[reportPrivateUsage]
                pass
    async with persistence._lock(timeout=0.1):  # pyright: ignore[reportPrivateUsage]  # released on exit
        pass

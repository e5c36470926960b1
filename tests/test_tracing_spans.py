"""Run and node spans through a real OpenTelemetry SDK pipeline: names, parents, attributes, outcomes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Generator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import pytest
from dirty_equals import IsStr
from inline_snapshot import snapshot
from opentelemetry.trace import SpanKind, StatusCode
from tracing_helpers import Finished, Pipeline, parent_id, sdk_attributes

from tracegraph import BaseNode, End, Graph, GraphRunContext, HistoryStep, NodeStep

pytestmark = pytest.mark.anyio


@dataclass
class Counter:
    count: int = 0


@dataclass
class Tick(BaseNode[Counter, None, int]):
    limit: int

    async def run(self, ctx: GraphRunContext[Counter]) -> Tick | End[int]:
        ctx.state.count += 1
        await asyncio.sleep(0)
        return Tick(self.limit) if ctx.state.count < self.limit else End(ctx.state.count)


@dataclass
class Fail(BaseNode[Counter, None, int]):
    async def run(self, ctx: GraphRunContext[Counter]) -> End[int]:
        raise ValueError('no luck')


def make_graph(otel: Pipeline, name: str = 'ticker', **settings: object) -> Graph[Counter, None, int]:
    return Graph(nodes=[Tick, Fail], name=name, instrumentation=otel.settings(**settings))


async def test_run_and_node_spans(otel: Pipeline) -> None:
    graph = make_graph(otel)
    result = await graph.run(Tick(3), state=Counter())
    assert result.output == 3
    assert [s.name for s in otel.spans] == ['run node Tick'] * 3 + ['run graph ticker']
    run_span = otel.span('run graph ticker')
    nodes = [s for s in otel.spans if s.name == 'run node Tick']
    assert run_span.kind == SpanKind.INTERNAL and all(n.kind == SpanKind.INTERNAL for n in nodes)
    assert run_span.parent is None
    assert all(n.parent is not None and n.parent.span_id == run_span.context.span_id for n in nodes)
    assert dict(run_span.attributes or {}) == snapshot(
        {
            'tracegraph.graph.name': 'ticker',
            'tracegraph.run.id': IsStr(regex=r'[0-9a-f]{32}'),
            'tracegraph.run.start_node': 'Tick',
            'tracegraph.graph.edges': '{"Tick":["Tick","End"],"Fail":["End"]}',
            'tracegraph.run.steps': 3,
            'tracegraph.run.outcome': 'completed',
            'tracegraph.run.output': '3',
        }
    )
    assert dict(nodes[2].attributes or {}) == snapshot(
        {
            'tracegraph.graph.name': 'ticker',
            'tracegraph.run.id': run_span.attributes['tracegraph.run.id'],
            'tracegraph.node.id': 'Tick',
            'tracegraph.step': 3,
            'tracegraph.node.input': '{"limit":3}',
            'tracegraph.node.next': 'End',
            'tracegraph.node.outcome': 'completed',
        }
    )
    # the logfire.* attributes are for Logfire's SDK only (tests/test_exporters_logfire.py): none on a plain SDK
    assert [n.attributes['tracegraph.node.next'] for n in nodes] == ['Tick', 'Tick', 'End']
    assert run_span.status.status_code == StatusCode.UNSET
    assert result.trace_id == f'{run_span.context.trace_id:032x}'
    assert [s.span_id for s in result.history if isinstance(s, NodeStep)] == [
        f'{n.context.span_id:016x}' for n in nodes
    ]


async def test_node_failure_recorded_on_node_and_run_span(otel: Pipeline) -> None:
    graph = make_graph(otel)
    with pytest.raises(ValueError, match='^no luck$'):
        await graph.run(Fail(), state=Counter())
    node, run = otel.span('run node Fail'), otel.span('run graph ticker')
    for span in (node, run):
        assert span.status.status_code == StatusCode.ERROR
        assert span.status.description == 'ValueError: no luck'
        assert [e.name for e in span.events] == ['exception']
        assert sdk_attributes(span.events[0])['exception.type'] == 'ValueError'
    assert node.attributes['tracegraph.node.outcome'] == 'failed'
    assert 'tracegraph.node.next' not in (node.attributes or {})
    assert run.attributes['tracegraph.run.outcome'] == 'failed'
    assert 'tracegraph.run.output' not in (run.attributes or {})


async def test_leaving_iter_early_is_interrupted_not_failed(otel: Pipeline) -> None:
    graph = make_graph(otel)
    async with graph.iter(Tick(10), state=Counter()) as run:
        async for node in run:
            if isinstance(node, Tick) and run.state.count == 2:
                break
    span = otel.span('run graph ticker')
    assert span.attributes['tracegraph.run.outcome'] == 'interrupted'
    assert span.attributes['tracegraph.run.steps'] == 2
    assert span.status.status_code == StatusCode.UNSET
    assert run.timeline.outcome == 'interrupted'


async def test_cancellation_is_interrupted(otel: Pipeline) -> None:
    started = asyncio.Event()

    @dataclass
    class Slow(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext) -> End[None]:
            started.set()
            await asyncio.sleep(30)
            return End(None)

    graph = Graph(nodes=[Slow], name='slow', instrumentation=otel.settings())
    task = asyncio.create_task(graph.run(Slow()))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    node, run = otel.span('run node Slow'), otel.span('run graph slow')
    assert node.attributes['tracegraph.node.outcome'] == 'interrupted'
    assert run.attributes['tracegraph.run.outcome'] == 'interrupted'
    assert node.status.status_code == StatusCode.UNSET and run.status.status_code == StatusCode.UNSET
    assert node.events == () and run.events == ()


async def test_spans_opened_in_a_node_nest_under_its_span(otel: Pipeline) -> None:
    tracer = otel.tracer_provider.get_tracer('user')

    @dataclass
    class Fetch(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> End[str]:
            with tracer.start_as_current_span('GET /weather'):
                await asyncio.sleep(0)
            return End('sunny')

    graph = Graph(nodes=[Fetch], name='weather', instrumentation=otel.settings())
    async with graph.iter(Fetch()) as run:
        with tracer.start_as_current_span('between steps'):
            pass
        await run.next()
    user, node, run_span = otel.span('GET /weather'), otel.span('run node Fetch'), otel.span('run graph weather')
    assert user.parent is not None and user.parent.span_id == node.context.span_id
    between = otel.span('between steps')
    assert between.parent is not None and between.parent.span_id == run_span.context.span_id


async def test_next_from_another_task_keeps_parents(otel: Pipeline) -> None:
    graph = make_graph(otel)
    async with graph.iter(Tick(3), state=Counter()) as run:
        while not isinstance(run.next_node, End):
            await asyncio.create_task(run.next())
    run_span = otel.span('run graph ticker')
    assert [parent_id(s) for s in otel.spans if s.name == 'run node Tick'] == [run_span.context.span_id] * 3


async def test_200_interleaved_runs_each_node_under_its_own_run(otel: Pipeline) -> None:
    graph = make_graph(otel)
    results = await asyncio.gather(*(graph.run(Tick(3), state=Counter()) for _ in range(200)))
    assert len({r.trace_id for r in results}) == 200
    runs = {s.context.span_id: s for s in otel.spans if s.name == 'run graph ticker'}
    nodes = [s for s in otel.spans if s.name == 'run node Tick']
    assert len(runs) == 200 and len(nodes) == 600
    for node in nodes:
        assert node.parent is not None
        parent = runs[node.parent.span_id]
        assert parent.attributes['tracegraph.run.id'] == node.attributes['tracegraph.run.id']
        assert parent.context.trace_id == node.context.trace_id


async def test_interleaved_runs_in_one_task(otel: Pipeline) -> None:
    graph = make_graph(otel)
    async with graph.iter(Tick(3), state=Counter()) as a, graph.iter(Tick(3), state=Counter()) as b:
        for _ in range(3):
            await a.next()
            await b.next()
    for run in (a, b):
        node_parents = {
            parent_id(s)
            for s in otel.spans
            if s.name == 'run node Tick' and s.attributes['tracegraph.run.id'] == run.run_id
        }
        run_span = next(
            s for s in otel.spans if s.name == 'run graph ticker' and s.attributes['tracegraph.run.id'] == run.run_id
        )
        assert node_parents == {run_span.context.span_id}


async def test_span_argument_start_as_current_span_is_the_run_span(otel: Pipeline) -> None:
    graph = make_graph(otel)
    tracer = otel.tracer_provider.get_tracer('app')
    result = await graph.run(Tick(2), state=Counter(), span=tracer.start_as_current_span('my agent run'))
    assert [s.name for s in otel.spans] == ['run node Tick', 'run node Tick', 'my agent run']
    mine = otel.span('my agent run')
    assert mine.attributes['tracegraph.run.outcome'] == 'completed'
    assert mine.attributes['tracegraph.graph.name'] == 'ticker'
    assert 'logfire.msg' not in (mine.attributes or {})
    assert result.trace_id == f'{mine.context.trace_id:032x}'


async def test_span_argument_already_started_span(otel: Pipeline) -> None:
    graph = make_graph(otel)
    started = otel.tracer_provider.get_tracer('app').start_span('started elsewhere')
    with pytest.raises(ValueError, match='no luck'):
        await graph.run(Fail(), state=Counter(), span=started)
    span = otel.span('started elsewhere')
    assert span.status.status_code == StatusCode.ERROR
    assert parent_id(otel.span('run node Fail')) == span.context.span_id
    assert span.attributes['tracegraph.run.outcome'] == 'failed'


async def test_span_argument_other_context_manager(otel: Pipeline) -> None:
    entered: list[str] = []

    @contextmanager
    def audit() -> Generator[None]:
        entered.append('in')
        yield
        entered.append('out')

    graph = make_graph(otel)
    await graph.run(Tick(1), state=Counter(), span=audit())
    await graph.run(Tick(1), state=Counter(), span=nullcontext())
    assert entered == ['in', 'out']
    assert [s.name for s in otel.spans].count('run graph ticker') == 2


async def test_span_argument_sees_the_run_exception_after_the_run_ended(otel: Pipeline) -> None:
    """The caller's span is left after the run ended, with the run's exception; it may suppress it."""
    seen: list[tuple[str, object]] = []

    class Swallow:
        def __enter__(self) -> None:
            seen.append(('enter', None))

        def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
            run_span = next((s for s in otel.exporter.get_finished_spans() if s.name == 'run graph ticker'), None)
            seen.append(('exit', (type(exc).__name__, run_span is not None)))
            return True

    graph = make_graph(otel)
    async with graph.iter(Fail(), state=Counter(), span=Swallow()) as run:
        async for _ in run:
            pass
    assert seen == [('enter', None), ('exit', ('ValueError', True))]
    assert otel.span('run graph ticker').attributes['tracegraph.run.outcome'] == 'failed'

    scope = graph.iter(Tick(1), state=Counter())
    async with scope as run:
        pass
    with pytest.raises(RuntimeError, match=r'A run scope is entered once: call `graph.iter\(...\)` again'):
        async with scope:
            pass


async def test_auto_instrument_false_records_nothing(otel: Pipeline) -> None:
    graph = Graph(nodes=[Tick, Fail], auto_instrument=False, instrumentation=otel.settings())
    result = await graph.run(Tick(2), state=Counter())
    assert otel.spans == []
    assert otel.metric_points('tracegraph.node.duration') == []
    assert result.trace_id is None


async def test_state_diff_and_full(otel: Pipeline) -> None:
    @dataclass
    class Account:
        owner: str
        balance: int
        api_key: str

    @dataclass
    class Deposit(BaseNode[Account, None, int]):
        amount: int

        async def run(self, ctx: GraphRunContext[Account]) -> End[int]:
            ctx.state.balance += self.amount
            ctx.state.api_key = 'rotated-secret'
            return End(ctx.state.balance)

    diff_graph = Graph(nodes=[Deposit], name='bank', instrumentation=otel.settings(state='diff'))
    await diff_graph.run(Deposit(5), state=Account('ada', 10, 'sk-1'))
    node = otel.span('run node Deposit')
    assert json.loads(node.attributes['tracegraph.state.diff']) == {
        'api_key': '[Scrubbed]',  # changed, but neither value is shown
        'balance': {'old': 10, 'new': 15},
    }
    otel.exporter.clear()
    full_graph = Graph(nodes=[Deposit], name='bank', instrumentation=otel.settings(state='full'))
    await full_graph.run(Deposit(5), state=Account('ada', 10, 'sk-1'))
    node = otel.span('run node Deposit')
    assert node.attributes['tracegraph.state.before'] == '{"owner":"ada","balance":10,"api_key":"[Scrubbed]"}'
    assert node.attributes['tracegraph.state.after'] == '{"owner":"ada","balance":15,"api_key":"[Scrubbed]"}'


async def test_node_input_can_be_left_out_and_is_truncated(otel: Pipeline) -> None:
    @dataclass
    class Big(BaseNode[None, None, None]):
        text: str

        async def run(self, ctx: GraphRunContext) -> End[None]:
            return End(None)

    await Graph(nodes=[Big], name='big', instrumentation=otel.settings(max_attribute_length=40)).run(Big('x' * 100))
    value = otel.span('run node Big').attributes['tracegraph.node.input']
    assert value == '{"text":"xxxxxxxxxxxxxxxxx...[truncated]'
    assert len(value) == 40
    otel.exporter.clear()
    await Graph(nodes=[Big], name='big', instrumentation=otel.settings(include_node_input=False)).run(Big('x'))
    assert 'tracegraph.node.input' not in (otel.span('run node Big').attributes or {})


def test_settings_validation() -> None:
    from tracegraph import InstrumentationSettings

    with pytest.raises(ValueError, match=r"^`state` must be 'none', 'diff' or 'full', not 'all'\.$"):
        InstrumentationSettings(state='all')  # pyright: ignore[reportArgumentType]  # the misuse under test
    with pytest.raises(ValueError, match=r'^`max_attribute_length` must be at least 16, not 3\.$'):
        InstrumentationSettings(max_attribute_length=3)


async def test_history_state_is_after_and_span_diff_is_before_after(otel: Pipeline) -> None:
    """The history holds the state each node left; the node span's diff shows what it started from and left."""
    graph = make_graph(otel, state='diff')
    result = await graph.run(Tick(3), state=Counter())
    assert [s.state for s in result.history if s.kind == 'node'] == [Counter(1), Counter(2), Counter(3)]
    diffs = [json.loads(s.attributes['tracegraph.state.diff']) for s in otel.spans if s.name == 'run node Tick']
    assert diffs == [{'count': {'old': 0, 'new': 1}}, {'count': {'old': 1, 'new': 2}}, {'count': {'old': 2, 'new': 3}}]


async def test_a_failing_node_appends_no_step(otel: Pipeline) -> None:
    graph = make_graph(otel)
    history: list[HistoryStep[Counter, int]] = []
    with pytest.raises(ValueError, match='no luck'):
        async with graph.iter(Tick(2), history=history, state=Counter()) as run:
            await run.next()
            await run.next(Fail())
    assert [s.node for s in history if isinstance(s, NodeStep)] == [Tick(2)]
    assert [(n.node_id, n.outcome) for n in run.timeline.nodes] == [('Tick', 'completed'), ('Fail', 'failed')]  # pyright: ignore[reportPossiblyUnboundVariable]
    assert otel.span('run node Fail').status.status_code == StatusCode.ERROR


async def test_graph_next_outside_a_run_opens_a_node_span_under_the_current_span(otel: Pipeline) -> None:
    graph = make_graph(otel)
    tracer = otel.tracer_provider.get_tracer('test')
    history: list[HistoryStep[Counter, int]] = []
    with tracer.start_as_current_span('caller') as caller:
        node = await graph.next(Tick(2), history, state=Counter())
        assert isinstance(node, BaseNode)
        await graph.next(node, history, state=Counter(1))
    ticks = [s for s in otel.spans if s.name == 'run node Tick']
    assert len(ticks) == 2 and not any(s.name.startswith('run graph') for s in otel.spans)
    assert {s.parent.span_id for s in ticks if s.parent} == {caller.get_span_context().span_id}
    assert [s.span_id for s in history if isinstance(s, NodeStep)] == [f'{s.context.span_id:016x}' for s in ticks]
    assert [p.value for p in otel.metric_points('tracegraph.run.steps')] == [2]  # counted, no run recorded
    assert otel.metric_points('tracegraph.run.duration') == []


async def test_nodes_run_after_the_run_was_left_are_not_in_its_trace(otel: Pipeline) -> None:
    graph = make_graph(otel)
    async with graph.iter(Tick(1), state=Counter()) as run:
        await run.next()
    assert await run.next(Tick(5)) == Tick(5)  # the classic API lets it run
    assert [s.name for s in otel.spans] == ['run node Tick', 'run graph ticker']
    assert otel.span('run graph ticker').attributes['tracegraph.run.steps'] == 1


def _misnested(spans: list[Finished]) -> list[str]:
    """Each span that starts before or ends after its parent, named with both."""
    by_id = {s.context.span_id: s for s in spans}
    wrong: list[str] = []
    for child in spans:
        parent = by_id.get(child.parent.span_id) if child.parent is not None else None
        if parent is not None and not (parent.start_time <= child.start_time <= child.end_time <= parent.end_time):
            wrong.append(f'{child.name} outside {parent.name}')
    return wrong


@pytest.mark.parametrize('failing', [False, True], ids=['completed', 'failed'])
async def test_no_span_ends_after_its_parent(otel: Pipeline, failing: bool) -> None:
    """Spans opened in a node use the SDK's clock; the node and run spans must contain them on that clock, or a
    backend that checks nesting (and a critical path) drops them off their parent."""
    tracer = otel.tracer_provider.get_tracer('user')

    @dataclass
    class Call(BaseNode[Counter, None, int]):
        async def run(self, ctx: GraphRunContext[Counter]) -> Call | End[int]:
            ctx.state.count += 1
            with tracer.start_as_current_span('llm call'), tracer.start_as_current_span('http request'):
                await asyncio.sleep(0)
            if failing and ctx.state.count == 200:
                with tracer.start_as_current_span('last call'):
                    raise RuntimeError('gave up')
            return Call() if ctx.state.count < 200 else End(ctx.state.count)

    graph = Graph(nodes=[Call], name='nested', instrumentation=otel.settings())
    with pytest.raises(RuntimeError) if failing else nullcontext():
        await graph.run(Call(), state=Counter())
    spans = otel.spans
    assert len(spans) == 1 + 200 * 3 + failing
    assert _misnested(spans) == []

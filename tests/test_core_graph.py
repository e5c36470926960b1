"""The graph engine: edges from return hints, validation, running, driving, errors, names and types."""

# pyright: reportPrivateUsage=false
# (`Graph._get_state_type` and `_get_run_end_type` are upstream private helpers libraries call: part of the contract)
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Union

import pytest
from inline_snapshot import snapshot
from never_42 import Check42, Increment, MyState, never_42_graph

from tracegraph import (
    BaseNode,
    Edge,
    End,
    EndStep,
    Graph,
    GraphRunContext,
    GraphRuntimeError,
    GraphSetupError,
    HistoryStep,
    NodeStep,
)
from tracegraph._utils import get_event_loop
from tracegraph.nodes import NodeDef

pytestmark = pytest.mark.anyio


@dataclass
class Start(BaseNode[None, None, int]):
    value: int = 0

    async def run(self, ctx: GraphRunContext) -> Annotated[Middle, Edge(label='go on')] | End[int]:
        return Middle(self.value + 1) if self.value < 2 else End(self.value)


@dataclass
class Middle(BaseNode[None, None, int]):
    value: int

    async def run(self, ctx: GraphRunContext) -> Union[Start, Annotated[End[int], Edge(label='stop')]]:
        return Start(self.value)


def test_edges_from_return_hints() -> None:
    g = Graph(nodes=[Start, Middle])
    assert g.node_defs['Start'] == NodeDef(
        node=Start,
        node_id='Start',
        note=None,
        next_node_edges={'Middle': Edge(label='go on')},
        end_edge=Edge(label=None),
        returns_base_node=False,
    )
    assert g.node_defs['Middle'].next_node_edges == {'Start': Edge(label=None)}
    assert g.node_defs['Middle'].end_edge == Edge(label='stop')


def test_forward_references_resolved_in_graph_namespace() -> None:
    @dataclass
    class Ping(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> Pong:
            return Pong()

    @dataclass
    class Pong(BaseNode[None, None, str]):
        async def run(self, ctx: GraphRunContext) -> Ping | End[str]:
            return End('done')

    local_graph = Graph(nodes=[Ping, Pong])
    assert local_graph.node_defs['Ping'].next_node_edges == {'Pong': Edge(None)}
    assert local_graph.run_sync(Ping()).output == 'done'
    assert local_graph.name == 'local_graph'


def test_unresolvable_forward_reference() -> None:
    @dataclass
    class Lost(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext) -> Nowhere:  # noqa: F821  # pyright: ignore[reportUndefinedVariable, reportUnknownParameterType]
            raise NotImplementedError

    with pytest.raises(GraphSetupError) as exc_info:
        Graph(nodes=[Lost])
    assert exc_info.value.message == snapshot(
        "Cannot resolve the return annotation of `test_unresolvable_forward_reference.<locals>.Lost.run`: name 'Nowhere' is not defined"
    )


def test_duplicate_node_ids() -> None:
    @dataclass
    class Other(BaseNode[None, None, int]):
        @classmethod
        def get_id(cls) -> str:
            return 'Start'

        async def run(self, ctx: GraphRunContext) -> End[int]:
            return End(1)

    with pytest.raises(GraphSetupError, match=r'^Node ID `Start` is not unique — found on'):
        Graph(nodes=[Start, Middle, Other])


def test_missing_nodes_named_with_who_references_them() -> None:
    with pytest.raises(GraphSetupError) as exc_info:
        Graph(nodes=[Start])
    assert exc_info.value.message == snapshot('`Middle` is referenced by `Start` but not included in the graph.')

    @dataclass
    class A(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext) -> Start | Middle:
            raise NotImplementedError

    @dataclass
    class B(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext) -> Start:
            raise NotImplementedError

    @dataclass
    class C(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext) -> Start:
            raise NotImplementedError

    with pytest.raises(GraphSetupError) as exc_info:
        Graph(nodes=[A, B, C])
    assert exc_info.value.message == snapshot("""\
Nodes are referenced in the graph but not included in the graph:
 `Start` is referenced by `A`, `B`, and `C`
 `Middle` is referenced by `A`\
""")


def test_missing_and_invalid_return_hints() -> None:
    class NoHint(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext):  # pyright: ignore[reportUnknownParameterType]  # no hint: the error under test
            raise NotImplementedError

    with pytest.raises(GraphSetupError, match='is missing a return type hint on its `run` method'):
        Graph(nodes=[NoHint])

    class BadHint(BaseNode[None, None, None]):
        async def run(self, ctx: GraphRunContext) -> int:  # pyright: ignore[reportIncompatibleMethodOverride]  # under test
            raise NotImplementedError

    with pytest.raises(GraphSetupError) as exc_info:
        Graph(nodes=[BadHint])
    assert exc_info.value.message == "Invalid return type: <class 'int'>"


def test_returns_base_node_and_notes() -> None:
    @dataclass
    class Router(BaseNode[None, None, None]):
        """Routes anywhere.

        Second paragraph."""

        docstring_notes = True

        async def run(self, ctx: GraphRunContext) -> BaseNode[None, None, None] | End[None]:
            return End(None)

    @dataclass
    class Quiet(BaseNode[None, None, None]):
        docstring_notes = True

        async def run(self, ctx: GraphRunContext) -> End[None]:
            return End(None)

    g = Graph(nodes=[Router, Quiet], name='router')
    assert g.node_defs['Router'].returns_base_node
    assert Router.get_note() == 'Routes anywhere.\n\nSecond paragraph.'
    assert Quiet.get_note() is None  # the signature docstring dataclass writes is not a note
    assert Start.get_note() is None  # docstring_notes is off by default
    assert g.mermaid_code(start_node='Router', direction='LR') == snapshot("""\
---
title: router
---
stateDiagram-v2
  direction LR
  [*] --> Router
  Router --> Router
  Router --> Quiet
  Router --> [*]
  note right of Router
    Routes anywhere.
    Second paragraph.
  end note
  Quiet --> [*]\
""")


def test_state_and_end_types_inferred() -> None:
    assert never_42_graph._get_state_type() is MyState
    assert never_42_graph._get_run_end_type() is int

    @dataclass
    class Untyped(BaseNode):
        async def run(self, ctx: GraphRunContext) -> End[None]:  # pyright: ignore[reportIncompatibleMethodOverride]
            return End(None)

    g = Graph(nodes=[Untyped])
    assert g._get_state_type() is type(None)
    with pytest.raises(GraphSetupError, match='Could not infer run end type from nodes, please set `run_end_type`.'):
        g._get_run_end_type()
    assert Graph(nodes=[Untyped], run_end_type=str)._get_run_end_type() is str


async def test_name_inferred_on_first_iter_next_and_mermaid() -> None:
    by_iter = Graph(nodes=[Start, Middle])
    async with by_iter.iter(Start()) as run:
        await run.next()
    assert by_iter.name == 'by_iter'

    by_next = Graph(nodes=[Start, Middle])
    await by_next.next(Start(), [])
    assert by_next.name == 'by_next'

    by_mermaid = Graph(nodes=[Start, Middle])
    by_mermaid.mermaid_code()
    assert by_mermaid.name == 'by_mermaid'

    not_inferred = Graph(nodes=[Start, Middle])
    await not_inferred.run(Start(), infer_name=False)
    assert not_inferred.name is None

    explicit = Graph(nodes=[Start, Middle], name='given')
    await explicit.run(Start())
    assert explicit.name == 'given'


async def test_iter_yields_every_node_and_end_last() -> None:
    g = Graph(nodes=[Start, Middle])
    async with g.iter(Start()) as run:
        assert run.result is None
        nodes = [node async for node in run]
        assert run.result is not None
    assert nodes == [Middle(1), Start(1), Middle(2), Start(2), End(2)]
    assert run.result.output == 2
    assert repr(run) == '<GraphRun graph=g>'  # as from pydantic_graph 0.0.40 on
    assert [type(s).__name__ for s in run.history] == ['NodeStep'] * 5 + ['EndStep']


async def test_repr_of_a_classic_history_run_counts_its_steps() -> None:
    """Given `history=` (the 0.0.36-0.0.39 API), a run reprs as those versions did."""
    g = Graph(nodes=[Start, Middle])
    async with g.iter(Start(), history=[]) as run:
        assert repr(run) == '<GraphRun name=g step=1>'
        await run.next()
        assert repr(run) == '<GraphRun name=g step=2>'


async def test_driving_errors() -> None:
    g = Graph(nodes=[Start, Middle])
    async with g.iter(Start(2)) as run:
        assert await run.next() == End(2)
        with pytest.raises(GraphRuntimeError) as exc_info:
            await run.next()
        assert exc_info.value.message == 'This graph run has already ended.'
        # As in the classic engine, an explicit node still runs after `End` (only `next()` without one refuses).
        assert await run.next(Start(3)) == End(3)
    # ... and after the run's `async with` was left, outside the run's trace.
    assert await run.next(Start(4)) == End(4)
    assert [s.node for s in run.history if isinstance(s, NodeStep)] == [Start(2), Start(3), Start(4)]

    async with g.iter(Start()) as run:
        with pytest.raises(GraphRuntimeError) as exc_info:
            await run.next(Increment())  # pyright: ignore[reportArgumentType]  # the misuse under test
        assert exc_info.value.message == 'Node `Increment()` is not in the graph.'

    with pytest.raises(GraphRuntimeError) as exc_info:
        await g.next(End(1), [])  # pyright: ignore[reportArgumentType]  # the misuse under test
    assert exc_info.value.message == 'Cannot call `next` with an `End` node: End(data=1).'


async def test_nodes_are_found_by_their_id_not_their_class() -> None:
    """Steps look a node's class up first; a subclass is still judged by its `get_id()`, as in the classic engine."""

    @dataclass
    class SameId(Start):
        @classmethod
        def get_id(cls) -> str:
            return 'Start'

    @dataclass
    class OtherId(Start):
        pass

    g = Graph(nodes=[Start, Middle])
    assert (await g.run(SameId(2))).output == 2
    with pytest.raises(GraphRuntimeError) as exc_info:
        await g.run(OtherId())
    assert (
        exc_info.value.message
        == 'Node `test_nodes_are_found_by_their_id_not_their_class.<locals>.OtherId(value=0)` is not in the graph.'
    )

    history: list[HistoryStep[None, int]] = []
    with pytest.raises(AttributeError, match="'str' object has no attribute 'get_id'"):
        await g.next('Start', history)  # pyright: ignore[reportArgumentType]  # the misuse under test
    assert await g.next(Start(1), history) == Middle(2)
    assert [type(s).__name__ for s in history] == ['NodeStep']


async def test_engine_steps_are_the_dataclass_a_user_would_build() -> None:
    """The engine builds `NodeStep`s without calling `__init__`: the same fields, in the same order, equal."""
    seen: list[object] = []

    def snapshot_state(state: MyState) -> MyState:
        seen.append(state)
        return MyState(state.number * 10)

    g = Graph(nodes=(Increment, Check42), snapshot_state=snapshot_state)
    state = MyState(1)
    result = await g.run(Increment(), state=state)
    steps = [s for s in result.history if isinstance(s, NodeStep)]
    assert [s.state for s in steps] == [MyState(20), MyState(20)] and seen == [state, state]
    for step in steps:
        rebuilt = NodeStep(
            state=MyState(2),
            node=step.node,
            start_ts=step.start_ts,
            duration=step.duration,
            snapshot_state=snapshot_state,
            # whatever trace the process's global provider gave the step (another test may have set one)
            trace_id=step.trace_id,
            span_id=step.span_id,
        )
        assert step == rebuilt
        assert list(vars(step)) == list(vars(rebuilt))
        assert repr(step) == repr(rebuilt)

    plain = await Graph(nodes=[Start, Middle], auto_instrument=False).run(Start())  # untraced, whatever is global
    first = plain.history[0]
    assert isinstance(first, NodeStep)
    assert vars(first) == vars(NodeStep(state=None, node=Start(0), start_ts=first.start_ts, duration=first.duration))


async def test_async_for_protocols() -> None:
    """`__anext__` hands back the step's coroutine: `anext()`, `async for` and a comprehension all drive a run."""
    g = Graph(nodes=[Start, Middle])
    async with g.iter(Start()) as run:
        assert await anext(run) == Middle(1)
        assert [n async for n in run] == [Start(1), Middle(2), Start(2), End(2)]
        with pytest.raises(StopAsyncIteration):
            await anext(run)
    async with g.iter(Start(), yield_start_node=True) as run:
        assert [n async for n in run] == [Start(0), Middle(1), Start(1), Middle(2), Start(2), End(2)]


async def test_invalid_node_return_value() -> None:
    @dataclass
    class Liar(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> End[int]:
            return 42  # pyright: ignore[reportReturnType]  # the misuse under test

    g = Graph(nodes=[Liar])
    with pytest.raises(GraphRuntimeError) as exc_info:
        await g.run(Liar())
    assert exc_info.value.message == 'Invalid node return type: `int`. Expected `BaseNode` or `End`.'


async def test_node_exception_reaches_caller_unchanged() -> None:
    boom = ValueError('boom')

    @dataclass
    class Explodes(BaseNode[None, None, int]):
        async def run(self, ctx: GraphRunContext) -> End[int]:
            raise boom

    g = Graph(nodes=[Explodes])
    with pytest.raises(ValueError) as exc_info:
        await g.run(Explodes())
    assert exc_info.value is boom


async def test_deps_reach_nodes() -> None:
    @dataclass
    class Deps:
        greeting: str

    @dataclass
    class Greet(BaseNode[None, Deps, str]):
        name: str

        async def run(self, ctx: GraphRunContext[None, Deps]) -> End[str]:
            return End(f'{ctx.deps.greeting}, {self.name}')

    g = Graph(nodes=[Greet])
    assert (await g.run(Greet('Ada'), deps=Deps('Hello'))).output == 'Hello, Ada'


def test_run_sync_in_thread_without_loop() -> None:
    results: list[int] = []

    def worker() -> None:
        results.append(never_42_graph.run_sync(Increment(), state=MyState(40)).output)
        # The classic engine runs on the thread's loop, made and set as current by `get_event_loop`, and keeps it.
        loop = get_event_loop()
        results.append(never_42_graph.run_sync(Increment(), state=MyState(1)).output)
        assert get_event_loop() is loop and not loop.is_closed()
        loop.close()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=30)
    assert results == [41, 2]


async def test_run_sync_inside_running_loop_is_a_clear_error() -> None:
    with pytest.raises(GraphRuntimeError) as exc_info:
        never_42_graph.run_sync(Increment(), state=MyState(1))
    assert exc_info.value.message == snapshot(
        '`run_sync` cannot be called while an event loop is running in this thread; use `await graph.run(...)` instead.'
    )


async def test_history_snapshots_state_after_each_step() -> None:
    state = MyState(1)
    result = await never_42_graph.run(Increment(), state=state)
    steps = result.history
    assert isinstance(steps[0], NodeStep)
    assert isinstance(steps[1], NodeStep)
    assert isinstance(steps[2], EndStep)
    assert steps[0].state == MyState(2)  # after Increment ran (the classic `NodeStep.state`)
    assert steps[1].state == MyState(2)  # after Check42 ran
    assert steps[0].state is not state
    assert steps[0].start_ts.utcoffset() == timedelta(0)
    assert steps[0].duration is not None and steps[0].duration >= 0
    assert steps[0].data_snapshot() == Increment() and steps[0].data_snapshot() is not steps[0].node
    assert steps[2].result == End(2) and steps[2].data_snapshot() == End(2)


async def test_custom_snapshot_state() -> None:
    copies: list[MyState] = []

    def snapshot_state(state: MyState) -> MyState:
        copies.append(state)
        return MyState(state.number * 100)

    g = Graph(nodes=[Increment, Check42], snapshot_state=snapshot_state)
    result = await g.run(Increment(), state=MyState(5))
    assert [s.state for s in result.history if isinstance(s, NodeStep)] == [
        MyState(600),
        MyState(600),
    ]  # snapshotted after each node ran
    assert len(copies) == 2


async def test_graph_next_appends_to_history() -> None:
    history: list[HistoryStep[MyState, int]] = []
    state = MyState(1)
    node = await never_42_graph.next(Increment(), history, state=state)
    assert isinstance(node, Check42)
    assert await never_42_graph.next(node, history, state=state) == End(2)
    assert [type(s).__name__ for s in history] == ['NodeStep', 'NodeStep', 'EndStep']


async def test_concurrent_runs_share_nothing() -> None:
    results = await asyncio.gather(*(never_42_graph.run(Increment(), state=MyState(i)) for i in range(30, 45)))
    assert [r.output for r in results] == [i + 1 if i + 1 != 42 else 43 for i in range(30, 45)]

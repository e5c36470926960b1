"""History: JSON dump and load, the node_id tag, and resuming a run from a loaded history."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pydantic
import pytest
from dirty_equals import IsFloat, IsStr
from inline_snapshot import snapshot
from shop_graph import AddItem, Cart, Pay, pin_times, shop
from tracing_helpers import Pipeline

from tracegraph import EndStep, Graph, NodeStep

pytestmark = pytest.mark.anyio


FIXTURES = Path(__file__).parent / 'fixtures'


async def test_dump_and_load_round_trip() -> None:
    result = await shop.run(AddItem('apple', ['pear']), state=Cart())
    dumped = shop.dump_history(result.history)
    data = json.loads(dumped)
    assert data[0] == snapshot(
        {
            'state': {'items': ['apple'], 'paid': False},
            'node': {'item': 'apple', 'then': ['pear'], 'node_id': 'AddItem'},
            'start_ts': IsStr(regex=r'\d{4}-\d\d-\d\dT.*Z'),
            'duration': IsFloat(),
            'kind': 'node',
        }
    )
    assert data[2]['node'] == {'when': '2026-01-02T03:04:05', 'node_id': 'Pay'}
    assert data[3] == snapshot({'result': {'data': 'paid for 2 items'}, 'ts': IsStr(), 'kind': 'end'})

    loaded = shop.load_history(dumped)
    assert loaded == result.history
    assert isinstance(loaded[2], NodeStep) and loaded[2].node == Pay(when=datetime(2026, 1, 2, 3, 4, 5))
    assert isinstance(loaded[3], EndStep)
    assert shop.dump_history(loaded, indent=2) == shop.dump_history(result.history, indent=2)


def test_load_history_rejects_unknown_nodes() -> None:
    bad = b'[{"state": {"items": [], "paid": false}, "node": {"node_id": "Refund"}, "kind": "node"}]'
    with pytest.raises(pydantic.ValidationError, match="Unknown node id 'Refund'; expected one of `AddItem`, `Pay`."):
        shop.load_history(bad)
    with pytest.raises(pydantic.ValidationError, match='A serialized node must be an object with a `node_id` key.'):
        shop.load_history(b'[{"state": {"items": [], "paid": false}, "node": {"item": "x"}, "kind": "node"}]')


async def test_resume_from_loaded_history() -> None:
    """Run two steps, persist the history, and finish the run later from what was loaded."""
    state = Cart()
    async with shop.iter(AddItem('apple', ['pear']), state=state) as run:
        await run.next()
        next_node = await run.next()
    assert isinstance(next_node, Pay)
    saved = shop.dump_history(run.history)

    history = shop.load_history(saved)
    async with shop.iter(next_node, history=history, state=state) as resumed:
        async for _ in resumed:
            pass
    assert resumed.result is not None
    assert resumed.result.output == 'paid for 2 items'
    assert [s.node.get_id() for s in history if isinstance(s, NodeStep)] == ['AddItem', 'AddItem', 'Pay']
    assert isinstance(history[-1], EndStep)
    assert resumed.timeline.nodes[0].node_id == 'Pay'  # the resumed run's timeline holds only its own steps


def test_history_type_adapter_needs_a_graph() -> None:
    """The classic text (callers match its start), then the way out."""
    with pytest.raises(RuntimeError) as raised:
        pydantic.TypeAdapter(NodeStep[Cart, str])
    assert str(raised.value) == snapshot(
        'Unable to build a Pydantic schema for `NodeStep` or `HistoryStep` without setting `nodes_schema_var`. '
        'You probably want to use `graph.history_type_adapter`, `graph.dump_history` or `graph.load_history`.'
    )


async def test_untraced_history_is_byte_for_byte_the_classic_json() -> None:
    """The fixtures were written by pydantic_graph 0.0.37 running the same graph (tests/fixtures/make_classic.py)."""
    result = await shop.run(AddItem('apple', ['pear']), state=Cart())
    pin_times(result.history)
    assert shop.dump_history(result.history) == (FIXTURES / 'classic_shop_history.json').read_bytes()
    assert shop.dump_history(result.history, indent=2) == (FIXTURES / 'classic_shop_history_indent2.json').read_bytes()


async def test_classic_history_loads_and_resumes() -> None:
    """A history written by the classic engine, loaded, and a run continued from it."""
    classic = (FIXTURES / 'classic_shop_history.json').read_bytes()
    history = shop.load_history(classic)
    assert [type(s).__name__ for s in history] == ['NodeStep', 'NodeStep', 'NodeStep', 'EndStep']
    first = history[0]
    assert isinstance(first, NodeStep)
    assert first.state == Cart(items=['apple'])
    assert (first.trace_id, first.span_id) == (None, None)
    assert shop.dump_history(history) == classic  # nothing added on the way through

    # Resume: drop the end, pay again from the state the last AddItem left.
    partial = history[:2]
    last = partial[-1]
    assert isinstance(last, NodeStep)
    state = last.state
    async with shop.iter(Pay(when=datetime(2026, 1, 2)), history=partial, state=state) as run:
        async for _ in run:
            pass
    assert run.result is not None and run.result.output == 'paid for 2 items'
    assert [s.kind for s in partial] == ['node', 'node', 'node', 'end']
    assert isinstance(partial[2], NodeStep) and partial[2].state == Cart(items=['apple', 'pear'], paid=True)


async def test_traced_history_carries_span_ids(otel: Pipeline) -> None:
    traced = Graph(nodes=[AddItem, Pay], instrumentation=otel.settings())
    result = await traced.run(AddItem('apple'), state=Cart())
    assert traced.dump_history(result.history) == shop.dump_history(result.history)  # the classic bytes by default
    first = result.history[0]
    assert isinstance(first, NodeStep) and first.trace_id == result.trace_id
    # As upstream's, a step compares and prints by its classic fields: a test's `history == [NodeStep(...)]` holds
    # whether or not a tracer provider is set.
    untraced = NodeStep(state=first.state, node=first.node, start_ts=first.start_ts, duration=first.duration)
    assert first == untraced and repr(first) == repr(untraced) and 'trace_id' not in repr(first)
    data = json.loads(traced.dump_history(result.history, trace_ids=True))
    spans = {f'{s.context.span_id:016x}': s for s in otel.spans if s.name.startswith('run node')}
    assert [step['span_id'] in spans for step in data if step['kind'] == 'node'] == [True, True]
    assert {step['trace_id'] for step in data if step['kind'] == 'node'} == {result.trace_id}
    loaded = traced.load_history(traced.dump_history(result.history, trace_ids=True))
    assert loaded == result.history
    assert [(s.trace_id, s.span_id) for s in loaded if isinstance(s, NodeStep)] == [
        (s.trace_id, s.span_id) for s in result.history if isinstance(s, NodeStep)
    ]

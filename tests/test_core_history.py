"""History: JSON dump and load, the node_id tag, and resuming a run from a loaded history."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import pydantic
import pytest
from dirty_equals import IsFloat, IsStr
from inline_snapshot import snapshot

from tracegraph import BaseNode, End, EndStep, Graph, GraphRunContext, NodeStep

pytestmark = pytest.mark.anyio


@dataclass
class Cart:
    items: list[str] = field(default_factory=list)
    paid: bool = False


@dataclass
class AddItem(BaseNode[Cart, None, str]):
    item: str
    then: list[str] = field(default_factory=list)

    async def run(self, ctx: GraphRunContext[Cart]) -> AddItem | Pay:
        ctx.state.items.append(self.item)
        if self.then:
            return AddItem(self.then[0], self.then[1:])
        return Pay(when=datetime(2026, 1, 2, 3, 4, 5))


@dataclass
class Pay(BaseNode[Cart, None, str]):
    when: datetime

    async def run(self, ctx: GraphRunContext[Cart]) -> End[str]:
        ctx.state.paid = True
        return End(f'paid for {len(ctx.state.items)} items')


shop = Graph(nodes=[AddItem, Pay])


async def test_dump_and_load_round_trip() -> None:
    result = await shop.run(AddItem('apple', ['pear']), state=Cart())
    dumped = shop.dump_history(result.history)
    data = json.loads(dumped)
    assert data[0] == snapshot(
        {
            'state': {'items': [], 'paid': False},
            'node': {'item': 'apple', 'then': ['pear'], 'node_id': 'AddItem'},
            'start_ts': IsStr(regex=r'\d{4}-\d\d-\d\dT.*Z'),
            'duration': IsFloat(),
            'kind': 'node',
            'trace_id': None,
            'span_id': None,
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
    with pytest.raises(RuntimeError, match="needs the graph's nodes"):
        pydantic.TypeAdapter(NodeStep[Cart, str])

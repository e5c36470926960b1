"""A state-mutating graph whose history JSON is compared with the classic engine's (tests/fixtures/make_classic.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tracegraph import BaseNode, End, Graph, GraphRunContext


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

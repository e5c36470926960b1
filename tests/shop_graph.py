"""A state-mutating graph whose history JSON is compared with the classic engine's (tests/fixtures/make_classic.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from tracegraph import BaseNode, End, Graph, GraphRunContext


@dataclass
class Cart:
    items: list[str] = field(default_factory=list[str])
    paid: bool = False


@dataclass
class AddItem(BaseNode[Cart, None, str]):
    item: str
    then: list[str] = field(default_factory=list[str])

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


# Untraced whatever provider an earlier test made global: its history JSON is compared byte for byte with classic's.
shop = Graph(nodes=[AddItem, Pay], auto_instrument=False)


def pin_times(history: list[Any]) -> None:
    """Give every step of `history` fixed, distinct times and durations, so its JSON does not depend on the clock."""
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i, step in enumerate(history):
        if step.kind == 'node':
            step.start_ts = t0 + timedelta(seconds=i)
            step.duration = 0.25 * (i + 1)
        else:
            step.ts = t0 + timedelta(seconds=i)

"""The classic documentation's never-42 graph, imported by the documentation-example tests.

Written as the classic docs write it (an unparameterised `GraphRunContext`), so it is checked in basic mode.
"""
# pyright: basic, reportAttributeAccessIssue=false
# (an unparameterised `GraphRunContext` types `ctx.state` as None, as in the classic docs)

from __future__ import annotations

from dataclasses import dataclass

from tracegraph import BaseNode, End, Graph, GraphRunContext


@dataclass
class MyState:
    number: int


@dataclass
class Increment(BaseNode[MyState]):
    async def run(self, ctx: GraphRunContext) -> Check42:
        ctx.state.number += 1
        return Check42()


@dataclass
class Check42(BaseNode[MyState, None, int]):
    async def run(self, ctx: GraphRunContext) -> Increment | End[int]:
        if ctx.state.number == 42:
            return Increment()
        else:
            return End(ctx.state.number)


never_42_graph = Graph(nodes=(Increment, Check42))

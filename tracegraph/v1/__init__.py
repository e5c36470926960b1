"""pydantic_graph 1.x's BaseNode runner, under its own module tree: `tracegraph.v1` for code written for 0.0.54–1.107.

Replace `pydantic_graph` with `tracegraph.v1` in the imports. The classes are tracegraph's own (a node, a snapshot or
a persistence made through `tracegraph` works here and back); the only era default that differs is that
`async for node in run` yields the start node first, as pydantic_graph does from 0.0.54 on.

Example:
    ```python
    from __future__ import annotations

    from dataclasses import dataclass

    from tracegraph.v1 import BaseNode, End, Graph, GraphRunContext


    @dataclass
    class CountDown(BaseNode[None, None, int]):
        n: int

        async def run(self, ctx: GraphRunContext) -> CountDown | End[int]:
            return CountDown(self.n - 1) if self.n > 0 else End(self.n)


    count_down = Graph(nodes=[CountDown])


    async def main() -> None:
        async with count_down.iter(CountDown(2)) as run:
            async for node in run:
                print(node)


    import asyncio

    asyncio.run(main())
    #> CountDown(n=2)
    #> CountDown(n=1)
    #> CountDown(n=0)
    #> End(data=0)
    ```
"""

from __future__ import annotations

from ..exceptions import GraphRuntimeError, GraphSetupError
from ..nodes import BaseNode, Edge, End, GraphRunContext
from ..persistence import EndSnapshot, NodeSnapshot, Snapshot
from ..persistence.in_mem import FullStatePersistence, SimpleStatePersistence
from .graph import Graph, GraphRun, GraphRunResult

__all__ = (
    'Graph',
    'GraphRun',
    'GraphRunResult',
    'BaseNode',
    'End',
    'GraphRunContext',
    'Edge',
    'EndSnapshot',
    'Snapshot',
    'NodeSnapshot',
    'GraphSetupError',
    'GraphRuntimeError',
    'SimpleStatePersistence',
    'FullStatePersistence',
)

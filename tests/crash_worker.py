"""A persisted run driven by a separate process, for tests/test_persistence_crash.py to SIGKILL at random moments.

usage: crash_worker.py file|sqlite|postgres STORE EFFECTS start|resume|hang
STORE is the JSON file, the SQLite database file, or `DSN#RUN_ID` for PostgreSQL. `hang` starts the run and blocks
forever in node HANG_AT (after its side effect), for a test to find it running and kill it there. With
`CRASH_WORKER_GATE=PATH` set, node STEPS - 2 waits until PATH exists: the run is alive and unfinished until the test
lets it go on.
Each node appends its index to EFFECTS (the side effect the test counts) before it returns; the run prints its
output as JSON when it ends.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from tracegraph import BaseNode, End, Graph, GraphRunContext
from tracegraph.persistence import BaseStatePersistence, EndSnapshot
from tracegraph.persistence.file import FileStatePersistence
from tracegraph.persistence.postgres import PostgresStatePersistence
from tracegraph.persistence.sqlite import SQLiteStatePersistence

STEPS = 40
HANG_AT = 3


@dataclass
class Tally:
    total: int = 0


@dataclass
class Work(BaseNode[Tally, Path, int]):
    index: int

    async def run(self, ctx: GraphRunContext[Tally, Path]) -> Work | End[int]:
        with open(ctx.deps, 'a') as effects:
            effects.write(f'{self.index}\n')
            effects.flush()
            os.fsync(effects.fileno())
        if self.index == HANG_AT and os.environ.get('CRASH_WORKER_HANG') == '1':
            await asyncio.Event().wait()
        gate = os.environ.get('CRASH_WORKER_GATE')
        if gate and self.index == STEPS - 2:
            while not Path(gate).exists():
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.001)
        ctx.state.total += self.index
        return Work(self.index + 1) if self.index + 1 < STEPS else End(ctx.state.total)


graph = Graph(nodes=[Work], name='crash_worker')


def persistence(kind: str, store: str) -> BaseStatePersistence[Tally, int]:
    if kind == 'file':
        return FileStatePersistence(Path(store))
    if kind == 'postgres':
        dsn, run_id = store.split('#')
        return PostgresStatePersistence(dsn, run_id=run_id)
    return SQLiteStatePersistence(store, run_id='the-run')


async def main(kind: str, store: str, effects: str, mode: str) -> None:
    p = persistence(kind, store)
    deps = Path(effects)
    if mode == 'resume':
        p.set_graph_types(graph)
        snapshots = await p.load_all()
        if snapshots and isinstance(snapshots[-1], EndSnapshot):  # killed after the end was stored: the run is over
            print(json.dumps({'output': snapshots[-1].result.data, 'total': snapshots[-1].state.total}))
            return
        if not snapshots:  # killed before its first snapshot: the run never began
            mode = 'start'
    if mode == 'hang':
        os.environ['CRASH_WORKER_HANG'] = '1'
        mode = 'start'
    if mode == 'start':
        async with graph.iter(Work(0), state=Tally(), deps=deps, persistence=p) as run:
            async for _ in run:
                pass
    else:
        async with graph.iter_from_persistence(p, deps=deps) as run:
            async for _ in run:
                pass
    assert run.result is not None
    print(json.dumps({'output': run.result.output, 'total': run.state.total}))


if __name__ == '__main__':
    asyncio.run(main(*sys.argv[1:5]))

"""Microseconds per persisted step, by persistence and by how many snapshots the run already holds, and the time to
resume a run whose process was SIGKILLed while a node ran.

Run by hand, never in the test suite:

    .venv/bin/python bench/persistence.py                  # file, SQLite, PostgreSQL at 100 .. 100,000 snapshots
    .venv/bin/python bench/persistence.py --quick          # 100 and 10,000 snapshots, one round
    .venv/bin/python bench/persistence.py --dsn postgresql://...   # an existing PostgreSQL instead of a throwaway one

Each store is filled with a run of N snapshots (written in bulk in the store's own format: the file's JSON list, or
rows), whose last snapshot is `created`. A round then resumes it with `iter_from_persistence` and times K steps
(each: snapshot the next node, mark running, mark success); the figure is the median over rounds of the mean step
time, rounds interleaving the stores and sizes. The resume time is measured after a child process resumed the run
and SIGKILLed itself inside a node: the time `iter_from_persistence` takes to take the run over (load the last
snapshot, check its owner is gone, mark it pending) and run that node again. PostgreSQL runs on a throwaway
cluster on loopback (`tests/postgres_helpers.py`) with the server's defaults but `fsync=off`, as the tests use.
The file and SQLite stores live in a temporary directory (`synchronous=FULL`, fsync on).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracegraph import BaseNode, End, Graph, GraphRunContext
from tracegraph.persistence import BaseStatePersistence, NodeSnapshot, Snapshot, build_snapshot_list_type_adapter
from tracegraph.persistence._utils import set_nodes_type_context
from tracegraph.persistence.file import FileStatePersistence
from tracegraph.persistence.sqlite import SQLiteStatePersistence

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 1_000, 10_000, 100_000)


@dataclass
class Counter:
    count: int = 0


@dataclass
class Count(BaseNode[Counter, None, int]):
    """A node with a small payload, as an agent step's input might be."""

    i: int
    note: str = 'a note of about sixty characters, as a typical node input has'

    async def run(self, ctx: GraphRunContext[Counter]) -> Count | End[int]:
        if os.environ.get('BENCH_KILL_IN_NODE') == '1':
            os.kill(os.getpid(), signal.SIGKILL)
        ctx.state.count += 1
        return Count(self.i + 1)


graph = Graph(nodes=[Count], name='bench_persistence')
with set_nodes_type_context([Count]):
    ADAPTER = build_snapshot_list_type_adapter(Counter, int)


def _history(n: int) -> list[NodeSnapshot[Counter, int]]:
    """A run of `n` snapshots: `n - 1` that succeeded, then one `created`."""
    snapshots: list[NodeSnapshot[Counter, int]] = []
    for i in range(n):
        snapshot = NodeSnapshot(state=Counter(i), node=Count(i), id=f'Count:{i:08d}')
        if i < n - 1:
            snapshot.status, snapshot.duration = 'success', 0.001
        snapshots.append(snapshot)
    return snapshots


@dataclass
class Store:
    kind: str
    make: Callable[[], BaseStatePersistence[Counter, int]]
    spec: str
    """What a child process needs to open the store: `kind:location[#run_id]`."""


def _fill(kind: str, directory: Path, n: int, dsn: str | None) -> Store:
    snapshots = _history(n)
    bodies = [ADAPTER.dump_json([s])[1:-1].decode() for s in snapshots]
    rows: list[tuple[str, int, str, str, str, str]] = [
        ('run', i, s.id, s.kind, s.status, b) for i, (s, b) in enumerate(zip(snapshots, bodies))
    ]
    if kind == 'file':
        path = directory / f'file-{n}.json'
        path.write_bytes(ADAPTER.dump_json(list[Snapshot[Counter, int]](snapshots), indent=2))
        return Store(kind, lambda: FileStatePersistence(path), f'file:{path}')
    if kind == 'sqlite':
        path = directory / f'sqlite-{n}.sqlite3'
        p = SQLiteStatePersistence(path, run_id='run')
        db = p._connect()  # pyright: ignore[reportPrivateUsage]  # the bench fills the table in bulk
        db.execute('BEGIN')
        db.executemany('INSERT INTO tracegraph_snapshots VALUES (?, ?, ?, ?, ?, ?)', rows)
        db.execute('COMMIT')
        p.close()
        return Store(kind, lambda: SQLiteStatePersistence(path, run_id='run'), f'sqlite:{path}')
    from tracegraph.persistence.postgres import PostgresStatePersistence

    assert dsn is not None
    run_id = f'bench-{n}-{uuid.uuid4().hex[:8]}'
    p = PostgresStatePersistence(dsn, run_id=run_id)
    db = p.session()
    with db.cursor() as cursor:
        cursor.executemany(
            'INSERT INTO tracegraph_snapshots VALUES (%s, %s, %s, %s, %s, %s)', [(run_id, *r[1:]) for r in rows]
        )
    p.close()
    return Store(kind, lambda: PostgresStatePersistence(dsn, run_id=run_id), f'postgres:{dsn}#{run_id}')


def _open(spec: str) -> BaseStatePersistence[Counter, int]:
    kind, location = spec.split(':', 1)
    if kind == 'file':
        return FileStatePersistence(Path(location))
    if kind == 'sqlite':
        return SQLiteStatePersistence(location, run_id='run')
    from tracegraph.persistence.postgres import PostgresStatePersistence

    dsn, run_id = location.rsplit('#', 1)
    return PostgresStatePersistence(dsn, run_id=run_id)


async def _steps(persistence: BaseStatePersistence[Counter, int], k: int) -> float:
    """Resume and run `k` steps; seconds per step (the resume itself not counted)."""
    async with graph.iter_from_persistence(persistence) as run:
        t0 = time.perf_counter()
        for _ in range(k):
            await run.next()
        elapsed = time.perf_counter() - t0
    persistence.close()
    return elapsed / k


async def _resume_after_kill(store: Store) -> float:
    """A child resumes the run and dies inside its node; seconds for this process to take it over and run it."""
    env = {**os.environ, 'BENCH_KILL_IN_NODE': '1', 'PYTHONPATH': str(ROOT)}
    command = [sys.executable, __file__, '--child', store.spec]
    child = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    persistence = store.make()
    t0 = time.perf_counter()
    async with graph.iter_from_persistence(persistence) as run:
        await run.next()
    elapsed = time.perf_counter() - t0
    persistence.close()
    return elapsed


def _steps_for(kind: str, n: int) -> int:
    if kind != 'file':
        return 50
    return {100: 50, 1_000: 20, 10_000: 5}.get(n, 2)


async def main(args: argparse.Namespace) -> None:
    sizes = (100, 10_000) if args.quick else SIZES
    rounds = 1 if args.quick else 3
    kinds = ['file', 'sqlite', 'postgres']
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix='tracegraph-bench-')))
        dsn = args.dsn
        if dsn is None:
            sys.path.insert(0, str(ROOT / 'tests'))
            from postgres_helpers import start_cluster

            dsn = stack.enter_context(start_cluster()).dsn
        stores = {(k, n): _fill(k, directory, n, dsn) for k in kinds for n in sizes}
        step: dict[tuple[str, int], list[float]] = {key: [] for key in stores}
        resume: dict[tuple[str, int], list[float]] = {key: [] for key in stores}
        for r in range(rounds):
            order = list(stores) if r % 2 == 0 else list(reversed(stores))
            for key in order:
                step[key].append(await _steps(stores[key].make(), _steps_for(*key)))
                resume[key].append(await _resume_after_kill(stores[key]))
                print(
                    f'round {r + 1}/{rounds} {key[0]:>8} {key[1]:>7}: {step[key][-1] * 1e6:10.0f} µs/step', flush=True
                )
    results: dict[str, Any] = {
        'machine': f'{platform.machine()} {os.cpu_count()} cores, {platform.python_implementation()} '
        f'{platform.python_version()}, {platform.system()} {platform.release()}',
        'rounds': rounds,
        'step_us': {f'{k}/{n}': statistics.median(v) * 1e6 for (k, n), v in step.items()},
        'resume_ms': {f'{k}/{n}': statistics.median(v) * 1e3 for (k, n), v in resume.items()},
    }
    print(f'\n{"store":>8} ' + ' '.join(f'{n:>10,}' for n in sizes) + '   (µs per step; resume ms in brackets)')
    for k in kinds:
        cells = [f'{results["step_us"][f"{k}/{n}"]:10.0f}' for n in sizes]
        print(f'{k:>8} ' + ' '.join(cells))
        print(
            f'{"":>8} ' + ' '.join(f'{"(" + format(results["resume_ms"][f"{k}/{n}"], ".1f") + ")":>10}' for n in sizes)
        )
    for k in kinds:
        values = [results['step_us'][f'{k}/{n}'] for n in sizes]
        print(f'{k}: largest / smallest step cost {max(values) / min(values):.2f}x')
    print(results['machine'])
    out = ROOT / ('test-output' if args.quick else 'bench/results') / 'persistence.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + '\n')


def _child(spec: str) -> None:
    async def run() -> None:
        async with graph.iter_from_persistence(_open(spec)) as graph_run:
            await graph_run.next()  # dies inside the node

    asyncio.run(run())


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--dsn', help='an existing PostgreSQL to use instead of a throwaway cluster')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.child:
        _child(parsed.child)
    else:
        asyncio.run(main(parsed))

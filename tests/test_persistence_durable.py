"""The durable persistences (file, SQLite, PostgreSQL) under one contract: what a run stores is read back by another
object (as another process would), an interrupted run resumes, and real faults (a full filesystem, a read-only one,
a truncated store, a renamed state field) are clear errors that name the store and lose nothing stored before."""

from __future__ import annotations

import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from postgres_helpers import PostgresServer

from tracegraph import BaseNode, End, Graph, GraphRunContext
from tracegraph.exceptions import GraphRuntimeError
from tracegraph.persistence import BaseStatePersistence, EndSnapshot, NodeSnapshot
from tracegraph.persistence.file import FileStatePersistence
from tracegraph.persistence.sqlite import SQLiteStatePersistence

pytestmark = pytest.mark.anyio

Hook = Callable[[int], None]


@dataclass
class Ledger:
    total: int = 0
    blob: str = ''


@dataclass
class Add(BaseNode[Ledger, Hook, int]):
    n: int
    pad: str = ''
    """Carried from node to node: makes the snapshots big."""

    async def run(self, ctx: GraphRunContext[Ledger, Hook]) -> Add | End[int]:
        ctx.deps(self.n)
        ctx.state.total += self.n
        return Add(self.n - 1, self.pad) if self.n > 1 else End(ctx.state.total)


@dataclass
class Renamed:
    """`Ledger` after a refactoring renamed `total`."""

    sum: int = 0
    blob: str = ''


@dataclass
class AddRenamed(BaseNode[Renamed, Hook, int]):
    n: int
    pad: str = ''

    @classmethod
    def get_node_id(cls) -> str:
        return 'Add'

    async def run(self, ctx: GraphRunContext[Renamed, Hook]) -> AddRenamed | End[int]:
        raise AssertionError('never run: its snapshots do not match')


graph = Graph(nodes=[Add], name='ledger')
renamed_graph = Graph(nodes=[AddRenamed], name='ledger')


def _nothing(n: int) -> None:
    pass


@dataclass
class Store:
    """One durable store of one run: `open()` makes a new persistence object on it (as another process would)."""

    kind: str
    open: Callable[[], BaseStatePersistence[Any, Any]]
    raw: Callable[[], object]
    """Everything stored, as the store holds it (to show that a failed read changed nothing)."""
    path: Path | None


def _file_store(directory: Path) -> Store:
    path = directory / 'run.json'
    return Store('file', lambda: FileStatePersistence(path), lambda: path.read_bytes(), path)


def _sqlite_store(directory: Path) -> Store:
    path = directory / 'runs.sqlite3'

    def raw() -> object:
        with closing(sqlite3.connect(path)) as db:  # closed: an open reader would keep the write-ahead log there
            return db.execute('SELECT * FROM tracegraph_snapshots ORDER BY run_id, seq').fetchall()

    return Store('sqlite', lambda: SQLiteStatePersistence(path, run_id='run-1'), raw, path)


def _postgres_store(server: PostgresServer) -> Store:
    import psycopg

    from tracegraph.persistence.postgres import PostgresStatePersistence

    run_id = f'run-{uuid.uuid4()}'

    def raw() -> object:
        with psycopg.connect(server.dsn) as db:
            query = 'SELECT * FROM tracegraph_snapshots WHERE run_id = %s ORDER BY seq'
            return db.execute(query, (run_id,)).fetchall()

    return Store('postgres', lambda: PostgresStatePersistence(server.dsn, run_id=run_id), raw, None)


@pytest.fixture(params=['file', 'sqlite', 'postgres'])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == 'postgres':
        return _postgres_store(request.getfixturevalue('postgres'))
    return (_file_store if request.param == 'file' else _sqlite_store)(tmp_path)


@pytest.fixture(params=['file', 'sqlite'])
def local_kind(request: pytest.FixtureRequest) -> Callable[[Path], Store]:
    """A store in a given directory, for the filesystem faults."""
    return _file_store if request.param == 'file' else _sqlite_store


async def _resume(persistence: BaseStatePersistence[Ledger, int], deps: Hook = _nothing) -> int:
    async with graph.iter_from_persistence(persistence, deps=deps) as run:
        async for _ in run:
            pass
    assert run.result is not None
    return run.result.output


async def test_a_run_is_read_back_by_another_object(store: Store) -> None:
    result = await graph.run(Add(3), state=Ledger(), deps=_nothing, persistence=store.open())
    assert result.output == 6
    reader = store.open()
    reader.set_graph_types(graph)
    snapshots = await reader.load_all()
    assert [s.node for s in snapshots] == [Add(3), Add(2), Add(1), End(6)]
    assert [s.status for s in snapshots if isinstance(s, NodeSnapshot)] == ['success'] * 3
    assert [s.state.total for s in snapshots] == [0, 3, 5, 6]
    assert isinstance(snapshots[-1], EndSnapshot)
    assert await reader.load_next() is None  # a finished run has nothing to resume


async def test_a_run_left_between_steps_resumes_in_another_object(store: Store) -> None:
    ran: list[int] = []
    async with graph.iter(Add(4), state=Ledger(), deps=ran.append, persistence=store.open()) as run:
        async for node in run:
            if node == Add(3):
                break
    assert await _resume(store.open(), ran.append) == 10
    assert ran == [4, 3, 2, 1]  # each node once: the created snapshot was taken, none that succeeded ran again


async def test_a_renamed_state_field_is_an_error_naming_it_and_nothing_is_rewritten(store: Store) -> None:
    async with graph.iter(Add(4), state=Ledger(), deps=_nothing, persistence=store.open()) as run:
        async for node in run:
            if node == Add(2):
                break
    before = store.raw()
    persistence = store.open()
    with pytest.raises(GraphRuntimeError) as caught:
        async with renamed_graph.iter_from_persistence(persistence, deps=_nothing):
            raise AssertionError('not reached')
    message = str(caught.value)
    assert "the graph's state and node types do not have: `state.total` of snapshot" in message
    assert 'nothing was read or changed' in message
    assert store.raw() == before
    # The old types still read every snapshot, and the run goes on with them.
    assert await _resume(store.open()) == 10


async def test_a_truncated_store_is_an_error_naming_it(local_kind: Callable[[Path], Store], tmp_path: Path) -> None:
    store = local_kind(tmp_path)
    persistence = store.open()
    async with graph.iter(Add(30, pad='x' * 200), state=Ledger(), deps=_nothing, persistence=persistence) as run:
        async for node in run:
            if node == Add(20, pad='x' * 200):
                break
    persistence.close()  # nothing of it left in a cache or a write-ahead log
    assert store.path is not None
    content = store.path.read_bytes()
    store.path.write_bytes(content[: len(content) // 3])
    damaged = store.path.read_bytes()
    with pytest.raises(GraphRuntimeError, match=str(store.path)):
        await _resume(store.open())
    assert store.path.read_bytes() == damaged  # not overwritten: what is left can still be recovered by hand


@pytest.fixture
def full_fs(small_fs: Callable[[int], Path]) -> tuple[Path, Path]:
    """An 8 MiB tmpfs (room for the run and SQLite's write-ahead log) with all but ~150 KiB taken by a filler file:
    (the store's directory, the filler)."""
    root = small_fs(8192)
    filler = root / 'filler'
    filler.write_bytes(b'\0' * (8192 - 150) * 1024)
    directory = root / 'runs'
    directory.mkdir()
    return directory, filler


async def test_a_full_filesystem_ends_the_run_with_a_clear_error_and_loses_nothing(
    local_kind: Callable[[Path], Store], full_fs: tuple[Path, Path]
) -> None:
    directory, filler = full_fs
    store = local_kind(directory)
    ran: list[int] = []
    persistence = store.open()
    with pytest.raises(GraphRuntimeError) as caught:
        await graph.run(Add(200, pad='x' * 2000), state=Ledger(), deps=ran.append, persistence=persistence)
    assert str(store.path) in str(caught.value)
    assert any(word in str(caught.value) for word in ('No space left on device', 'database or disk is full'))
    assert not list(directory.glob('*.tmp'))  # no half-written copy left to fill the disk
    assert 0 < len(ran) < 200
    persistence.close()  # the process that hit the full disk goes away

    filler.unlink()  # space is made, and the run is resumed
    assert await _resume(store.open(), ran.append) == sum(range(1, 201))
    # Every node ran; at most the one interrupted by the full disk ran twice.
    assert sorted(set(ran)) == list(range(1, 201)) and len(ran) - 200 <= 1


async def test_an_unwritable_directory_is_a_clear_error_and_the_run_resumes_once_writable(
    local_kind: Callable[[Path], Store], small_fs: Callable[[int], Path]
) -> None:
    directory = small_fs(4096) / 'runs'
    directory.mkdir()
    store = local_kind(directory)
    persistence = store.open()
    async with graph.iter(Add(8), state=Ledger(), deps=_nothing, persistence=persistence) as run:
        async for node in run:
            if node == Add(5):
                break
    persistence.close()
    before = store.raw()
    subprocess.run(['chattr', '+i', str(directory)], check=True)  # no entry can be made, renamed or removed in it
    try:
        with pytest.raises(GraphRuntimeError) as caught:
            await _resume(store.open())
    finally:
        subprocess.run(['chattr', '-i', str(directory)], check=True)
    assert str(store.path) in str(caught.value)
    assert 'Operation not permitted' in str(caught.value) or 'unable to open database file' in str(caught.value)
    assert store.raw() == before
    assert await _resume(store.open()) == sum(range(1, 9))

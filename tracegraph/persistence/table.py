"""`TableStatePersistence`: the snapshots of many runs as rows of one SQL table, what the SQLite and PostgreSQL
persistences share.

The table `tracegraph_snapshots` holds one row per snapshot: `run_id`, `seq` (its place in the run), `id`, `kind`,
`status`, and `body`, the snapshot in pydantic_graph's JSON form. A snapshot is appended as one row and its status
changes rewrite that row alone, so a step costs the same at 100 snapshots as at 100,000. Each change is one
transaction of the database, which makes it atomic and durable across a crash; a subclass says how a transaction is
run (`_transaction`) and what holds the run's owner lock (`_owner`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, Protocol, TypeVar

import pydantic

from .. import exceptions
from ..nodes import BaseNode, End
from . import (
    BaseStatePersistence,
    EndSnapshot,
    NodeSnapshot,
    RunEndT,
    Snapshot,
    SnapshotStatus,
    StateT,
    build_snapshot_list_type_adapter,
    claim,
    find_runnable,
    mark_finished,
    mark_running,
    recording_run,
    take_next,
)
from .ownership import Owner
from .stored import decode_snapshots

__all__ = ('TableStatePersistence', 'Database')

_R = TypeVar('_R')

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tracegraph_snapshots (
    run_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
)""",
    'CREATE UNIQUE INDEX IF NOT EXISTS tracegraph_snapshots_id ON tracegraph_snapshots (run_id, id)',
    'CREATE INDEX IF NOT EXISTS tracegraph_snapshots_created ON tracegraph_snapshots (run_id, status, seq)',
)
"""The table and its indexes, in SQL both SQLite and PostgreSQL take."""


class _Rows(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    """A connection inside a transaction: `sqlite3.Connection` and `psycopg.Connection` both are one."""

    def execute(self, query: Any, params: Any = ..., /) -> _Rows: ...


class TableStatePersistence(BaseStatePersistence[StateT, RunEndT]):
    """The snapshots of the run `run_id`, as rows of the table `tracegraph_snapshots` (which holds many runs)."""

    run_id: str
    """The run whose snapshots this object reads and writes."""
    _owner: Owner
    _placeholder = '?'
    """How the database's driver marks a query parameter."""
    _adapter: pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]] | None = None

    @abstractmethod
    async def _transaction(self, change: Callable[[Database], _R]) -> _R:
        """Run `change` in one transaction that no other writer of the run interleaves with, in a worker thread."""

    @abstractmethod
    def _where(self) -> str:
        """The run and its database, for errors."""

    def _sql(self, query: str) -> str:
        return query if self._placeholder == '?' else query.replace('?', self._placeholder)

    def should_set_types(self) -> bool:
        return self._adapter is None

    def set_types(self, state_type: type[StateT], run_end_type: type[RunEndT]) -> None:
        self._adapter = build_snapshot_list_type_adapter(state_type, run_end_type)

    async def snapshot_node(self, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]) -> None:
        snapshot = NodeSnapshot(state=state, node=next_node)
        await self._transaction(lambda db: self._append(db, snapshot))

    async def snapshot_node_if_new(
        self, snapshot_id: str, state: StateT, next_node: BaseNode[StateT, Any, RunEndT]
    ) -> None:
        snapshot = NodeSnapshot(state=state, node=next_node)

        def add_if_new(db: Database) -> None:
            query = 'SELECT 1 FROM tracegraph_snapshots WHERE run_id = ? AND id = ?'
            if db.execute(self._sql(query), (self.run_id, snapshot_id)).fetchone() is None:
                self._append(db, snapshot)

        await self._transaction(add_if_new)

    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        snapshot = EndSnapshot(state=state, result=end)
        await self._transaction(lambda db: self._append(db, snapshot))
        # Only once the end is committed: a process that took the lock earlier would see the run unfinished.
        await self.release_run()

    async def release_run(self) -> None:
        if not self._owner.held:
            return
        try:
            await self._transaction(lambda db: self._owner.release())
        except exceptions.GraphRuntimeError:
            if self._owner.held:  # still held, so the database is there: a real error
                raise

    def record_run(self, snapshot_id: str) -> AbstractAsyncContextManager[None]:
        def start(db: Database) -> None:
            claim(self._owner)
            snapshot = find_runnable(self._load(db, snapshot_id), snapshot_id)
            mark_running(snapshot)
            self._update(db, snapshot)

        def finish(duration: float, status: SnapshotStatus, db: Database) -> None:
            (snapshot,) = self._load(db, snapshot_id)
            mark_finished(snapshot, duration, status)
            assert isinstance(snapshot, NodeSnapshot)
            self._update(db, snapshot)

        async def finish_run(duration: float, status: SnapshotStatus) -> None:
            await self._transaction(partial(finish, duration, status))

        return recording_run(lambda: self._transaction(start), finish_run)

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        def take(db: Database) -> NodeSnapshot[StateT, RunEndT] | None:
            first_created = "SELECT body FROM tracegraph_snapshots WHERE run_id = ? AND status = 'created' ORDER BY seq"
            last = 'SELECT body FROM tracegraph_snapshots WHERE run_id = ? ORDER BY seq DESC'
            row = db.execute(self._sql(first_created + ' LIMIT 1'), (self.run_id,)).fetchone()
            if row is None:
                row = db.execute(self._sql(last + ' LIMIT 1'), (self.run_id,)).fetchone()
            if row is None:
                return None
            snapshot = take_next(self._decode([row[0]]), self._owner)
            if snapshot is not None:
                self._update(db, snapshot)
            return snapshot

        return await self._transaction(take)

    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        def read(db: Database) -> list[Snapshot[StateT, RunEndT]]:
            query = 'SELECT body FROM tracegraph_snapshots WHERE run_id = ? ORDER BY seq'
            return self._decode([body for (body,) in db.execute(self._sql(query), (self.run_id,)).fetchall()])

        return await self._transaction(read)

    # -- rows -------------------------------------------------------------------------------------------------------

    def _types(self) -> pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]]:
        if self._adapter is None:
            raise exceptions.GraphRuntimeError(
                f'{type(self).__name__} has no types yet: call `persistence.set_graph_types(graph)` (a run does) first.'
            )
        return self._adapter

    def _encode(self, snapshot: Snapshot[StateT, RunEndT]) -> str:
        return self._types().dump_json([snapshot])[1:-1].decode()

    def _decode(self, bodies: list[str], *, check_fields: bool = True) -> list[Snapshot[StateT, RunEndT]]:
        return decode_snapshots(self._types(), '[' + ','.join(bodies) + ']', self._where(), check_fields=check_fields)

    def _append(self, db: Database, snapshot: Snapshot[StateT, RunEndT]) -> None:
        next_seq = 'SELECT COALESCE(MAX(seq), -1) + 1 FROM tracegraph_snapshots WHERE run_id = ?'
        (seq,) = db.execute(self._sql(next_seq), (self.run_id,)).fetchone()
        status = snapshot.status if isinstance(snapshot, NodeSnapshot) else None
        insert = 'INSERT INTO tracegraph_snapshots (run_id, seq, id, kind, status, body) VALUES (?, ?, ?, ?, ?, ?)'
        db.execute(self._sql(insert), (self.run_id, seq, snapshot.id, snapshot.kind, status, self._encode(snapshot)))

    def _update(self, db: Database, snapshot: NodeSnapshot[StateT, RunEndT]) -> None:
        update = 'UPDATE tracegraph_snapshots SET status = ?, body = ? WHERE run_id = ? AND id = ?'
        db.execute(self._sql(update), (snapshot.status, self._encode(snapshot), self.run_id, snapshot.id))

    def _load(self, db: Database, snapshot_id: str) -> list[Snapshot[StateT, RunEndT]]:
        """The snapshot `snapshot_id` of the run, as a list of one, or none."""
        query = 'SELECT body FROM tracegraph_snapshots WHERE run_id = ? AND id = ?'
        row = db.execute(self._sql(query), (self.run_id, snapshot_id)).fetchone()
        # The snapshot a step records is one `load_next` checked or this object wrote: no field check on every step.
        return [] if row is None else self._decode([row[0]], check_fields=False)

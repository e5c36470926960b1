"""`SQLiteStatePersistence`: the snapshots of many runs in one SQLite database (stdlib `sqlite3`, WAL), shared by
many processes; the embedded default for durable runs.

On disk: the table `tracegraph_snapshots` holds one row per snapshot (`run_id`, `seq`, `id`, `kind`, `status`, and
`body`, the snapshot in pydantic_graph's JSON form). A snapshot is appended as one row and its status changes rewrite
that row alone, so a step costs the same at 100 snapshots as at 100,000. Every change is one `BEGIN IMMEDIATE`
transaction, which SQLite makes atomic and durable across a crash. `{database}.owners/{run hash}.lock` is each run's
owner lock (`persistence.ownership`): a run whose process died is resumed from its last snapshot (the node that was
running runs again), a live one is never taken over.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pydantic

from .. import _utils as _graph_utils
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
    find_runnable,
    mark_finished,
    mark_running,
    recording_run,
    take_next,
    validation_problems,
)
from .ownership import OwnerLock

__all__ = ('SQLiteStatePersistence',)

_R = TypeVar('_R')

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracegraph_snapshots (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS tracegraph_snapshots_id ON tracegraph_snapshots (run_id, id);
CREATE INDEX IF NOT EXISTS tracegraph_snapshots_created ON tracegraph_snapshots (run_id, status, seq);
"""


class SQLiteStatePersistence(BaseStatePersistence[StateT, RunEndT]):
    """The snapshots of the run `run_id` in the SQLite database file `database` (which may hold many runs).

    Example:
        ```python
        from tracegraph.persistence.sqlite import SQLiteStatePersistence

        persistence = SQLiteStatePersistence('runs.sqlite3', run_id='order-42')
        print(persistence.run_id)
        #> order-42
        ```
    """

    def __init__(self, database: str | Path, *, run_id: str) -> None:
        """Store run `run_id`'s snapshots in `database` (created with its table on first use)."""
        self.database = Path(database)
        self.run_id = run_id
        digest = hashlib.sha256(run_id.encode()).hexdigest()[:32]
        self._owner = OwnerLock(self.database.with_name(f'{self.database.name}.owners') / f'{digest}.lock')
        self._adapter: pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]] | None = None
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()

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

        def add_if_new(db: sqlite3.Connection) -> None:
            found = db.execute(
                'SELECT 1 FROM tracegraph_snapshots WHERE run_id = ? AND id = ?', (self.run_id, snapshot_id)
            ).fetchone()
            if found is None:
                self._append(db, snapshot)

        await self._transaction(add_if_new)

    async def snapshot_end(self, state: StateT, end: End[RunEndT]) -> None:
        snapshot = EndSnapshot(state=state, result=end)
        await self._transaction(lambda db: self._append(db, snapshot))
        self._owner.release()  # the run is over: another process may read it, nothing is left to take over

    def record_run(self, snapshot_id: str) -> AbstractAsyncContextManager[None]:
        def start(db: sqlite3.Connection) -> None:
            snapshot = find_runnable(self._load(db, snapshot_id), snapshot_id)
            mark_running(snapshot)
            self._update(db, snapshot)

        def finish(duration: float, status: SnapshotStatus, db: sqlite3.Connection) -> None:
            (snapshot,) = self._load(db, snapshot_id)
            mark_finished(snapshot, duration, status)
            assert isinstance(snapshot, NodeSnapshot)
            self._update(db, snapshot)

        async def finish_run(duration: float, status: SnapshotStatus) -> None:
            await self._transaction(partial(finish, duration, status))

        return recording_run(lambda: self._transaction(start), finish_run, self._owner)

    async def load_next(self) -> NodeSnapshot[StateT, RunEndT] | None:
        def take(db: sqlite3.Connection) -> NodeSnapshot[StateT, RunEndT] | None:
            row = db.execute(
                "SELECT body FROM tracegraph_snapshots WHERE run_id = ? AND status = 'created' ORDER BY seq LIMIT 1",
                (self.run_id,),
            ).fetchone()
            if row is None:
                row = db.execute(
                    'SELECT body FROM tracegraph_snapshots WHERE run_id = ? ORDER BY seq DESC LIMIT 1', (self.run_id,)
                ).fetchone()
            if row is None:
                return None
            snapshot = take_next(self._decode([row[0]]), self._owner)
            if snapshot is not None:
                self._update(db, snapshot)
            return snapshot

        return await self._transaction(take)

    async def load_all(self) -> list[Snapshot[StateT, RunEndT]]:
        def read(db: sqlite3.Connection) -> list[Snapshot[StateT, RunEndT]]:
            rows = db.execute(
                'SELECT body FROM tracegraph_snapshots WHERE run_id = ? ORDER BY seq', (self.run_id,)
            ).fetchall()
            return self._decode([body for (body,) in rows])

        return await self._transaction(read)

    # -- storage --------------------------------------------------------------------------------------------------

    async def _transaction(self, change: Callable[[sqlite3.Connection], _R]) -> _R:
        """Run `change` in one `BEGIN IMMEDIATE` transaction, in a worker thread."""

        def run() -> _R:
            with self._lock:
                db = self._connect()
                db.execute('BEGIN IMMEDIATE')
                try:
                    result = change(db)
                except BaseException:
                    db.rollback()
                    raise
                db.commit()
                return result

        try:
            return await _graph_utils.run_in_executor(run)
        except sqlite3.Error as error:
            raise exceptions.GraphRuntimeError(
                f'SQLite database {self.database} (run {self.run_id!r}): {error}; snapshots stored before stay stored.'
            ) from error

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.database.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.database, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute('PRAGMA journal_mode=WAL')
            db.execute('PRAGMA synchronous=FULL')
            db.executescript(_SCHEMA)
            self._connection = db
        return self._connection

    def _types(self) -> pydantic.TypeAdapter[list[Snapshot[StateT, RunEndT]]]:
        if self._adapter is None:
            raise exceptions.GraphRuntimeError(
                'SQLiteStatePersistence has no types yet: call `persistence.set_graph_types(graph)` (a run does) first.'
            )
        return self._adapter

    def _encode(self, snapshot: Snapshot[StateT, RunEndT]) -> str:
        return self._types().dump_json([snapshot])[1:-1].decode()

    def _decode(self, bodies: list[str]) -> list[Snapshot[StateT, RunEndT]]:
        try:
            return self._types().validate_json('[' + ','.join(bodies) + ']')
        except pydantic.ValidationError as error:
            problems = validation_problems(error)
            raise exceptions.GraphRuntimeError(
                f'Run {self.run_id!r} in {self.database} holds snapshots that are not of this graph: {problems}'
            ) from error

    def _append(self, db: sqlite3.Connection, snapshot: Snapshot[StateT, RunEndT]) -> None:
        (seq,) = db.execute(
            'SELECT COALESCE(MAX(seq), -1) + 1 FROM tracegraph_snapshots WHERE run_id = ?', (self.run_id,)
        ).fetchone()
        status = snapshot.status if isinstance(snapshot, NodeSnapshot) else None
        db.execute(
            'INSERT INTO tracegraph_snapshots (run_id, seq, id, kind, status, body) VALUES (?, ?, ?, ?, ?, ?)',
            (self.run_id, seq, snapshot.id, snapshot.kind, status, self._encode(snapshot)),
        )

    def _update(self, db: sqlite3.Connection, snapshot: NodeSnapshot[StateT, RunEndT]) -> None:
        db.execute(
            'UPDATE tracegraph_snapshots SET status = ?, body = ? WHERE run_id = ? AND id = ?',
            (snapshot.status, self._encode(snapshot), self.run_id, snapshot.id),
        )

    def _load(self, db: sqlite3.Connection, snapshot_id: str) -> list[Snapshot[StateT, RunEndT]]:
        """The snapshot `snapshot_id` of the run, as a list of one, or none."""
        row = db.execute(
            'SELECT body FROM tracegraph_snapshots WHERE run_id = ? AND id = ?', (self.run_id, snapshot_id)
        ).fetchone()
        return [] if row is None else self._decode([row[0]])
